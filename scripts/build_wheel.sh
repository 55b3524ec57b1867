#!/usr/bin/env bash
# Build the fate-lung wheel with VENV's pip into OUTDIR and print its path.
# It is built from a clean copy of pyproject.toml, LICENSE and fate_components/ (no __pycache__):
# setuptools' in-tree build/ keeps modules that were deleted from the sources and puts them into
# the next wheel, and the source tree stays free of build/ and *.egg-info.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:?usage: scripts/build_wheel.sh VENV OUTDIR}
OUT=${2:?usage: scripts/build_wheel.sh VENV OUTDIR}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src" "$OUT"
cp pyproject.toml LICENSE "$tmp/src/"
tar --exclude=__pycache__ --exclude='*.pyc' -cf - fate_components | tar -xf - -C "$tmp/src"
"$VENV/bin/pip" wheel --disable-pip-version-check -q --no-deps -w "$tmp/dist" "$tmp/src" >&2
whl=$(ls "$tmp"/dist/fate_lung-*.whl)
rm -f "$OUT"/fate_lung-*.whl
mv "$whl" "$OUT/"
echo "$OUT/$(basename "$whl")"
