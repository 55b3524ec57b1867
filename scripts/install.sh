#!/usr/bin/env bash
# Create .venv with FATE 2.2.0, torch (CPU) and fate-lung. Idempotent: a second run only checks.
#
# Why the two steps: fate_flow==2.2.0 pins typing-extensions==4.8.0, torch needs >=4.10.
# So everything else is installed first (requirements/base.txt plus fate_flow's own
# requirements minus that pin, requirements/fate_flow_deps.txt), then fate_flow with --no-deps.
# pip stays at the venv's default (23.x): it takes torch==2.13.0 from the local CPU wheel
# where one exists; a newer pip or an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.fate-lung-installed"
want=$(cat requirements/base.txt requirements/fate_flow_deps.txt setup.py | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "environment $VENV is up to date"
else
  "$VENV/bin/pip" install --disable-pip-version-check -q -r requirements/base.txt -r requirements/fate_flow_deps.txt
  "$VENV/bin/pip" install --disable-pip-version-check -q --no-deps fate_flow==2.2.0
  "$VENV/bin/pip" install --disable-pip-version-check -q --no-deps -e .
  echo "$want" > "$stamp"
fi
# FATE finds plugin components through pkg_resources, which setuptools >= 81 removed.
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
v = md.version("setuptools")
assert int(v.split(".")[0]) < 81, f"setuptools {v} is installed; FATE needs setuptools<81 to find plugin components"
eps = {ep.name for ep in md.entry_points(group="fate.ext.component_desc")}
missing = {"luna16_reader", "homo_lung_nn", "lung_evaluation"} - eps
assert not missing, f"fate-lung components not registered: {missing}"
PY
