#!/usr/bin/env bash
# Warren vs RabbitMQ 3.10 on this machine, one fixed matrix, one run, ratios printed.
#
# Both brokers are pinned to CPU 0 (RabbitMQ with one scheduler, +S 1:1) and the load
# generator (`warren perf`, PerfTest's flags) to CPU 1, so each broker gets one core and the
# generator never competes with it. Durability settings are the same for both: queues are
# declared durable and messages persistent only in the persistent row.
#
# This VM's throughput varies by ±15% from one run to the next (and tail latency more), so each
# row runs REPEATS times, alternating the brokers, and the table shows each broker's median run.
#
# Usage: bench/broker.sh [seconds per row, default 10] [repeats, default 3]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
secs=${1:-10}
repeats=${2:-3}
source "$here/rabbitmq.sh"
rabbitmq_ensure_installed
ulimit -n 65536 2>/dev/null || ulimit -n 16384 2>/dev/null || true
(cd "$root" && cargo build --release --bin warren -q)
warren="$root/target/release/warren"
work=$(mktemp -d /tmp/warren-bench.XXXXXX)
chmod 755 "$work"  # RabbitMQ runs as the rabbitmq user and must reach its data dir
ncpu=$(nproc)
if [ "$ncpu" -ge 2 ]; then
  PIN_BROKER="taskset -c 0"; PIN_GEN="taskset -c 1"; pinning="broker on CPU 0, load generator on CPU 1"
else
  PIN_BROKER=""; PIN_GEN=""; pinning="unpinned (one CPU)"
fi
RABBIT_ERL_ARGS="+S 1:1"
WARREN_PORT=5690 RABBIT_PORT=5680

cleanup() {
  rabbitmq_stop || true
  [ -n "${WARREN_PID:-}" ] && kill "$WARREN_PID" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# name | perf flags
rows=(
  "1→1 16 B transient auto-ack|-x 1 -y 1 -s 16 -a"
  "1→1 16 B transient manual ack, prefetch 100|-x 1 -y 1 -s 16 -q 100"
  "1→1 1 KiB persistent, confirms (100), manual ack|-x 1 -y 1 -s 1024 -f persistent -c 100 -q 100"
  "4→4 1 KiB transient|-x 4 -y 4 -s 1024 -a"
  "fanout to 4 queues (16 B, rate = per queue)|-e bench.fanout -t fanout --queue-pattern bench-fan-%d --queue-pattern-from 1 --queue-pattern-to 4 -x 1 -y 4 -s 16 -a"
  "1→1 64 KiB transient|-x 1 -y 1 -s 65536 -a"
  "1,000 queues, one consumer each (16 B)|--queue-pattern bench-q-%d --queue-pattern-from 1 --queue-pattern-to 1000 -x 1 -y 1000 -s 16 -a"
)

# Runs one row against PORT; prints "sent received".
run_row() {
  local port=$1; shift
  local out
  # A broker that cannot take the row (e.g. runs out of file descriptors) must not hang the
  # whole matrix: the row then reads 0 and the table says so.
  out=$(timeout $((secs + 120)) $PIN_GEN "$warren" perf -h "amqp://guest:guest@127.0.0.1:$port/%2f" -z "$secs" --quiet-seconds "$@" 2>&1) || true
  local s r
  s=$(echo "$out" | sed -n 's/.*sending rate avg: \([0-9]*\).*/\1/p')
  r=$(echo "$out" | sed -n 's/.*receiving rate avg: \([0-9]*\).*/\1/p')
  echo "${s:-0} ${r:-0}"
}

# Runs a row at a fixed publish rate against PORT; prints "p50 p99" consumer latency in µs.
# Time stolen from this VM by its host, in ticks since boot (/proc/stat, 8th value of "cpu").
steal_ticks() { awk '/^cpu / { print $9 }' /proc/stat; }

# Prints "p50 p99 steal%": steal is the share of both CPUs' time the host took during the run.
# Tail latency on a VM is set by those pauses once they cover more than 1% of the run.
latency_row() {
  local port=$1 rate=$2; shift 2
  local out s0 s1 lat
  s0=$(steal_ticks)
  out=$(timeout $((secs + 120)) $PIN_GEN "$warren" perf -h "amqp://guest:guest@127.0.0.1:$port/%2f" -z "$secs" --quiet-seconds -r "$rate" "$@" 2>&1) || true
  s1=$(steal_ticks)
  lat=$(echo "$out" | sed -n 's|.*consumer latency min/median/75th/95th/99th [0-9]*/\([0-9]*\)/[0-9]*/[0-9]*/\([0-9]*\) µs.*|\1 \2|p' | tail -1)
  echo "${lat:-0 0} $(awk -v d=$((s1 - s0)) -v t="$secs" -v n="$(nproc)" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", 100 * d / (t * n * hz) }')"
}

rss_kb() { ps -o rss= -p "$1" | tr -d ' '; }

idle_row() {
  local port=$1 pid=$2 n=10000
  local before after
  before=$(rss_kb "$pid")
  $PIN_GEN "$warren" perf -h "amqp://guest:guest@127.0.0.1:$port/%2f" --idle-connections $n -z 5 >/dev/null 2>&1 &
  local gen=$!
  sleep 4
  for _ in $(seq 60); do
    [ "$(ss -tn state established "( sport = :$port )" | wc -l)" -gt $((n - 10)) ] && break
    sleep 1
  done
  sleep 1
  after=$(rss_kb "$pid")
  wait $gen || true
  echo $(( (after - before) * 1024 / n ))
}

