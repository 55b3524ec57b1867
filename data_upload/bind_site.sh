#!/usr/bin/env bash
# Run by a hospital's FATE operator on the hospital's own FATE node.
# Checks the site directory first (every candidate has a readable CT scan and lies inside it,
# the csv columns are right), then binds it into this site's FATE-Flow with FATE's own
# `flow table bind` (FATE records the path; no scan is copied or sent anywhere).
#
# usage: data_upload/bind_site.sh SITE_DIR NAMESPACE NAME [--port FATE_FLOW_HTTP_PORT]
#   e.g. data_upload/bind_site.sh /data/luna16 hospital_a luna16
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,9p' "$0"; exit 2
fi
site=$1 ns=$2 name=$3; shift 3
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${FATE_LUNG_BIN:-$here/.venv/bin}
"$bin/fate-lung" check-site "$site"
if [ "${1:-}" = "--port" ]; then
  "$bin/flow" init --ip 127.0.0.1 --port "$2" >/dev/null
fi
"$bin/flow" table bind -ns "$ns" -n "$name" -o "$(cd "$site" && pwd)"
