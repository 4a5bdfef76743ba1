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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
mgmt_port=$(free_port)
data=$(mktemp -d)
"$warren" server --port "$port" --mgmt-port "$mgmt_port" --cluster-port "$(free_port)" \
  --prometheus-port "$(free_port)" --cookie-file "$data/cookie" --data-dir "$data" \
  --node-name "ui@localhost" >"$data/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do
  (echo >/dev/tcp/127.0.0.1/"$mgmt_port") 2>/dev/null && break
  sleep 0.1
done

mkdir -p "$target"
shot="$target/ui-queues.png"
if ! CHROMIUM="$chromium" node "$here/policy_flow.mjs" "http://127.0.0.1:$mgmt_port" "$shot"; then
  echo "ui: FAILED; node log:"
  tail -n 40 "$data/server.log"
  exit 1
fi
echo "ui: passed"
