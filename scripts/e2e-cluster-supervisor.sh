#!/usr/bin/env bash
# End-to-end check of a cluster member WITHOUT systemd as PID 1: one fresh Debian 12 root under systemd-nspawn
# --as-pid2 (nspawn's stub init is PID 1, no systemd), in its own network namespace, founds a cluster
# (install --cluster-init); etcd, Patroni (PostgreSQL), HAProxy, the member agent and the IM server must run under
# the built-in supervisor (`warbler supervise --unit UNIT`), each as its own user; a client sends messages through
# HAProxy; etcd and PostgreSQL killed with -9 come back; uninstall stops everything.
#
#   sudo scripts/e2e-cluster-supervisor.sh dist/warbler-VERSION-linux-x86_64
#
# Needs the installer file from packaging/build.sh (it carries the cluster's components). Addresses exist only
# inside the namespaces e2e-lib.sh makes (10.231.7.0/24); nothing leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${1:?usage: e2e-cluster-supervisor.sh INSTALLER_FILE}")
"$BIN" payload verify >/dev/null 2>&1 || { echo "$BIN is not an installer file (packaging/build.sh makes one)" >&2; exit 2; }
source scripts/e2e-lib.sh

# pid_of PATH: the PID (as the container sees it) on the first line of a PID file in the container; empty if none.
pid_of() { inside head -1 "$1" 2>/dev/null || true; }   # /run is the container's own tmpfs: read it inside
# alive PID: the process runs in the container.
# (kill is the shell's own: minimal hosts have no /bin/kill.)
alive() { [ -n "$1" ] && inside sh -c "kill -0 $1" 2>/dev/null; }
# wait_for SECONDS COMMAND…: until COMMAND succeeds; fails after SECONDS.
wait_for() { local end=$((SECONDS + $1)); shift; while [ "$SECONDS" -lt "$end" ]; do "$@" && return 0; sleep 0.2; done; return 1; }
# running PATH: the PID file's process runs. replaced PATH OLD: it names a running process other than OLD.
running() { alive "$(pid_of "$1")"; }
replaced() { local new; new=$(pid_of "$1"); [ -n "$new" ] && [ "$new" != "$2" ] && alive "$new"; }
PG=/var/lib/warbler-postgresql/15/data/postmaster.pid

