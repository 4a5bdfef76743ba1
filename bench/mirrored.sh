#!/usr/bin/env bash
# Mirrored queues, Warren vs RabbitMQ 3.10, side by side on this machine: a 3-node Warren
# cluster and a 3-node RabbitMQ cluster (Debian rabbitmq-server, private node names, ports,
# epmd port and mnesia dirs), each with the same policy on ^mirror
# ({"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"automatic"}), measured for
#   (a) persistent 1 KiB publish-with-confirms throughput into a 2-copy mirrored queue
#       (`warren perf`, PerfTest's flags, clients on the leader's node), and
#   (b) failover: from `kill -9` of the leader's node to the first confirm of a message
#       published after the kill, seen by crates/warren/examples/failover.rs publishing through
#       a node that stays up (median of several rounds; the killed node is restarted between).
# It prints a Markdown table with both numbers and the ratio.
#
# As in bench/broker.sh, every broker node is pinned to CPU 0 (each RabbitMQ node with one
# scheduler, +S 1:1) and the clients to CPU 1, so broker and load generator never compete;
# the CPU time of both is reported so a saturated generator shows.
#
# Usage: bench/mirrored.sh [--only warren|rabbitmq] [--rounds N] [seconds for (a), default 10]
# Needs root for the RabbitMQ side (it runs the Erlang VM directly, not through `su`).
# Every process it starts is stopped by pid on exit; logs are kept on failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

only="" rounds=3 secs=10
while [ $# -gt 0 ]; do
  case $1 in
    --only) only=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) secs=$1; shift ;;
  esac
done
case $only in ""|warren|rabbitmq) ;; *) echo "--only takes warren or rabbitmq" >&2; exit 64 ;; esac
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }

die() { echo "mirrored.sh: $*" >&2; exit 1; }
log() { echo "  $*" >&2; }

