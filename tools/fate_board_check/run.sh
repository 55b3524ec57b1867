#!/usr/bin/env bash
# FATE-Board 2.1.0's own metric transforms on `flow output query-metric` output; see README.md.
#   tools/fate_board_check/run.sh [--type TASK=COMPONENT_REF]... [--json] QUERY_METRIC_JSON|DIR...
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if ! command -v node >/dev/null; then
    echo "run.sh: node (>= 18) is not on PATH; install Node.js, then run again" >&2
    exit 2
fi
# npm ci once per package-lock.json: node_modules/.lock-sha holds the lock file it was built from.
lock_sha="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [[ "$(cat "$here/node_modules/.lock-sha" 2>/dev/null)" != "$lock_sha" ]]; then
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
    echo "$lock_sha" > "$here/node_modules/.lock-sha"
fi
exec node "$here/render.mjs" "$@"
