# Shared by the script-driven suites (tests/interop, tests/ui): starts a throwaway
# `warren server` on free ports with a temporary data dir, and stops it (by pid) and removes
# the data dir when the calling script exits. Source it, then:
#   start_warren path/to/warren node-name
# which sets $port (AMQP), $mgmt_port, $data and $pid, and returns once AMQP and the
# management API accept connections.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_warren() {
  local warren=$1 name=$2
  port=$(free_port)
  mgmt_port=$(free_port)
  data=$(mktemp -d)
  "$warren" server --port "$port" --mgmt-port "$mgmt_port" --cluster-port "$(free_port)" \
    --prometheus-port "$(free_port)" --cookie-file "$data/cookie" --data-dir "$data" \
    --node-name "$name@localhost" >"$data/server.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT
  for _ in $(seq 100); do
    (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && (echo >/dev/tcp/127.0.0.1/"$mgmt_port") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "warren server did not start:" >&2
  tail -n 20 "$data/server.log" >&2
  return 1
}
