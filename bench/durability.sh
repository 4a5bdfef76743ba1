#!/usr/bin/env bash
# Persistent-message numbers for one Warren node: publish-with-confirms throughput, fsyncs per
# second and messages per fsync (group commit), then recovery time after `kill -9` and the
# node's memory holding the queue, then drains it. Prints one Markdown table.
#
# Usage: bench/durability.sh [messages, default 1000000] [producers, default 4]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
total=${1:-1000000}
producers=${2:-4}
(cd "$root" && cargo build --release --bin warren -q)
warren="$root/target/release/warren"
work=$(mktemp -d /tmp/warren-durability.XXXXXX)
need_kb=$(( total * 1200 / 1024 ))
free_kb=$(df -Pk "$work" | awk 'NR==2 {print $4}')
if [ "$free_kb" -lt $(( need_kb * 2 )) ]; then
  echo "skipping: $total × 1 KiB needs about $(( need_kb * 2 / 1024 )) MB free in $work, only $(( free_kb / 1024 )) MB" >&2
  exit 0
fi
port=5693 prom=15694
start() {
  "$warren" server --port $port --mgmt-port 15693 --cluster-port 25693 --prometheus-port $prom \
    --cookie-file "$work/cookie" --data-dir "$work/data" --node-name durability@localhost >>"$work/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && return; sleep 0.1; done
  echo "warren did not start" >&2; exit 1
}
metric() { curl -s "http://127.0.0.1:$prom/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
trap 'kill -9 ${pid:-0} 2>/dev/null || true; rm -rf "$work"' EXIT

start
f0=$(metric warren_journal_fsyncs_total)
t0=$(date +%s.%N)
"$warren" perf -h "amqp://guest:guest@127.0.0.1:$port/%2f" -u durable-bench -f persistent -c 100 \
  -x "$producers" -y 0 -s 1024 -C $(( total / producers )) --quiet-seconds >"$work/perf.out"
t1=$(date +%s.%N)
f1=$(metric warren_journal_fsyncs_total)
msgs=$(metric warren_journal_messages_total)
rss_before=$(ps -o rss= -p $pid | tr -d ' ')
kill -9 $pid; wait $pid 2>/dev/null || true
start
rss_after=$(ps -o rss= -p $pid | tr -d ' ')
recovered=$(grep -o 'recovered [0-9]* messages.*' "$work/server.log" | tail -1)
# Drain the whole queue (it pages in from the journal as it goes).
d0=$(date +%s.%N)
"$warren" perf -h "amqp://guest:guest@127.0.0.1:$port/%2f" -u durable-bench -f persistent -x 0 -y 1 -q 1000 \
  -D "$total" --quiet-seconds >"$work/drain.out"
d1=$(date +%s.%N)
rss_drained=$(ps -o rss= -p $pid | tr -d ' ')
secs=$(echo "$t1 - $t0" | bc -l)
fsyncs=$(( ${f1%.*} - ${f0%.*} ))
echo
echo "Warren $("$warren" --version | awk '{print $2}'), $(date -u +%Y-%m-%d), $(nproc) CPUs, $(df -P "$work" | awk 'NR==2 {print $1}'), $total × 1 KiB persistent messages, $producers producers, confirm window 100"
echo
echo "| measure | value |"
echo "|---|---|"
printf "| publish with confirms | %.0f msg/s |\n" "$(echo "$total / $secs" | bc -l)"
printf "| fsyncs per second | %.0f |\n" "$(echo "$fsyncs / $secs" | bc -l)"
printf "| messages per fsync | %.1f |\n" "$(echo "${msgs%.*} / ($fsyncs + 0.000001)" | bc -l)"
echo "| recovery after kill -9 | $recovered |"
echo "| node RSS holding the queue, before / after the restart | $(( rss_before / 1024 )) MB / $(( rss_after / 1024 )) MB |"
printf "| drain after the restart | %.0f msg/s; RSS then %d MB |\n" "$(echo "$total / ($d1 - $d0)" | bc -l)" $(( rss_drained / 1024 ))