declare -A W R
start_warren() {
  rm -rf "$work/warren"; mkdir -p "$work/warren"
  $PIN_BROKER "$warren" server --port $WARREN_PORT --mgmt-port 15690 --cluster-port 25690 --prometheus-port 15691 --cookie-file "$work/cookie" --data-dir "$work/warren" --node-name bench@localhost >"$work/warren.log" 2>&1 &
  WARREN_PID=$!
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$WARREN_PORT) 2>/dev/null && break; sleep 0.1; done
}

# The median of "a b" pairs (one per line), by the second field (received / p99).
median_by_2nd() { sort -n -k2,2 | awk '{ v[NR] = $0 } END { print v[int((NR + 1) / 2)] }'; }

echo "Running ${#rows[@]} rows × 2 brokers × ${repeats} runs × ${secs}s ($pinning)..." >&2
for i in "${!rows[@]}"; do
  flags=${rows[$i]#*|}
  wruns="" rruns=""
  for _ in $(seq "$repeats"); do
    # A fresh broker per run, so no run inherits another's queues or memory.
    start_warren
    wruns+="$(run_row $WARREN_PORT $flags)"$'\n'
    kill $WARREN_PID; wait $WARREN_PID 2>/dev/null || true
    rabbitmq_start "$work/rabbit" $RABBIT_PORT
    rruns+="$(run_row $RABBIT_PORT $flags)"$'\n'
    rabbitmq_stop
  done
  W[$i]=$(printf '%s' "$wruns" | median_by_2nd)
  R[$i]=$(printf '%s' "$rruns" | median_by_2nd)
  echo "  done: ${rows[$i]%%|*}: warren runs $(printf '%s' "$wruns" | awk '{print $2}' | xargs) / rabbitmq runs $(printf '%s' "$rruns" | awk '{print $2}' | xargs)" >&2
done
# Latency at half of RabbitMQ's throughput (so neither broker is saturated), for the
# transient manual-ack row and the persistent confirm row.
lat_rows=(1 2)
declare -A LW LR LRATE
for i in "${lat_rows[@]}"; do
  read -r _ rr <<<"${R[$i]}"
  LRATE[$i]=$(( ${rr:-0} / 2 ))
  [ "${LRATE[$i]}" -gt 0 ] || LRATE[$i]=1000
  flags=${rows[$i]#*|}
  wruns="" rruns=""
  for _ in $(seq "$repeats"); do
    start_warren
    wruns+="$(latency_row $WARREN_PORT "${LRATE[$i]}" $flags)"$'\n'
    kill $WARREN_PID; wait $WARREN_PID 2>/dev/null || true
    rabbitmq_start "$work/rabbit" $RABBIT_PORT
    rruns+="$(latency_row $RABBIT_PORT "${LRATE[$i]}" $flags)"$'\n'
    rabbitmq_stop
  done
  LW[$i]=$(printf '%s' "$wruns" | median_by_2nd)
  LR[$i]=$(printf '%s' "$rruns" | median_by_2nd)
  echo "  done: latency ${rows[$i]%%|*} at ${LRATE[$i]} msg/s: warren p99 (steal %) runs $(printf '%s' "$wruns" | awk '{printf "%s (%s) ", $2, $3}') / rabbitmq p99 (steal %) runs $(printf '%s' "$rruns" | awk '{printf "%s (%s) ", $2, $3}')" >&2
done
start_warren
w_idle=$(idle_row $WARREN_PORT $WARREN_PID)
kill $WARREN_PID; wait $WARREN_PID 2>/dev/null || true
rabbitmq_start "$work/rabbit" $RABBIT_PORT
r_idle=$(idle_row $RABBIT_PORT $RABBIT_PID)
rabbitmq_stop

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f×", a / b; else print "n/a" }'; }
echo
echo "Warren $("$warren" --version | awk '{print $2}') vs RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?'), $(date -u +%Y-%m-%d), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), median of ${repeats} runs of ${secs}s per row, $pinning"
echo
echo "| scenario | Warren msg/s (sent / received) | RabbitMQ msg/s (sent / received) | ratio (received) |"
echo "|---|---|---|---|"
for i in "${!rows[@]}"; do
  read -r ws wr <<<"${W[$i]}"
  read -r rs rr <<<"${R[$i]}"
  echo "| ${rows[$i]%%|*} | $ws / $wr | $rs / $rr | $(ratio "$wr" "$rr") |"
done
echo "| 10,000 idle connections: memory per connection | $((w_idle / 1024)) KiB | $((r_idle / 1024)) KiB | $(ratio "$r_idle" "$w_idle") less |"
echo
echo "| consumer latency at 50% of RabbitMQ's throughput | Warren p50 / p99 (host steal) | RabbitMQ p50 / p99 (host steal) | RabbitMQ p99 ÷ Warren p99 |"
echo "|---|---|---|---|"
for i in "${lat_rows[@]}"; do
  read -r w50 w99 wst <<<"${LW[$i]:-0 0 ?}"
  read -r r50 r99 rst <<<"${LR[$i]:-0 0 ?}"
  echo "| ${rows[$i]%%|*} at ${LRATE[$i]} msg/s | ${w50} µs / ${w99} µs (${wst}%) | ${r50} µs / ${r99} µs (${rst}%) | $(ratio "$r99" "$w99") |"
done