supervisor_cluster_check() {
  echo "==> cluster member without systemd as PID 1 (built-in supervisor)"
  mkdir "$WORK/ctr" && tar -C "$WORK/ctr" -xf "$CACHE/root.tar"
  cp "$BIN" "$WORK/ctr/root/warbler"
  # PID 1 is nspawn's stub init, PID 2 a sleep that keeps the container up; commands enter it with nsenter.
  systemd-nspawn --register=no --keep-unit --network-namespace-path="/run/netns/$NS_HOST" -D "$WORK/ctr" -M e2e-csup \
    --as-pid2 /bin/sleep infinity >>"$WORK/e2e-csup.console" 2>&1 &
  NSPAWN_PID=$!
  INIT=
  for _ in $(seq 300); do
    for p in $(pgrep -P "$NSPAWN_PID" 2>/dev/null || true) $(for q in $(pgrep -P "$NSPAWN_PID" 2>/dev/null || true); do pgrep -P "$q" || true; done); do
      [ "$(cat "/proc/$p/comm" 2>/dev/null || true)" = sleep ] && INIT=$p
    done
    [ -n "$INIT" ] && break
    sleep 0.1
  done
  [ -n "$INIT" ] || { cat "$WORK/e2e-csup.console" >&2; fail "the container did not start"; }
  [ "$(inside cat /proc/1/comm)" != systemd ] || fail "PID 1 is systemd in the container"

  local t0 i name user pid
  t0=$(date +%s)
  inside /root/warbler install --cluster-init --advertise-address "$HOST_IP" --yes >"$WORK/install.log" 2>&1 \
    || { cat "$WORK/install.log"; fail "install --cluster-init without systemd"; }
  grep -q "warbler supervise --unit UNIT" "$WORK/install.log" || { cat "$WORK/install.log"; fail "the install did not say the supervisor runs the components"; }
  ok "install --cluster-init under the built-in supervisor in $(( $(date +%s) - t0 )) s"

  for i in etcd:warbler-etcd patroni:warbler-postgres haproxy:warbler-haproxy cluster-agent:warbler-haproxy server:warbler; do
    name=${i%%:*} user=${i#*:}
    pid=$(pid_of "/run/warbler/$name.pid")
    alive "$pid" || fail "$name is not running (no live PID in /run/warbler/$name.pid)"
    [ "$(inside stat -c %U "/proc/$pid")" = "$user" ] || fail "$name runs as $(inside stat -c %U "/proc/$pid"), not $user"
    [ "$name" = server ] || alive "$(pid_of "/run/warbler/supervise-$name.pid")" || fail "$name's supervisor is not running"
    [ "$name" = server ] || [ -s "$WORK/ctr/var/log/warbler/$name.log" ] || fail "/var/log/warbler/$name.log is empty"
  done
  [ "$(inside stat -c '%U:%G %a' /var/log/warbler)" = "root:warbler 750" ] || fail "/var/log/warbler is not root:warbler 0750"
  wait_for 60 running "$PG" || fail "PostgreSQL is not running"
  ok "etcd, Patroni (PostgreSQL pid $(pid_of "$PG")), HAProxy, the agent and the server run, each as its own user"

  wait_for 60 inside /root/warbler status >"$WORK/status.log" 2>&1 || { cat "$WORK/status.log"; fail "warbler status is not healthy"; }
  for name in etcd patroni haproxy cluster-agent; do
    grep -Eq "^$name +builtin +active/running" "$WORK/status.log" || { cat "$WORK/status.log"; fail "status does not show $name as builtin active/running"; }
  done
  ok "warbler status: healthy, every component builtin active/running"

  CA="$WORK/ctr/etc/warbler/tls/ca.crt" ADMIN_PW="$WORK/ctr/etc/warbler/secrets/admin-password"
  send() { from_client "$BIN" bench --url "https://$HOST_IP:8443" --ca "$CA" --admin admin --admin-password-file "$ADMIN_PW" \
    --pairs 1 --messages 20 --window 1 --prefix "$1" >"$WORK/$1.log" 2>&1; }
  send first || { cat "$WORK/first.log"; fail "messages through HAProxy"; }
  ok "the admin logged in and users exchanged messages through HAProxy (https://$HOST_IP:8443)"

  # kill -9: etcd comes back through its supervisor; PostgreSQL through Patroni.
  pid=$(pid_of /run/warbler/etcd.pid)
  inside sh -c "kill -9 $pid"
  wait_for 30 replaced /run/warbler/etcd.pid "$pid" || fail "etcd was not restarted after kill -9"
  grep -q "exited with status 137; restarting in 2 s" "$WORK/ctr/var/log/warbler/etcd.log" || fail "etcd.log does not note the restart"
  pid=$(pid_of "$PG")
  inside sh -c "kill -9 $pid"
  wait_for 60 replaced "$PG" "$pid" || fail "PostgreSQL was not restarted after kill -9"
  wait_for 60 send after || { cat "$WORK/after.log"; fail "messages after the kills"; }
  ok "kill -9 of etcd (restarted by its supervisor) and of PostgreSQL (restarted by Patroni): messages flow again"

  # The upgrade receiver runs here too (root, under its supervisor), so `warbler upgrade` on a member without systemd
  # upgrades it as a cluster upgrade does any member: the file through the receiver, drained, switched, ready, back.
  # The receiver stops after the switch and its supervisor starts it again on the new release.
  local version next receiver
  receiver=$(pid_of /run/warbler/upgrade-receiver.pid)
  alive "$receiver" || fail "the upgrade receiver is not running (no live PID in /run/warbler/upgrade-receiver.pid)"
  [ "$(inside stat -c %U "/proc/$receiver")" = root ] || fail "the upgrade receiver runs as $(inside stat -c %U "/proc/$receiver"), not root"
  alive "$(pid_of /run/warbler/supervise-upgrade-receiver.pid)" || fail "the upgrade receiver's supervisor is not running"
  version=$("$BIN" version --json | sed -n 's/.*"version":"\([^"]*\)".*/\1/p')
  next=$(echo "$version" | awk -F. '{print $1"."$2"."$3+1}')
  restamp "$next" "$WORK/ctr/root/warbler-$next" || fail "re-stamping the installer file as $next"
  t0=$(date +%s)
  inside /opt/warbler/current/bin/warbler upgrade "/root/warbler-$next" >"$WORK/cluster-upgrade.log" 2>&1 \
    || { cat "$WORK/cluster-upgrade.log"; tail -30 "$WORK/ctr/var/log/warbler/upgrade-receiver.log"; fail "warbler upgrade (a cluster upgrade) to $next without systemd"; }
  inside /opt/warbler/current/bin/warbler version | grep -q "$next" || fail "the member does not run $next after the upgrade"
  wait_for 30 replaced /run/warbler/upgrade-receiver.pid "$receiver" || fail "the upgrade receiver was not started again after the switch"
  grep -q "release changed" "$WORK/ctr/var/log/warbler/upgrade-receiver.log" || fail "upgrade-receiver.log does not say the release changed"
  wait_for 60 inside /root/warbler status >"$WORK/status-upgraded.log" 2>&1 \
    || { cat "$WORK/status-upgraded.log"; tail -40 "$WORK/ctr/var/log/warbler/upgrade-receiver.log"; fail "warbler status is not healthy after the upgrade"; }
  wait_for 60 send upgraded || { cat "$WORK/upgraded.log"; fail "messages after the upgrade"; }
  ok "warbler upgrade $version → $next through the member's upgrade receiver in $(( $(date +%s) - t0 )) s; the receiver came back on $next; messages flow"

  local pids=""
  for name in etcd patroni haproxy cluster-agent server; do pids="$pids $(pid_of "/run/warbler/$name.pid")"; done
  pids="$pids $(pid_of /run/warbler/upgrade-receiver.pid)"
  for name in etcd patroni haproxy cluster-agent upgrade-receiver; do pids="$pids $(pid_of "/run/warbler/supervise-$name.pid")"; done
  pids="$pids $(pid_of /run/warbler/supervise.pid) $(pid_of "$PG")"
  inside /root/warbler uninstall --yes >"$WORK/uninstall.log" 2>&1 || { cat "$WORK/uninstall.log"; fail "uninstall"; }
  for pid in $pids; do ! alive "$pid" || fail "process $pid still runs after uninstall"; done
  ! inside sh -c 'ls /run/warbler/*.pid' >/dev/null 2>&1 && [ ! -e "$WORK/ctr/etc/warbler" ] && [ ! -e "$WORK/ctr/opt/warbler" ] || fail "files left after uninstall"
  ok "uninstall: every supervisor, component, PostgreSQL and the server stopped; files gone"
}

supervisor_cluster_check
echo "==> all passed"
