#!/usr/bin/env bash
# Benchmark `warren lb` against HAProxy 2.6 with the same configuration on loopback, in front of
# one fast backend (crates/lb/examples/lbbench.rs). Prints a Markdown table with ratios.
#
#   bench/lb.sh            # defaults: 5 s per throughput test, 20000 round trips, 4 conn threads
#   SECS=10 RTT=50000 THREADS=8 BENCH_PORT=27000 bench/lb.sh
#   AMQP_BACKEND=127.0.0.1:5672 bench/lb.sh   # also AMQP publishes/s through a running broker
#   RABBITMQ=1 bench/lb.sh                     # start a private Debian rabbitmq-server for that row
#
# Both balancers and the load generator share the machine's cores: compare ratios from the same
# run, not absolute numbers across machines. CPU seconds used by each balancer are reported.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-lb}"
SECS="${SECS:-5}"; RTT="${RTT:-20000}"; THREADS="${THREADS:-4}"
# Below the usual ephemeral range (32768+), so TIME_WAIT leftovers of earlier runs cannot hold them.
BASE="${BENCH_PORT:-$((27000 + RANDOM % 3000))}"
BE=$BASE; WP=$((BASE + 1)); HP=$((BASE + 2))
HAPROXY="${HAPROXY:-/usr/sbin/haproxy}"

