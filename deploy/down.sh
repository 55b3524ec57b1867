#!/usr/bin/env bash
# One command down: stops, by pid, every process deploy/up.sh started.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/fate-lung deploy down "$@"
