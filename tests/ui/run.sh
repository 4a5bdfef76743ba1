#!/usr/bin/env bash
# Browser test of the management UI: starts a `warren server` on free ports with a temporary
# data dir, drives Debian's chromium through playwright-core (tests/ui/policy_flow.mjs), then
# stops the node. Skips with a one-line reason when chromium or node is missing.
# Usage: tests/ui/run.sh [path/to/warren]   (the screenshot goes to target/ui-queues.png)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
warren=${1:-$target/debug/warren}
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "ui: SKIPPED ($chromium is missing; install the Debian package chromium)"
  exit 0
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "ui: SKIPPED (node and npm are needed for playwright-core)"
  exit 0
fi
if [ ! -x "$warren" ]; then
  (cd "$root" && cargo build --bin warren)
fi
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

. "$here/../lib/node.sh"
start_warren "$warren" ui

mkdir -p "$target"
shot="$target/ui-queues.png"
if ! CHROMIUM="$chromium" node "$here/policy_flow.mjs" "http://127.0.0.1:$mgmt_port" "$shot"; then
  echo "ui: FAILED; node log:"
  tail -n 40 "$data/server.log"
  exit 1
fi
echo "ui: passed"
