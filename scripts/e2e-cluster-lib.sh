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