cargo build --release --bin warren >&2
cargo build --release -p warren-lb --example lbbench >&2
WARREN="$CARGO_TARGET_DIR/release/warren"
BENCH="$CARGO_TARGET_DIR/release/examples/lbbench"
ulimit -n 65536 2>/dev/null || true

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  # The private RabbitMQ started its own epmd on its own port; stop that one only.
  if [ -n "${RMQ:-}" ]; then sleep 2; ERL_EPMD_PORT=$((BASE + 5)) epmd -kill >/dev/null 2>&1 || true; fi
  [ -n "${KEEP:-}" ] && cat "$TMP"/*.log >&2
  rm -rf "$TMP"
}
trap cleanup EXIT

# Optional AMQP row: an existing broker, or a private RabbitMQ on its own ports and directories.
AMQP_BACKEND="${AMQP_BACKEND:-}"
if [ -z "$AMQP_BACKEND" ] && [ "${RABBITMQ:-0}" = 1 ] && command -v rabbitmq-server >/dev/null; then
  RMQ="$TMP/rabbitmq"; mkdir -p "$RMQ/mnesia" "$RMQ/log"
  echo "[]." > "$RMQ/enabled_plugins"; echo "loopback_users.guest = false" > "$RMQ/rabbitmq.conf"
  id rabbitmq >/dev/null 2>&1 && chown -R rabbitmq "$TMP" && chmod 755 "$TMP"
  (export RABBITMQ_NODENAME=lbbench$$@localhost RABBITMQ_NODE_PORT=$((BASE + 3)) RABBITMQ_DIST_PORT=$((BASE + 4)) \
     ERL_EPMD_PORT=$((BASE + 5)) RABBITMQ_MNESIA_BASE="$RMQ/mnesia" RABBITMQ_LOG_BASE="$RMQ/log" \
     RABBITMQ_PID_FILE="$RMQ/pid" RABBITMQ_ENABLED_PLUGINS_FILE="$RMQ/enabled_plugins" \
     RABBITMQ_CONFIG_FILE="$RMQ/rabbitmq" HOME="$RMQ"; exec rabbitmq-server >"$RMQ/server.out" 2>&1) &
  for _ in $(seq 60); do [ -s "$RMQ/pid" ] && (exec 3<>/dev/tcp/127.0.0.1/$((BASE + 3))) 2>/dev/null && break; sleep 1; done
  [ -s "$RMQ/pid" ] && PIDS+=("$(cat "$RMQ/pid")") && AMQP_BACKEND="127.0.0.1:$((BASE + 3))"
fi
AP_W=$((BASE + 6)); AP_H=$((BASE + 7))

cfg() { cat <<CFG
global
    maxconn 5000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
listen bench
    bind 127.0.0.1:$1
    balance roundrobin
    server s1 127.0.0.1:$BE
CFG
if [ -n "$AMQP_BACKEND" ]; then cat <<CFG
listen amqp
    bind 127.0.0.1:$2
    server broker $AMQP_BACKEND
CFG
fi
}
cfg "$WP" "$AP_W" > "$TMP/warren.cfg"
cfg "$HP" "$AP_H" > "$TMP/haproxy.cfg"

"$BENCH" backend "$BE" & PIDS+=($!)
"$WARREN" lb -db -f "$TMP/warren.cfg" 2>"$TMP/warren.log" & WPID=$!; PIDS+=($WPID)
"$HAPROXY" -db -f "$TMP/haproxy.cfg" -p "$TMP/haproxy.pid" 2>"$TMP/haproxy.log" & HPID=$!; PIDS+=($HPID)
for p in "$BE" "$WP" "$HP"; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done

cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
declare -A R
for t in direct warren haproxy; do
  case $t in direct) A="127.0.0.1:$BE";; warren) A="127.0.0.1:$WP";; haproxy) A="127.0.0.1:$HP";; esac
  R[$t.bulk]=$("$BENCH" bulk "$A" "$SECS")
  read -r R[$t.p50] R[$t.p99] < <("$BENCH" latency "$A" "$RTT")
  R[$t.conn]=$("$BENCH" connrate "$A" "$SECS" "$THREADS")
done
if [ -n "$AMQP_BACKEND" ]; then
  AMQP_N="${AMQP_N:-200000}"
  R[direct.amqp]=$("$BENCH" amqp "$AMQP_BACKEND" "$AMQP_N" 64)
  R[warren.amqp]=$("$BENCH" amqp "127.0.0.1:$AP_W" "$AMQP_N" 64)
  R[haproxy.amqp]=$("$BENCH" amqp "127.0.0.1:$AP_H" "$AMQP_N" 64)
fi
R[warren.cpu]=$(cpu "$WPID"); R[haproxy.cpu]=$(cpu "$HPID")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a - b }'; }
wa50=$(sub "${R[warren.p50]}" "${R[direct.p50]}"); ha50=$(sub "${R[haproxy.p50]}" "${R[direct.p50]}")
wa99=$(sub "${R[warren.p99]}" "${R[direct.p99]}"); ha99=$(sub "${R[haproxy.p99]}" "${R[direct.p99]}")
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores (load average $LOAD_BEFORE before the run), $("$HAPROXY" -v | head -1 | cut -d' ' -f1-3), SECS=$SECS RTT=$RTT THREADS=$THREADS"
echo
echo "| Metric | direct (no LB) | warren lb | HAProxy 2.6 | warren / HAProxy |"
echo "|---|---|---|---|---|"
echo "| Bulk throughput, 1 connection (MB/s) | ${R[direct.bulk]} | ${R[warren.bulk]} | ${R[haproxy.bulk]} | $(ratio "${R[warren.bulk]}" "${R[haproxy.bulk]}") |"
echo "| Round trip p50, 64 B (µs) | ${R[direct.p50]} | ${R[warren.p50]} | ${R[haproxy.p50]} | $(ratio "${R[warren.p50]}" "${R[haproxy.p50]}") |"
echo "| Round trip p99, 64 B (µs) | ${R[direct.p99]} | ${R[warren.p99]} | ${R[haproxy.p99]} | $(ratio "${R[warren.p99]}" "${R[haproxy.p99]}") |"
echo "| Added latency p50 (µs) | - | $wa50 | $ha50 | $(ratio "$wa50" "$ha50") |"
echo "| Added latency p99 (µs) | - | $wa99 | $ha99 | $(ratio "$wa99" "$ha99") |"
echo "| New connections/s ($THREADS client threads) | ${R[direct.conn]} | ${R[warren.conn]} | ${R[haproxy.conn]} | $(ratio "${R[warren.conn]}" "${R[haproxy.conn]}") |"
echo "| LB CPU seconds over the whole run | - | ${R[warren.cpu]} | ${R[haproxy.cpu]} | $(ratio "${R[warren.cpu]}" "${R[haproxy.cpu]}") |"
if [ -n "$AMQP_BACKEND" ]; then
  echo "| AMQP publishes/s, 64 B, 1 connection (broker at $AMQP_BACKEND) | ${R[direct.amqp]} | ${R[warren.amqp]} | ${R[haproxy.amqp]} | $(ratio "${R[warren.amqp]}" "${R[haproxy.amqp]}") |"
else
  echo "| AMQP publishes/s through the LB vs direct | skipped: no broker (set AMQP_BACKEND or RABBITMQ=1) | | | |"
fi
