#!/bin/bash
# Client-observed VRRP failover time: keepalived vs `warren vrrp`, same configuration.
#
# Topology (network namespaces only, 198.18.0.0/24, bridge in its own namespace):
#   wvrb-a 198.18.0.1 (MASTER, priority 150), wvrb-b 198.18.0.2 (BACKUP, priority 100),
#   wvrb-c 198.18.0.3 (client), VIP 198.18.0.100/24. A tiny TCP server on port 7000 on a and b
#   answers with the host name. The client connects to VIP:7000 every ~1 ms (5 ms connect and
#   20 ms read timeouts; the path inside the namespaces answers in microseconds, and long
#   timeouts would add themselves to the result whenever a probe was in flight during the
#   takeover); the failover time is from the moment the master is stopped until the first reply
#   from b (so it includes the VRRP takeover, gratuitous ARP and the client's ARP cache update).
#   The master is stopped half an advert interval after one of its adverts (seen by the client).
#   "stop" = SIGTERM (the daemon sends a priority-0 advert); "crash" = the master's link goes
#   down, then every process of the master daemon (keepalived: parent and VRRP child) gets
#   SIGKILL, so no priority-0 advert can leave: the backup's master-down interval applies.
#
# Usage: sudo bench/vrrp.sh        (RUNS=10 by default; WARREN_BIN=path/to/warren)
# Needs root, iproute2, python3, keepalived 2.x. Prints a Markdown table.
set -euo pipefail
P=wvrb-
RUNS=${RUNS:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
WARREN=${WARREN_BIN:-${CARGO_TARGET_DIR:-$HERE/../target}/debug/warren}
[ "$(id -u)" = 0 ] || { echo "bench/vrrp.sh: needs root (network namespaces)"; exit 1; }
[ -x "$WARREN" ] || { echo "bench/vrrp.sh: $WARREN not found: run \`cargo build --bin warren\` (or set WARREN_BIN)"; exit 1; }
command -v keepalived >/dev/null || { echo "bench/vrrp.sh: keepalived not installed"; exit 1; }
W=$(mktemp -d /tmp/wvrb.XXXXXX)
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
  for f in "$W"/*.pid; do [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null || true; done
  for ns in $(ip netns list | awk '{print $1}' | grep "^$P" || true); do ip netns del "$ns"; done
}
trap 'cleanup; rm -rf "$W"' EXIT
cleanup

ip netns add ${P}br
ip -n ${P}br link add br0 type bridge
ip -n ${P}br link set br0 up
i=1
for h in a b c; do
  ip netns add $P$h
  ip -n ${P}br link add v$h type veth peer name eth0 netns $P$h
  ip -n ${P}br link set v$h master br0 up
  ip -n $P$h link set lo up
  ip -n $P$h addr add 198.18.0.$i/24 dev eth0
  ip -n $P$h link set eth0 up
  i=$((i+1))
done

cat > "$W/server.py" <<'EOF'
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000)); s.listen(128)
while True:
    c, _ = s.accept(); c.sendall(sys.argv[1].encode()); c.close()
EOF
cat > "$W/client.py" <<'EOF'
# client.py MODE(stop|crash) ADVERT_SECONDS PID... -> prints failover milliseconds
import os, signal, socket, subprocess, sys, time
def probe():
    try:
        s = socket.create_connection(("198.18.0.100", 7000), timeout=0.005)
        s.settimeout(0.02); d = s.recv(16); s.close(); return d.decode()
    except OSError:
        return None
deadline = time.monotonic() + 20
while probe() != "a":
    if time.monotonic() > deadline: print("nan"); sys.exit(0)
    time.sleep(0.01)
mode, advert, pids = sys.argv[1], float(sys.argv[2]), [int(p) for p in sys.argv[3:]]
# Same phase for every run and implementation: act half an advert interval after an advert
# from the master (seen on the bridge, which floods 224.0.0.18), so "crash" results do not
# depend on where in the interval the crash happened to land.
sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
sniff.settimeout(5)
while True:
    f = sniff.recv(2048)
    if len(f) > 34 and f[23] == 112 and f[26:30] == bytes([198, 18, 0, 1]):
        break
time.sleep(advert / 2)
t0 = time.monotonic()
if mode == "stop":
    os.kill(pids[0], signal.SIGTERM)
else:
    subprocess.run(["ip", "-n", "wvrb-a", "link", "set", "eth0", "down"], check=True)
    for p in pids:
        os.kill(p, signal.SIGKILL)
while True:
    if probe() == "b":
        print("%.0f" % ((time.monotonic() - t0) * 1000)); break
    if time.monotonic() - t0 > 20: print("nan"); break
    time.sleep(0.001)
EOF
for h in a b; do ip netns exec $P$h python3 "$W/server.py" $h & PIDS+=($!); done
sleep 0.5

conf() { # version state prio advert
  cat <<EOF
global_defs {
  script_user root
  enable_script_security
  vrrp_version $1
}
vrrp_instance VI_1 {
  state $2
  interface eth0
  virtual_router_id 51
  priority $3
  advert_int $4
  virtual_ipaddress {
    198.18.0.100/24
  }
}
EOF
}

start() { # impl host version state prio advert run-id -> pid
  local impl=$1 h=$2 n=$7
  conf "$3" "$4" "$5" "$6" > "$W/$impl-$h.conf"
  if [ "$impl" = keepalived ]; then
    ip netns exec $P$h keepalived -n -l --vrrp -f "$W/$impl-$h.conf" -p "$W/$h-$n-main.pid" \
      -r "$W/$h-$n-vrrp.pid" -c "$W/$h-$n-chk.pid" > "$W/$impl-$h.log" 2>&1 &
  else
    ip netns exec $P$h "$WARREN" vrrp -n -l -f "$W/$impl-$h.conf" -p "$W/$h-$n-main.pid" > "$W/$impl-$h.log" 2>&1 &
  fi
  echo $!
}

stop_all() { # pids... : SIGTERM, wait until gone (they are not our children), then SIGKILL
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq 100); do
    local alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.05
  done
  kill -KILL "$@" 2>/dev/null || true
}

one_run() { # impl version advert mode -> ms
  local impl=$1 v=$2 adv=$3 mode=$4 n
  n=$(date +%s%N) # unique pid-file names: a previous daemon's exit must not remove ours
  ip -n ${P}a link set eth0 up
  ip -n ${P}a addr del 198.18.0.100/24 dev eth0 2>/dev/null || true
  ip -n ${P}b addr del 198.18.0.100/24 dev eth0 2>/dev/null || true
  local pa pb kids="" all
  pa=$(start "$impl" a "$v" MASTER 150 "$adv" "$n")
  pb=$(start "$impl" b "$v" BACKUP 100 "$adv" "$n")
  # Wait for a steady state: a holds the VIP and b has seen a's adverts for a while.
  for _ in $(seq 200); do ip -n ${P}a -4 addr show dev eth0 | grep -q 198.18.0.100 && break; sleep 0.05; done
  sleep 1
  if [ "$impl" = keepalived ]; then
    kids=$(cat "$W/a-$n-vrrp.pid")
    [ -n "$kids" ] || { echo "keepalived VRRP child pid missing" >&2; exit 1; }
  fi
  ip netns exec ${P}c python3 "$W/client.py" "$mode" "$adv" "$pa" $kids
  all="$pa $pb $kids"
  [ -f "$W/b-$n-vrrp.pid" ] && all="$all $(cat "$W/b-$n-vrrp.pid")"
  # shellcheck disable=SC2086
  stop_all $all
}

stats() { # values... -> "median (min–max)"
  printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%d ms (%d–%d)", m, a[1], a[NR]}'
}

echo "| implementation | VRRP | advert_int | stop (SIGTERM): median (min–max) | crash (SIGKILL + link down): median (min–max) |"
echo "|---|---|---|---|---|"
for row in "keepalived 2 1" "warren 2 1" "keepalived 3 0.1" "warren 3 0.1"; do
  set -- $row
  s=(); c=()
  for _ in $(seq "$RUNS"); do s+=("$(one_run "$1" "$2" "$3" stop)"); done
  for _ in $(seq "$RUNS"); do c+=("$(one_run "$1" "$2" "$3" crash)"); done
  name=$1
  # awk reads all of keepalived's output: `head` would close the pipe early (SIGPIPE + pipefail)
  [ "$1" = keepalived ] && name="keepalived $(keepalived --version 2>&1 | awk 'NR == 1 {print $2}')"
  echo "| $name | v$2 | $3 s | $(stats "${s[@]}") | $(stats "${c[@]}") |"
done
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $RUNS runs each, $(nproc) cores; warren binary: $WARREN"
