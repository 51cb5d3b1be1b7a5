# The cluster suite's helpers, sourced by scripts/e2e-cluster.sh once its hosts and namespaces exist: power loss
# and return of a host, who holds the VIP, the PostgreSQL primary, waiting for a healthy cluster, and SDK clients
# sending through the VIP (load_start/load_end) with the checks every drill and the rolling upgrade make.
#
# Power loss of a host = SIGKILL of its init (the kernel kills every process of its PID namespace at once) and its
# link on the bridge down (a dead host's NIC answers nothing; the address it held stays in its namespace, as it would
# in a powered-off machine's memory, and is gone at the next boot). Partition = the link down while the host runs.

PROBE="python3 scripts/e2e_cluster_probe.py"
: >"$WORK/drills"
figure() { echo "$*" | tee -a "$WORK/drills" | sed 's/^/    /'; }

power_off() { # HOST
  kill -9 "${INITS[$1]}" 2>/dev/null || true
  wait "${PIDS[$1]}" 2>/dev/null || true
  ip -n "$NS_BR" link set "wb$1-$$" down
}
power_on() { # HOST: the NIC back with only its own address (a reboot starts clean), then boot
  ip -n "${NS[$1]}" addr flush dev eth0
  ip -n "${NS[$1]}" addr add "${IPS[$1]}/24" dev eth0
  ip -n "$NS_BR" link set "wb$1-$$" up
  boot "$1"; wait_booted "$1"
}
vip_holders() { local i out=""; for i in $(seq $N); do ip -n "${NS[$i]}" -4 -o addr show dev eth0 | grep -q " $VIP/" && out+="$i "; done; echo "${out% }"; }
host_of() { echo "${1##*-}"; }   # warbler-2 -> 2
leader() { from_client $PROBE leader "$@"; }
wait_healthy() { # HOST SECONDS WHAT
  for _ in $(seq "$2"); do
    on "$1" /opt/warbler/current/bin/warbler cluster status >"$WORK/healthy.log" 2>&1 && return 0
    sleep 1
  done
  cat "$WORK/healthy.log"; fail "$3: cluster status on host $1 not healthy within $2 s"
}
load_start() { # TAG SECONDS: the drill's clients through the VIP; returns once they send
  # Bounded: a generator that hangs fails the drill instead of the whole run.
  from_client timeout $(($2 + 200)) "$BIN" bench --url "https://$VIP:8443" --ca "$CA" --admin admin --admin-password-file "$ADMIN_PW" \
    --pairs 4 --soak "$2" --rate 20 --prefix "$1" >"$WORK/$1.log" 2>&1 &
  LOAD=$!; BACKGROUND+=("$LOAD")
  for _ in $(seq 300); do grep -q "messages each at" "$WORK/$1.log" && break; kill -0 "$LOAD" 2>/dev/null || break; sleep 0.2; done
  grep -q "messages each at" "$WORK/$1.log" || { cat "$WORK/$1.log"; fail "$1: the clients did not start sending"; }
  sleep 3   # a steady stream before the fault
}
load_end() { # TAG: every acknowledged message once, in order; sets GAP (longest time without an acknowledged send)
  wait "$LOAD" || { cat "$WORK/$1.log"; fail "$1: messages lost, duplicated or out of order"; }
  LINE=$(grep '^soak: pairs' "$WORK/$1.log")
  GAP=$(echo "$LINE" | grep -o 'longest-ack-gap=[0-9.]*' | cut -d= -f2)
  GAPAT=$(echo "$LINE" | grep -o 'gap-at=[0-9:.]*Z' | cut -d= -f2)   # when it began (UTC), for the hosts' journals
  case "$LINE" in *" lost=0 "*" OK") ;; *) fail "$1: $LINE" ;; esac
}
connects_start() { rm -f "$WORK/stop-connects"; from_client $PROBE connects "$VIP" 8443 "$WORK/stop-connects" >"$WORK/connects.log" & CONNECTS=$!; BACKGROUND+=("$CONNECTS"); }
connects_end() { touch "$WORK/stop-connects"; wait "$CONNECTS" || true; CGAP=$(grep -o 'longest-connect-gap=[0-9.]*' "$WORK/connects.log" | cut -d= -f2); }

