# Shared by the end-to-end scripts (source it): a cached minimal Debian 12 root, a work directory, two network
# namespaces joined by a veth pair (the host under test and a "client" machine), booting a root with systemd under
# systemd-nspawn, and cleanup. Traffic stays inside the two namespaces.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/e2e-root.sh"
WORK=$(mktemp -d "$CACHE/run.XXXXXX")
NSPAWN_PID= INIT=
NS_HOST=warbler-e2e-host-$$ NS_CLIENT=warbler-e2e-client-$$ HOST_IP=10.231.7.2
ip netns add "$NS_HOST"; ip netns add "$NS_CLIENT"
ip link add "e2ec$$" type veth peer name "e2eh$$"
ip link set "e2eh$$" netns "$NS_HOST"; ip link set "e2ec$$" netns "$NS_CLIENT"
ip -n "$NS_HOST" addr add "$HOST_IP/24" dev "e2eh$$"; ip -n "$NS_HOST" link set "e2eh$$" up; ip -n "$NS_HOST" link set lo up
ip -n "$NS_CLIENT" addr add 10.231.7.1/24 dev "e2ec$$"; ip -n "$NS_CLIENT" link set "e2ec$$" up; ip -n "$NS_CLIENT" link set lo up
BACKGROUND_PIDS=()
cleanup() {
  for p in "${BACKGROUND_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$NSPAWN_PID" ] && kill -0 "$NSPAWN_PID" 2>/dev/null; then
    nsenter -t "$INIT" -a systemctl poweroff >/dev/null 2>&1 || kill "$NSPAWN_PID"
    wait "$NSPAWN_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  ip netns del "$NS_HOST" 2>/dev/null || true
  ip netns del "$NS_CLIENT" 2>/dev/null || true
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "  ok: $*"; }
inside() { nsenter -t "$INIT" -a "$@"; }
from_client() { ip netns exec "$NS_CLIENT" "$@"; }

# container_init: the container's systemd as the host sees it, a child of systemd-nspawn named systemd (nspawn's
# short-lived helper child, seen first under load, is not it); empty while there is none yet.
container_init() {
  local p
  for p in $(pgrep -P "$NSPAWN_PID" 2>/dev/null || true); do
    if [ "$(cat "/proc/$p/comm" 2>/dev/null || true)" = systemd ]; then echo "$p"; return 0; fi
  done
  return 0
}

# boot_systemd DIR NAME [nspawn options…]: boots DIR with systemd in the host namespace; waits until it runs.
boot_systemd() {
  local dir=$1 name=$2; shift 2
  systemd-nspawn --register=no --keep-unit --network-namespace-path="/run/netns/$NS_HOST" -D "$dir" -M "$name" -b "$@" >>"$WORK/$name.console" 2>&1 &
  NSPAWN_PID=$!
  INIT=
  local s=""
  for _ in $(seq 600); do
    kill -0 "$NSPAWN_PID" 2>/dev/null || { tail -20 "$WORK/$name.console" >&2; fail "the container $name exited while booting"; }
    INIT=$(container_init)
    if [ -n "$INIT" ]; then
      s=$(inside systemctl is-system-running 2>/dev/null || true)
      case "$s" in running|degraded) break ;; esac
    fi
    sleep 0.1
  done
  [ -n "$INIT" ] || { tail -20 "$WORK/$name.console" >&2; fail "the container $name did not start"; }
}

# shut_down reboot|poweroff: asks the container's systemd to go down, again every 5 s (a request made while it is
# still busy can be refused), and waits until systemd-nspawn has exited; fails after 90 s instead of hanging.
shut_down() {
  local how=$1 i
  for i in $(seq 900); do
    kill -0 "$NSPAWN_PID" 2>/dev/null || break
    if [ $((i % 50)) = 1 ]; then inside systemctl "$how" >/dev/null 2>&1 || true; fi
    sleep 0.1
  done
  kill -0 "$NSPAWN_PID" 2>/dev/null && fail "the container did not $how within 90 s"
  wait "$NSPAWN_PID" 2>/dev/null || true
}

# login PORT: the admin logs in over TLS from inside the host, verifying the internal CA.
login() {
  inside sh -c "curl -sf --cacert /etc/warbler/tls/ca.crt --resolve \$(hostname):$1:127.0.0.1 https://\$(hostname):$1/v1/auth/login \
    -H 'content-type: application/json' -d \"{\\\"username\\\":\\\"admin\\\",\\\"password\\\":\\\"\$(head -1 /etc/warbler/secrets/admin-password)\\\"}\"" \
    | grep -q accessToken
}

# admin_token ROOT PORT: an access token for the admin, logged in from the client machine once and reused while
# the server accepts it (logins are rate-limited per account, and the checks ask often).
admin_token() {
  local root=$1 port=$2 token
  token=$(cat "$WORK/admin.token" 2>/dev/null || true)
  if [ -z "$token" ] || ! from_client curl -sf --cacert "$root/etc/warbler/tls/ca.crt" -H "Authorization: Bearer $token" \
      "https://$HOST_IP:$port/v1/me" >/dev/null; then
    token=$(from_client curl -sf --cacert "$root/etc/warbler/tls/ca.crt" "https://$HOST_IP:$port/v1/auth/login" -H 'content-type: application/json' \
      -d "{\"username\":\"admin\",\"password\":\"$(head -1 "$root/etc/warbler/secrets/admin-password")\"}" | sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p')
    echo "$token" >"$WORK/admin.token"
  fi
  echo "$token"
}

# admin_get ROOT PORT PATH: GET PATH as the admin from the client machine (ROOT is the host's root directory).
admin_get() {
  from_client curl -sf --cacert "$1/etc/warbler/tls/ca.crt" -H "Authorization: Bearer $(admin_token "$1" "$2")" "https://$HOST_IP:$2$3"
}

# stored_messages ROOT PORT: how many messages the server holds.
stored_messages() { admin_get "$1" "$2" /v1/admin/stats | sed -n 's/.*"messages":\([0-9]*\).*/\1/p'; }
