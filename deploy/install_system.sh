#!/usr/bin/env bash
# The multi-site deployment's system packages, from Debian's registry: RabbitMQ (with its management
# plugin, shipped in the package) and nginx. apt does not start them (fate-lung starts its own processes).
set -euo pipefail
if [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && command -v nginx >/dev/null 2>&1; then
  exit 0
fi
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends rabbitmq-server nginx >/dev/null
# Debian starts services on install where it can; the deployment runs its own instances on free ports.
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
  $SUDO systemctl disable --now rabbitmq-server nginx >/dev/null 2>&1 || true
fi