# --- ports: fixed, away from the defaults of a system broker and of bench/broker.sh ---------
W_AMQP=(5701 5702 5703) W_MGMT=(15701 15702 15703) W_CLUSTER=(25701 25702 25703) W_PROM=(15711 15712 15713)
R_AMQP=(5721 5722 5723) R_DIST=(25721 25722 25723) R_EPMD=4381
# rabbitmqctl's own distribution ports (it is an Erlang node too).
R_CTL_DIST_MIN=35721 R_CTL_DIST_MAX=35730
check_free() {
  local p busy=()
  for p in "$@"; do
    if ss -Hltn "sport = :$p" | grep -q .; then busy+=("$p"); fi
  done
  [ ${#busy[@]} -eq 0 ] || die "port(s) ${busy[*]} already in use; stop whatever listens there (ss -ltnp) and retry"
}
ports=()
want warren && ports+=("${W_AMQP[@]}" "${W_MGMT[@]}" "${W_CLUSTER[@]}" "${W_PROM[@]}")
want rabbitmq && ports+=("${R_AMQP[@]}" "${R_DIST[@]}" "$R_EPMD")
check_free "${ports[@]}"

if want rabbitmq; then
  [ "$(id -u)" = 0 ] || die "the RabbitMQ side needs root (run with --only warren otherwise)"
  if ! [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    log "installing rabbitmq-server (Debian package) ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q rabbitmq-server >/dev/null ||
      die "apt-get install rabbitmq-server failed"
  fi
fi

# --- binaries ---------------------------------------------------------------------------------
target=${CARGO_TARGET_DIR:-$root/target}
if [ -z "${WARREN_BIN:-}" ] || [ -z "${FAILOVER_BIN:-}" ]; then
  log "building warren and the failover probe (release) ..."
  (cd "$root" && cargo build --release -q -p warren --bin warren --example failover) || die "cargo build failed"
fi
warren=${WARREN_BIN:-$target/release/warren}
failover=${FAILOVER_BIN:-$target/release/examples/failover}
[ -x "$warren" ] || die "$warren not found"
[ -x "$failover" ] || die "$failover not found"

ulimit -n 65536 2>/dev/null || true
work=$(mktemp -d /tmp/warren-mirrored.XXXXXX)
chmod 755 "$work"
if [ "$(nproc)" -ge 2 ]; then
  PIN_BROKER="taskset -c 0" PIN_GEN="taskset -c 1" pinning="brokers on CPU 0, clients on CPU 1"
else
  PIN_BROKER="" PIN_GEN="" pinning="unpinned (one CPU)"
fi
POLICY='{"ha-mode":"exactly","ha-params":2,"ha-sync-mode":"automatic"}'

# --- process bookkeeping: everything we start is stopped by pid ------------------------------
declare -A WPID RPID RLAUNCH  # node index -> pid (RabbitMQ: the VM, and the script that runs it)
EPMD_PID=""
stop_pid() {  # SIGTERM, wait up to 10 s, then SIGKILL
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$? i
  for i in "${!WPID[@]}"; do stop_pid "${WPID[$i]}"; done
  for i in "${!RPID[@]}"; do stop_pid "${RPID[$i]}"; done
  for i in "${!RLAUNCH[@]}"; do stop_pid "${RLAUNCH[$i]}"; done
  [ -n "$EPMD_PID" ] && stop_pid "$EPMD_PID"
  if [ $rc -eq 0 ]; then rm -rf "$work"; else echo "mirrored.sh: failed; logs kept in $work" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {  # port what logfile
  local i
  for i in $(seq 300); do
    (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  die "$2 did not listen on port $1 within 30 s; see $3"
}
listener_pid() { ss -Hltnp "sport = :$1" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1; }
cpu_ticks() { local p t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
HZ=$(getconf CLK_TCK)
# poll DEADLINE_S DESCRIPTION COMMAND...: runs COMMAND until it succeeds.
poll() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@"; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}

# --- Warren cluster ---------------------------------------------------------------------------
wname() { echo "mirror$(($1 + 1))@localhost"; }
wctl() { local i=$1; shift; "$warren" ctl -q -n "$(wname "$i"):${W_CLUSTER[$i]}" --cookie-file "$work/w-cookie" "$@"; }
warren_start_node() {
  local i=$1
  mkdir -p "$work/w$i"
  $PIN_BROKER "$warren" server --node-name "$(wname "$i")" --port "${W_AMQP[$i]}" --mgmt-port "${W_MGMT[$i]}" \
    --cluster-port "${W_CLUSTER[$i]}" --prometheus-port "${W_PROM[$i]}" --data-dir "$work/w$i/data" \
    --cookie-file "$work/w-cookie" >>"$work/w$i/out.log" 2>&1 &
  WPID[$i]=$!
  wait_port "${W_AMQP[$i]}" "warren node $(wname "$i")" "$work/w$i/out.log"
}
warren_running3() { wctl 0 cluster_status --formatter json 2>/dev/null | jq -e '(.running_nodes | length) == 3' >/dev/null; }
warren_cluster() {
  printf 'MIRROREDBENCHCOOKIE' >"$work/w-cookie"; chmod 600 "$work/w-cookie"
  local i
  for i in 0 1 2; do warren_start_node $i; done
  for i in 1 2; do
    wctl $i stop_app >/dev/null && wctl $i join_cluster "$(wname 0):${W_CLUSTER[0]}" >/dev/null && wctl $i start_app >/dev/null ||
      die "warren node $(wname $i) could not join; see $work/w$i/out.log"
  done
  poll 60 "3 running nodes" warren_running3 || die "the Warren cluster did not form; logs in $work/w*"
  wctl 0 set_policy ha-two '^mirror' "$POLICY" --apply-to queues >/dev/null || die "set_policy failed"
}
# Prints "leader sync1,sync2 all1,all2" for a queue (from the management API of node i).
warren_queue_nodes() {
  local i=$1 q=$2
  curl -sf -u guest:guest "http://127.0.0.1:${W_MGMT[$i]}/api/queues/%2F/$q" |
    jq -r '[.node, ((.synchronised_slave_nodes // []) | join(",")), ((.slave_nodes // []) | join(","))] | join(" ")'
}
warren_index_of() { local i; for i in 0 1 2; do [ "$(wname $i)" = "$1" ] && echo $i && return; done; return 1; }

# --- RabbitMQ cluster -------------------------------------------------------------------------
rname() { echo "mirror$(($1 + 1))@localhost"; }
RCOOKIE=MIRROREDBENCHCOOKIE
renv() {
  echo HOME="$work/rhome" ERL_EPMD_PORT=$R_EPMD RABBITMQ_CTL_DIST_PORT_MIN=$R_CTL_DIST_MIN RABBITMQ_CTL_DIST_PORT_MAX=$R_CTL_DIST_MAX
}
rctl() {
  local i=$1; shift
  env $(renv) /usr/lib/rabbitmq/bin/rabbitmqctl -q -n "$(rname "$i")" --erlang-cookie "$RCOOKIE" "$@"
}
rabbit_start_node() {
  local i=$1 dir=$work/r$i
  mkdir -p "$dir" "$work/rhome"
  echo '[].' >"$dir/enabled_plugins"
  printf 'listeners.tcp.default = %s\nloopback_users = none\n' "${R_AMQP[$i]}" >"$dir/rabbitmq.conf"
  env $(renv) RABBITMQ_NODENAME="$(rname "$i")" RABBITMQ_NODE_PORT="${R_AMQP[$i]}" RABBITMQ_DIST_PORT="${R_DIST[$i]}" \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_MNESIA_DIR="$dir/mnesia/node" \
    RABBITMQ_FEATURE_FLAGS_FILE="$dir/feature_flags" RABBITMQ_PLUGINS_EXPAND_DIR="$dir/plugins-expand" \
    RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_CONFIG_FILE="$dir/rabbitmq" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+S 1:1 -setcookie $RCOOKIE" \
    $PIN_BROKER /usr/lib/rabbitmq/bin/rabbitmq-server >>"$dir/out.log" 2>&1 &
  local launched=$!
  RLAUNCH[$i]=$launched RPID[$i]=$launched
  wait_port "${R_AMQP[$i]}" "rabbitmq node $(rname "$i")" "$dir/out.log"
  # The Erlang VM (beam.smp) is the process listening on the AMQP port; kill -9 must hit it.
  RPID[$i]=$(listener_pid "${R_AMQP[$i]}")
  [ -n "${RPID[$i]}" ] || RPID[$i]=$launched
  [ -n "$EPMD_PID" ] || EPMD_PID=$(listener_pid $R_EPMD)
}
rabbit_running3() { rctl 0 cluster_status --formatter json 2>/dev/null | jq -e '(.running_nodes | length) == 3' >/dev/null; }
rabbit_cluster() {
  # Besides -setcookie / --erlang-cookie: the CLI and the VM also look in $HOME.
  mkdir -p "$work/rhome"
  printf '%s' "$RCOOKIE" >"$work/rhome/.erlang.cookie"
  chmod 400 "$work/rhome/.erlang.cookie"
  local i
  for i in 0 1 2; do rabbit_start_node $i; done
  for i in 1 2; do
    { rctl $i stop_app && rctl $i join_cluster "$(rname 0)" && rctl $i start_app; } >>"$work/r$i/ctl.log" 2>&1 ||
      die "rabbitmq node $(rname $i) could not join; see $work/r$i/ctl.log"
  done
  poll 60 "3 running nodes" rabbit_running3 || die "the RabbitMQ cluster did not form; logs in $work/r*"
  rctl 0 set_policy --apply-to queues ha-two '^mirror' "$POLICY" >/dev/null || die "rabbitmqctl set_policy failed"
}
# Node part of an Erlang pid printed by list_queues: <mirror1@localhost.1.234.0> -> mirror1@localhost
rabbit_queue_nodes() {
  local q=$1
  rctl 0 list_queues --no-table-headers name pid synchronised_slave_pids slave_pids 2>/dev/null |
    awk -v q="$q" -F'\t' '$1 == q {
      n = $2; sub(/^</, "", n); sub(/\.[0-9]+\.[0-9]+\.[0-9]+>$/, "", n)
      s = $3; gsub(/[<>\[\]]/, "", s); gsub(/\.[0-9]+\.[0-9]+\.[0-9]+/, "", s); gsub(/ /, "", s)
      a = $4; gsub(/[<>\[\]]/, "", a); gsub(/\.[0-9]+\.[0-9]+\.[0-9]+/, "", a); gsub(/ /, "", a)
      print n, s, a }'
}
rabbit_index_of() { local i; for i in 0 1 2; do [ "$(rname $i)" = "$1" ] && echo $i && return; done; return 1; }

# --- the measurements, the same for both ------------------------------------------------------
# broker: warren|rabbitmq. Sets per-broker helpers.
amqp_port() { if [ "$1" = warren ]; then echo "${W_AMQP[$2]}"; else echo "${R_AMQP[$2]}"; fi; }
uri() { echo "amqp://guest:guest@127.0.0.1:$(amqp_port "$1" "$2")/%2f"; }
queue_nodes() { if [ "$1" = warren ]; then warren_queue_nodes "$3" "$2"; else rabbit_queue_nodes "$2"; fi; }
node_pid() { if [ "$1" = warren ]; then echo "${WPID[$2]}"; else echo "${RPID[$2]}"; fi; }
index_of() { if [ "$1" = warren ]; then warren_index_of "$2"; else rabbit_index_of "$2"; fi; }
# Declares durable queue Q through node I (so, client-local, its leader is there).
declare_queue() { "$warren" perf -h "$(uri "$1" "$2")" -x 0 -y 0 -u "$3" -f persistent -z 1 --quiet-seconds >/dev/null 2>&1; }
# True once queue Q (asked through node I) has an in-sync mirror.
synced() { local l s a; read -r l s a <<<"$(queue_nodes "$1" "$2" "$3")"; [ -n "${s:-}" ]; }

# Throughput: sets TP[broker]="sent received confirmed/s broker_cpu% gen_cpu%" and MIRRORED.
# (Functions here set globals rather than print, so none runs in a subshell that would lose
# the pids of nodes it restarts.)
throughput() {
  local b=$1 q=mirror_bench pids=() i
  declare_queue "$b" 0 $q || die "$b: could not declare $q"
  MIRRORED[$b]=yes
  poll 30 "in-sync mirror of $q" synced "$b" $q 0 || MIRRORED[$b]=no
  for i in 0 1 2; do pids+=("$(node_pid "$b" $i)"); done
  local t0 out gen_cpu
  t0=$(cpu_ticks "${pids[@]}")
  local tfile=$work/$b-time
  # bash's `time` reports the generator's user+system CPU.
  out=$( { TIMEFORMAT='%U %S'; time timeout $((secs + 120)) $PIN_GEN "$warren" perf -h "$(uri "$b" 0)" \
      -x 1 -y 1 -s 1024 -f persistent -c 100 -u $q -z "$secs" --quiet-seconds 2>&1; } 2>"$tfile") || true
  local t1; t1=$(cpu_ticks "${pids[@]}")
  echo "$out" >"$work/$b-perf.log"
  local s r c
  s=$(echo "$out" | sed -n 's/.*sending rate avg: \([0-9]*\).*/\1/p')
  r=$(echo "$out" | sed -n 's/.*receiving rate avg: \([0-9]*\).*/\1/p')
  c=$(echo "$out" | sed -n 's/.*confirmed: \([0-9]*\),.*/\1/p')
  gen_cpu=$(awk -v s="$secs" '{ printf "%.0f", ($1 + $2) * 100 / s }' "$tfile")
  TP[$b]="${s:-0} ${r:-0} $(( ${c:-0} / secs )) $(( (t1 - t0) * 100 / HZ / secs )) ${gen_cpu:-0}"
}

restart_node() { if [ "$1" = warren ]; then warren_start_node "$2"; else rabbit_start_node "$2"; fi; }
running3() { if [ "$1" = warren ]; then warren_running3; else rabbit_running3; fi; }

# One failover round: sets ROUND_MS to the ms from the kill to the first confirm of a
# publish sent after it; returns non-zero when there is nothing to measure.
failover_round() {
  local b=$1 r=$2 q="mirror_failover_$2" home=$(( $2 % 3 ))
  ROUND_MS=""
  declare_queue "$b" $home "$q" || die "$b: could not declare $q"
  if ! poll 30 "in-sync mirror of $q" synced "$b" "$q" $home; then
    log "$b: $q has no in-sync mirror after 30 s ($(queue_nodes "$b" "$q" $home)); no failover to measure"
    return 1
  fi
  local leader s a li
  read -r leader s a <<<"$(queue_nodes "$b" "$q" $home)"
  li=$(index_of "$b" "$leader") || die "$b: unknown leader node '$leader' of $q"
  # Publish through a node that survives, preferably one holding no copy (so the publish is
  # forwarded, the common case for a client behind a load balancer).
  local ci="" i
  for i in 0 1 2; do
    [ $i = "$li" ] && continue
    [ -z "$ci" ] && ci=$i
    case ",$a,$s," in *",$(wname $i),"*) ;; *) ci=$i; break ;; esac
  done
  local out
  out=$(timeout 90 $PIN_GEN "$failover" --uri "$(uri "$b" "$ci")" --queue "$q" --kill-pid "$(node_pid "$b" "$li")" \
    --warmup-ms 2000 --timeout-secs 30 2>&1) || { echo "$out" >>"$work/$b-failover.log"; log "$b: failover probe failed: $out"; return 1; }
  echo "$out" >>"$work/$b-failover.log"
  ROUND_MS=$(echo "$out" | sed -n 's/^RESULT first_confirm_ms=\([0-9.]*\).*/\1/p')
  log "$b round $r: leader $leader killed, client on node $((ci + 1)); $(echo "$out" | head -n1)"
  # Bring the killed node back (it rejoins its cluster) before the next round.
  if [ "$b" = warren ]; then wait "${WPID[$li]}" 2>/dev/null || true
  else wait "${RLAUNCH[$li]}" 2>/dev/null || true; fi
  restart_node "$b" "$li"
  poll 90 "3 running nodes again" running3 "$b" || die "$b: node $((li + 1)) did not rejoin after the kill"
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A TP FO FOALL MIRRORED
for b in warren rabbitmq; do
  want $b || continue
  log "$b: starting a 3-node cluster ..."
  if [ $b = warren ]; then warren_cluster; else rabbit_cluster; fi
  log "$b: throughput, ${secs}s ..."
  throughput $b
  log "$b: throughput: ${TP[$b]} (sent received confirmed/s broker-CPU% generator-CPU%), mirrored: ${MIRRORED[$b]}"
  times=()
  for r in $(seq 1 "$rounds"); do
    if failover_round $b "$r" && [ -n "$ROUND_MS" ]; then times+=("$ROUND_MS"); else break; fi
  done
  FOALL[$b]="${times[*]:-}"
  FO[$b]=$(printf '%s\n' "${times[@]:-}" | grep . | median || true)
  # Stop this cluster before the next broker runs, so they never share the CPU.
  if [ $b = warren ]; then for i in "${!WPID[@]}"; do stop_pid "${WPID[$i]}"; done; WPID=()
  else
    for i in "${!RPID[@]}"; do stop_pid "${RPID[$i]}"; done
    for i in "${!RLAUNCH[@]}"; do stop_pid "${RLAUNCH[$i]}"; done
    RPID=() RLAUNCH=()
    if [ -n "$EPMD_PID" ]; then stop_pid "$EPMD_PID"; fi
    EPMD_PID=""
  fi
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.1f×", a / b; else print "n/a" }'; }
cell_tp() {
  [ -n "${TP[$1]:-}" ] || { echo "not run"; return; }
  local s r c bc gc; read -r s r c bc gc <<<"${TP[$1]}"
  local note=""; [ "${MIRRORED[$1]}" = yes ] || note=" (**no in-sync mirror: not mirrored**)"
  echo "$s / $r / $c$note"
}
cell_fo() {
  [ -n "${TP[$1]:-}" ] || { echo "not run"; return; }
  [ -n "${FO[$1]:-}" ] || { echo "not measured (no in-sync mirror or probe failed)"; return; }
  echo "${FO[$1]} ms (rounds: ${FOALL[$1]// /, })"
}
cpu_cell() { [ -n "${TP[$1]:-}" ] || { echo "not run"; return; }; local s r c bc gc; read -r s r c bc gc <<<"${TP[$1]}"; echo "brokers $bc%, generator $gc%"; }
read -r _ wr _ _ _ <<<"${TP[warren]:-0 0 0 0 0}"
# A ratio against a Warren queue that was not mirrored would compare different work.
[ "${MIRRORED[warren]:-no}" = yes ] || wr=0
read -r _ rr _ _ _ <<<"${TP[rabbitmq]:-0 0 0 0 0}"

echo
echo "Warren $("$warren" --version | awk '{print $2}') vs RabbitMQ $(dpkg-query -W -f='${Version}' rabbitmq-server 2>/dev/null || echo '?'), 3 nodes each, policy ^mirror exactly 2 automatic, $(date -u +%Y-%m-%d), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $pinning"
echo
echo "| measure | Warren | RabbitMQ | ratio |"
echo "|---|---|---|---|"
echo "| 1→1 1 KiB persistent, confirms (100), mirrored ×2, msg/s (sent / received / confirmed), ${secs}s | $(cell_tp warren) | $(cell_tp rabbitmq) | $(ratio "$wr" "$rr") |"
echo "| CPU during that row (100% = one core) | $(cpu_cell warren) | $(cpu_cell rabbitmq) | |"
echo "| failover: kill -9 of the leader's node → first confirm of a publish sent after it, median of $rounds | $(cell_fo warren) | $(cell_fo rabbitmq) | $(ratio "${FO[rabbitmq]:-0}" "${FO[warren]:-0}") faster |"
