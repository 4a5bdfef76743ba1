#!/usr/bin/env bash
# Two Warren builds on one benchmark row, in interleaved runs (A, B, A, B, ...), so that the
# VM's drift between runs falls on both alike. Prints each run's received rate and the broker's
# CPU time per message, then the means. This is how the before/after figures in the README and
# the issue notes were measured.
#
# Usage: bench/compare.sh [-n runs] [-s seconds] [-b BROKER | -g GENERATOR] A_BIN B_BIN [-- perf flags]
#   -b BROKER     every run uses this broker; A and B are the load generators being compared
#   -g GENERATOR  every run uses this load generator; A and B are the brokers being compared
#   (neither: each build runs as both broker and generator, as bench/broker.sh does)
#   perf flags default to the 64 KiB row: -x 1 -y 1 -s 65536 -a
# Build an older revision to compare with: git worktree add /tmp/old REV &&
#   (cd /tmp/old && cargo build --release --bin warren)  ->  /tmp/old/target/release/warren
set -euo pipefail
runs=3 secs=8 broker="" gen=""
while getopts "n:s:b:g:" o; do
  case $o in
    n) runs=$OPTARG ;; s) secs=$OPTARG ;; b) broker=$OPTARG ;; g) gen=$OPTARG ;;
    *) sed -n '7,13p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] || { sed -n '7,13p' "$0" >&2; exit 2; }
a=$1 b=$2; shift 2
[ "${1:-}" = "--" ] && shift
flags=("$@"); [ ${#flags[@]} -gt 0 ] || flags=(-x 1 -y 1 -s 65536 -a)
pin_b="" pin_g=""
[ "$(nproc)" -ge 2 ] && pin_b="taskset -c 0" pin_g="taskset -c 1"
work=$(mktemp -d /tmp/warren-compare.XXXXXX)
echo secret >"$work/cookie"; chmod 600 "$work/cookie"
port=5695
trap 'kill ${pid:-} 2>/dev/null; rm -rf "$work"' EXIT

# One run with broker $1 and generator $2: prints "received_msg_per_s broker_cpu_us_per_msg".
run() {
  rm -rf "$work/data"
  $pin_b "$1" server --port $port --mgmt-port 15695 --cluster-port 25695 --prometheus-port 15696 \
    --cookie-file "$work/cookie" --data-dir "$work/data" --node-name compare@localhost >"$work/log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  local c0 c1 out rate total
  c0=$(awk '{print $14 + $15}' /proc/$pid/stat)
  out=$($pin_g "$2" perf -h "amqp://guest:guest@127.0.0.1:$port/%2f" -z "$secs" --quiet-seconds "${flags[@]}" 2>&1) || true
  c1=$(awk '{print $14 + $15}' /proc/$pid/stat)
  kill $pid; wait $pid 2>/dev/null || true
  rate=$(echo "$out" | sed -n 's/.*receiving rate avg: \([0-9]*\).*/\1/p')
  total=$(echo "$out" | sed -n 's/.*received \([0-9]*\) in.*/\1/p')
  awk -v r="${rate:-0}" -v c=$((c1 - c0)) -v n="${total:-0}" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%d %.1f\n", r, (n > 0 ? c * 1e6 / hz / n : 0) }'
}

echo "perf ${flags[*]}, ${runs} × ${secs}s each, broker ${broker:-(each build)}, generator ${gen:-(each build)}"
declare -A sum_r sum_c
for i in $(seq "$runs"); do
  for label in A B; do
    bin=$a; [ $label = B ] && bin=$b
    read -r r c <<<"$(run "${broker:-$bin}" "${gen:-$bin}")"
    echo "run $i $label: $r msg/s, broker ${c} µs/msg"
    sum_r[$label]=$(( ${sum_r[$label]:-0} + r ))
    sum_c[$label]=$(awk -v s="${sum_c[$label]:-0}" -v c="$c" 'BEGIN { print s + c }')
  done
done
for label in A B; do
  awk -v l=$label -v r="${sum_r[$label]}" -v c="${sum_c[$label]}" -v n="$runs" \
    'BEGIN { printf "%s mean: %d msg/s, broker %.1f µs/msg\n", l, r / n, c / n }'
done