unit_rss() { # HOST UNIT: the resident memory (KB) of a unit's main process and its children (HAProxy's worker), summed
  on "$1" sh -c 'm=$(systemctl show -p MainPID --value "$0"); for s in /proc/[0-9]*/status; do
    grep -qE "^(Pid|PPid):[[:space:]]+$m\$" "$s" 2>/dev/null && grep VmRSS "$s"; done; true' "$2" | awk '{kb += $2} END {print kb + 0}'
}
# Capacity: CONNECTIONS authenticated WebSockets held open across every member at once, through each member's
# HAProxy (TLS, the cluster's CA), one driver process per member (this sandbox caps a process at 20,000 descriptors)
# and enough client source addresses to stay under HAProxy's per-address cap (1,000); leastconn spreads them over
# every IM server. Prints each member's sessions and memory, checks the cluster still delivers meanwhile, holds them
# HOLD seconds (the server's pings, every 30 s, must be answered) and fails if any was refused or closed. Each
# account's access token is renewed every REFRESH seconds and sent on its sockets, as a client does (a socket whose
# token expires is closed, 4002: auth.access_ttl_seconds is 15 minutes). Sets HELD.
capacity() { # CONNECTIONS HOLD REFRESH
  local total=$1 hold=$2 refresh=$3 i per sources a=101 list pids=() metrics rss0=() hrss0=()
  per=$(( (total + N - 1) / N )); sources=$(( (per + 499) / 500 ))
  [ $(( a + N * sources )) -le 250 ] || fail "capacity: $total connections need more than 150 source addresses"
  for i in $(seq $N); do rss0[$i]=$(unit_rss "$i" warbler-server.service); hrss0[$i]=$(unit_rss "$i" warbler-haproxy.service); done
  local t=$(date +%s%N)
  for i in $(seq $N); do
    list=
    for _ in $(seq "$sources"); do ip -n "$NS_CLIENT" addr add "10.232.0.$a/24" dev eth0 2>/dev/null || true; list+="10.232.0.$a,"; a=$((a + 1)); done
    rm -f "$WORK/hold$i" "$WORK/hold$i.ready"; touch "$WORK/hold$i"
    from_client python3 scripts/peer_bench.py idle --url "https://${IPS[$i]}:8443" --ca "$CA" --admin admin \
      --admin-password-file "$ADMIN_PW" --connections "$per" --warm 0 --settle 1 --source-addresses "${list%,}" \
      --refresh-after "$refresh" --label "member$i" --hold-file "$WORK/hold$i" >"$WORK/capacity$i.log" 2>&1 &
    pids+=($!); BACKGROUND+=($!)
  done
  for i in $(seq $N); do
    while [ ! -e "$WORK/hold$i.ready" ]; do
      kill -0 "${pids[$((i - 1))]}" 2>/dev/null || { tail -5 "$WORK/capacity$i.log"; fail "capacity: driver $i did not open its sockets"; }
      sleep 1
    done
  done
  local opened_ms; opened_ms=$(ms_since "$t")
  sleep 3
  local sum=0 n line
  figure "capacity: $((per * N)) authenticated WebSockets open through the members' HAProxies in $((opened_ms / 1000)) s"
  for i in $(seq $N); do
    metrics=$(sed -n '/^metrics:/,/^[a-z]/s/^  port: *//p' "$WORK/h$i/etc/warbler/warbler.yaml")
    n=$(on "$i" curl -s "http://127.0.0.1:$metrics/metrics" | awk '$1 == "warbler_connections" {print int($2)}'); n=${n:-0}
    sum=$((sum + n))
    local rss hrss
    rss=$(unit_rss "$i" warbler-server.service); hrss=$(unit_rss "$i" warbler-haproxy.service)
    figure "member $i: $n sessions; IM server RSS $((rss0[$i] / 1024)) -> $((rss / 1024)) MB ($(( (rss - rss0[$i]) / (n > 0 ? n : 1) )) KB per session); HAProxy RSS $((hrss0[$i] / 1024)) -> $((hrss / 1024)) MB"
  done
  [ "$sum" -ge "$((per * N))" ] || fail "capacity: the members count $sum sessions, $((per * N)) were opened"
  # The cluster still delivers while they are held: users on host 1 and host N, one message in flight each.
  from_client "$BIN" bench --url "https://${IPS[1]}:8443" --peer-url "https://${IPS[$N]}:8443" --ca "$CA" --admin admin \
    --admin-password-file "$ADMIN_PW" --pairs 4 --messages 200 --window 1 --prefix capacity >"$WORK/capacity-bench.log" 2>&1 \
    || { cat "$WORK/capacity-bench.log"; fail "capacity: messages while $sum sessions are held"; }
  figure "while they are held, 4 pairs across members, one in flight: $(grep -i 'deliver' "$WORK/capacity-bench.log" | head -1 | sed 's/^ *//')"
  sleep "$hold"
  for i in $(seq $N); do rm -f "$WORK/hold$i"; done
  for i in $(seq $N); do wait "${pids[$((i - 1))]}" || { tail -5 "$WORK/capacity$i.log"; fail "capacity: driver $i"; }; done
  local closed=0 renewed=0
  for i in $(seq $N); do
    line=$(grep '"held"' "$WORK/capacity$i.log") || fail "capacity: driver $i printed no end line"
    closed=$((closed + $(echo "$line" | sed 's/.*"closed_meanwhile": *\([0-9]*\).*/\1/')))
    renewed=$((renewed + $(echo "$line" | sed 's/.*"tokens_renewed": *\([0-9]*\).*/\1/')))
  done
  [ "$closed" = 0 ] || fail "capacity: $closed of the held sockets were closed by the cluster while held (close codes: $(grep -ho '"close_codes": {[^}]*}' "$WORK"/capacity*.log | tr '\n' ' '))"
  [ "$refresh" -ge "$hold" ] || [ "$renewed" -gt 0 ] || fail "capacity: no access token was renewed in a hold longer than $refresh s"
  figure "held $hold s more: none closed; access tokens renewed on the open sockets: $renewed"
  HELD=$((per * N))   # what was held, for the caller
  for a in $(seq 101 $((100 + N * sources))); do ip -n "$NS_CLIENT" addr del "10.232.0.$a/24" dev eth0 2>/dev/null || true; done
}
