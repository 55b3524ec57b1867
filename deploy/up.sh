#!/usr/bin/env bash
# One command up: system packages, the project's environment, then RabbitMQ, three FATE-Flows and nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install_system.sh
bash scripts/install.sh
.venv/bin/fate-lung deploy up "$@"
