# Sourced by bench scripts: start and stop a private RabbitMQ 3.10 (Debian rabbitmq-server)
# on its own ports, data dir and epmd port, so it never meets a system instance.
# Usage: rabbitmq_start DIR AMQP_PORT   (sets RABBIT_PID);  rabbitmq_stop

rabbitmq_ensure_installed() {
  if ! command -v rabbitmq-server >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "rabbitmq-server is not installed and we are not root" >&2; return 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server >/dev/null
  fi
}

rabbitmq_start() {
  local dir=$1 port=$2
  rm -rf "$dir"; mkdir -p "$dir"
  echo '[].' >"$dir/enabled_plugins"
  printf 'listeners.tcp.default = %s\nloopback_users = none\n' "$port" >"$dir/rabbitmq.conf"
  id rabbitmq >/dev/null 2>&1 && chown -R rabbitmq:rabbitmq "$dir"
  RABBIT_ENV=(HOME="$dir" RABBITMQ_NODENAME=bench@localhost RABBITMQ_NODE_PORT="$port"
    RABBITMQ_DIST_PORT=$((port + 20000)) RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_MNESIA_DIR="$dir/mnesia/bench"
    RABBITMQ_FEATURE_FLAGS_FILE="$dir/feature_flags" RABBITMQ_PLUGINS_EXPAND_DIR="$dir/plugins-expand"
    RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_CONFIG_FILE="$dir/rabbitmq" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    ERL_EPMD_PORT=4370 RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="${RABBIT_ERL_ARGS:-}")
  # The Debian wrapper (/usr/sbin/rabbitmq-server) re-executes through `su rabbitmq`, which
  # resets the open-file limit to 1024; as root, call the real script so the limit we raised
  # (10,000 connections) applies.
  local server=rabbitmq-server
  [ "$(id -u)" = 0 ] && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && server=/usr/lib/rabbitmq/bin/rabbitmq-server
  env "${RABBIT_ENV[@]}" ${PIN_BROKER:-} "$server" >"$dir/out.log" 2>&1 &
  for _ in $(seq 120); do
    (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
    sleep 0.5
  done
  # The Erlang VM (beam.smp) is the process listening on the AMQP port.
  RABBIT_PID=$(ss -Hltnp "sport = :$port" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1 || true)
  [ -n "$RABBIT_PID" ] || { echo "RabbitMQ did not start; see $dir/out.log" >&2; return 1; }
}

rabbitmq_stop() {
  [ -n "${RABBIT_PID:-}" ] && kill "$RABBIT_PID" 2>/dev/null
  for _ in $(seq 40); do kill -0 "${RABBIT_PID:-0}" 2>/dev/null || break; sleep 0.25; done
  pkill -f "epmd.*-port 4370" 2>/dev/null || ERL_EPMD_PORT=4370 epmd -kill >/dev/null 2>&1 || true
  RABBIT_PID=
}
