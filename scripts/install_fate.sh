#!/usr/bin/env bash
# FATE 2.2.0 into the virtual environment VENV (created if missing), the way a FATE site has it
# before any plugin: pyfate, fate_client and fate_flow. scripts/install.sh and
# tests/unit/test_packaging.py both start from this.
#
# Why two steps: fate_flow==2.2.0 pins typing-extensions==4.8.0, torch needs >=4.10, so pip
# cannot install fate_flow with its dependencies next to torch. So FATE's other packages
# (requirements/fate.txt) and fate_flow's own requirements minus that pin
# (requirements/fate_flow_deps.txt) go first, then fate_flow with --no-deps.
# pip stays at the venv's default (23.x): it takes torch==2.13.0 from the local CPU wheel
# where one exists; a newer pip or an unpinned torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:?usage: scripts/install_fate.sh VENV}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
pip=("$VENV/bin/pip" install --disable-pip-version-check -q)
"${pip[@]}" -r requirements/fate.txt -r requirements/fate_flow_deps.txt
"${pip[@]}" --no-deps fate_flow==2.2.0
