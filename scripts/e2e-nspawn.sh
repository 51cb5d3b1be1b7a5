#!/usr/bin/env bash
# End-to-end check of `warbler install` on fresh Debian 12 roots: one booted with systemd (systemd-nspawn -b), one
# without systemd as PID 1 (a container running a script), each with a private network.
#
#   sudo scripts/e2e-nspawn.sh [WARBLER_BINARY]     (default .build/debug/warbler)
#
# Needs mmdebstrap and systemd-container (apt-get install mmdebstrap systemd-container). The minimal Debian root is
# built once and cached in $WARBLER_E2E_CACHE (default /var/cache/warbler-e2e). A build from this checkout links the
# toolchain's Swift runtime by absolute path, so /opt/swift is bound read-only into the containers (the release file
# from packaging/build.sh will carry its runtime itself).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${1:-.build/debug/warbler}")
TEMPLATES=$(pwd)/templates
[ -x "$BIN" ] || { echo "no warbler binary at $BIN; build it or pass its path" >&2; exit 2; }
source scripts/e2e-lib.sh
# The installer file (packaging/build.sh) carries its runtime and templates; a plain build needs the toolchain's
# runtime and the checkout's templates bound in.
if "$BIN" payload verify >/dev/null 2>&1; then
  SELF=1; TPL=""
  binds=(--bind-ro="$BIN":/root/warbler)
  echo "==> testing the self-contained installer file $(basename "$BIN") ($(du -h "$BIN" | cut -f1))"
else
  SELF=0; TPL="--templates /root/templates"
  binds=(--bind-ro=/opt/swift --bind-ro="$BIN":/root/warbler --bind-ro="$TEMPLATES":/root/templates)
fi

echo "==> systemd host"
mkdir "$WORK/sd" && tar -C "$WORK/sd" -xf "$CACHE/root.tar"
boot_systemd "$WORK/sd" e2e-systemd "${binds[@]}"
if [ "$SELF" = 1 ]; then
  # A tampered installer file is refused before anything changes.
  cp "$BIN" "$WORK/sd/root/tampered"
  size=$(stat -c %s "$WORK/sd/root/tampered")
  printf '\x00' | dd of="$WORK/sd/root/tampered" bs=1 seek=$((size - 64 - 100)) conv=notrunc status=none
  ! inside /root/tampered install --yes >"$WORK/tampered.log" 2>&1 && grep -q "corrupt or was modified" "$WORK/tampered.log" \
    && [ ! -e "$WORK/sd/etc/warbler" ] && [ ! -e "$WORK/sd/opt/warbler" ] || { cat "$WORK/tampered.log"; fail "tampered file"; }
  rm "$WORK/sd/root/tampered"
  ok "a tampered installer file is refused before anything changes"
fi
# A taken port stops the install at preflight, with nothing changed.
inside sh -c 'cd /tmp && WARBLER_SERVER_PORT=8443 WARBLER_METRICS_PORT=-1 WARBLER_STORAGE_PATH=/tmp/squat.db WARBLER_DATA_DIR=/tmp WARBLER_AUTH_JWT_KEY_FILE=/tmp/squat.key /root/warbler server --config /dev/null >/tmp/squat.log 2>&1 & echo $! >/tmp/squat.pid'
for _ in $(seq 100); do inside sh -c 'grep -q listening /tmp/squat.log' 2>/dev/null && break; sleep 0.1; done
! inside /root/warbler install $TPL --yes >"$WORK/taken.log" 2>&1 && grep -q "8443" "$WORK/taken.log" \
  && [ ! -e "$WORK/sd/etc/warbler" ] && [ ! -e "$WORK/sd/opt/warbler" ] || { cat "$WORK/taken.log"; fail "taken port"; }
inside sh -c 'kill $(cat /tmp/squat.pid)'
for _ in $(seq 100); do inside sh -c 'kill -0 $(cat /tmp/squat.pid)' 2>/dev/null || break; sleep 0.1; done
ok "a taken port stops the install at preflight: $(grep -m1 -i 'port' "$WORK/taken.log" | sed 's/^ *//' | cut -c1-100)"
# A nearly full disk under /var/lib (a 16 MiB tmpfs over it, for this check only) stops preflight too.
inside mount -t tmpfs -o size=16m tmpfs /var/lib
! inside /root/warbler install $TPL --yes >"$WORK/disk.log" 2>&1 && grep -q "disk" "$WORK/disk.log" \
  && [ ! -e "$WORK/sd/etc/warbler" ] && [ ! -e "$WORK/sd/opt/warbler" ] || { inside umount /var/lib; cat "$WORK/disk.log"; fail "nearly full disk"; }
inside umount /var/lib
ok "a nearly full disk stops the install at preflight: $(grep -m1 'disk' "$WORK/disk.log" | sed 's/^ *//' | cut -c1-100)"
start=$(date +%s%N)
# A webhook on the client machine, for alertd's notifications (it records every request body). Started with `ip netns
# exec` itself, not through the from_client function: a function in the background is a subshell, and killing that
# PID at cleanup left the python server running.
ip netns exec "$NS_CLIENT" python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        open(sys.argv[1], "ab").write(body + b"\n"); self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("10.231.7.1", 8099), H).serve_forever()' "$WORK/webhook.log" &
BACKGROUND_PIDS+=($!)
inside /root/warbler install $TPL --yes --alert-webhook http://10.231.7.1:8099/hook >"$WORK/install1.log" 2>&1 || { cat "$WORK/install1.log"; fail "install"; }
login 8443 || fail "log in after install"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
ok "installed and logged in as admin over TLS (verified against the internal CA) in $((ms / 1000)).$(printf %03d $((ms % 1000)))s"
[ "$(inside stat -c '%U %a' /var/lib/warbler-install /var/lib/warbler-install/journal.json)" = "$(printf 'root 700\nroot 600')" ] \
  && [ ! -e "$WORK/sd/var/lib/warbler/install" ] || fail "root's install state is not in /var/lib/warbler-install (root 0700)"
[ "$(inside env PATH=/usr/local/bin:/usr/bin:/bin sh -c 'command -v warbler')" = /usr/local/bin/warbler ] && inside /usr/local/bin/warbler version >/dev/null || fail "warbler is not on PATH"
ok "root's install state is in /var/lib/warbler-install (root 0700); warbler is on PATH (/usr/local/bin/warbler)"
[ "$(inside systemctl is-active warbler-server)" = active ] && [ "$(inside systemctl is-enabled warbler-server)" = enabled ] || fail "unit not active and enabled"
score=$(inside systemd-analyze security warbler-server --no-pager | tail -1)
ok "warbler-server.service active, enabled; ${score#→ }"
for u in warbler-exporter warbler-alertd; do
  [ "$(inside systemctl is-active $u)" = active ] && [ "$(inside systemctl is-enabled $u)" = enabled ] || { inside journalctl -u $u --no-pager | tail; fail "$u not active and enabled"; }
  ok "$u.service active, enabled; $(inside systemd-analyze security $u --no-pager | tail -1 | sed 's/^→ //')"
done
[ "$(inside systemctl is-enabled warbler-backup.timer)" = enabled ] || fail "the backup timer is not enabled"
inside systemctl start warbler-backup.service || { inside journalctl -u warbler-backup --no-pager | tail; fail "the backup job failed in its sandbox"; }
ls "$WORK"/sd/var/lib/warbler/backups/warbler-*.tar.gz >/dev/null && [ -f "$WORK/sd/var/lib/warbler/backups/last-success.json" ] || fail "the backup job wrote no backup"
ok "warbler-backup.timer enabled; the job ran in its sandbox ($(inside systemd-analyze security warbler-backup.service --no-pager | tail -1 | sed 's/^→ //'))"
metrics=$(inside curl -sf http://127.0.0.1:9101/metrics) || fail "the exporter does not answer on 127.0.0.1:9101"
for m in '^node_load1 ' '^node_memory_MemAvailable_bytes ' 'node_filesystem_avail_bytes{' 'warbler_component_up{component="server"} 1' \
         'warbler_component_up{component="alertd"} 1' 'warbler_tls_certificate_expiry_seconds{' 'warbler_backup_present 1' 'warbler_sqlite_database_bytes'; do
  echo "$metrics" | grep -q -- "$m" || { echo "$metrics" | head -40; fail "the exporter's metrics lack $m"; }
done
ok "the exporter serves host, component, database, TLS and backup figures ($(echo "$metrics" | grep -vc '^#') series)"
inside /root/warbler alerts list >"$WORK/alerts.log" 2>&1 || { cat "$WORK/alerts.log"; fail "warbler alerts list"; }
inside /root/warbler alerts test webhook-1 --config /etc/warbler/alerts.yaml >"$WORK/alerts-test.log" 2>&1 || { cat "$WORK/alerts-test.log"; fail "warbler alerts test"; }
for _ in $(seq 50); do grep -q '"receiver":"webhook-1"' "$WORK/webhook.log" 2>/dev/null && break; sleep 0.1; done
grep -q '"version":"4"' "$WORK/webhook.log" && grep -q '"receiver":"webhook-1"' "$WORK/webhook.log" || { cat "$WORK/alerts-test.log"; fail "the webhook on the client machine got no Alertmanager-shaped notification"; }
ok "alertd answers (alerts list); a test notification reached the webhook on the client machine in Alertmanager's JSON"
pid=$(inside systemctl show -p MainPID --value warbler-server)
inside /root/warbler install $TPL --yes >"$WORK/install2.log" 2>&1 || fail "re-run"
grep -q "nothing to change" "$WORK/install2.log" && [ "$(inside systemctl show -p MainPID --value warbler-server)" = "$pid" ] \
  || { cat "$WORK/install2.log"; fail "re-run changed something"; }
ok "re-run: nothing to change, server not restarted"
inside /root/warbler install $TPL --yes --port 9443 >"$WORK/install3.log" 2>&1 || { cat "$WORK/install3.log"; fail "port change"; }
steps=$(sed -n '/^Plan:/,/^Applying:/p' "$WORK/install3.log" | grep -c '^  [0-9]')
[ "$steps" = 5 ] && login 9443 || { cat "$WORK/install3.log"; fail "port change: expected 5 steps (config, unit, daemon-reload, restart the server and the exporter)"; }
ok "--port 9443: rewrote warbler.yaml and the unit, reloaded, restarted the server and the exporter (which reads warbler.yaml); login on 9443"
pid=$(inside systemctl show -p MainPID --value warbler-server)
inside sh -c "kill -9 $pid"
for _ in $(seq 100); do n=$(inside systemctl show -p MainPID --value warbler-server); [ "$n" != "$pid" ] && [ "$n" != 0 ] && login 9443 && break; sleep 0.1; done
[ "$(inside systemctl show -p NRestarts --value warbler-server)" -ge 1 ] || fail "systemd did not restart the killed server"
ok "kill -9: systemd restarted the server and it serves again"
# From outside the host: the SDK (warbler bench) logs in, and users exchange messages over wss, trusting the CA.
# Registration is closed by default (admin-created accounts): bench creates its accounts as the first admin.
from_client "$BIN" bench --url "https://$HOST_IP:9443" --ca "$WORK/sd/etc/warbler/tls/ca.crt" --pairs 2 --messages 100 --window 8 \
  --admin admin --admin-password-file "$WORK/sd/etc/warbler/secrets/admin-password" \
  --prefix e2e >"$WORK/bench.log" 2>&1 || { cat "$WORK/bench.log"; fail "SDK exchange from outside the host"; }
grep -q "sent=200 acked=200 delivered=200 errors=0" "$WORK/bench.log" || { cat "$WORK/bench.log"; fail "SDK exchange lost messages"; }
ok "from another network namespace the SDK logged in 4 users and exchanged 200 messages over wss (all acked and delivered)"
from_client curl -sf --cacert "$WORK/sd/etc/warbler/tls/ca.crt" "https://$HOST_IP:9443/" | grep '<title>Warbler</title>' >/dev/null \
  || fail "the installed server does not serve the web client at /"
from_client curl -sfI --cacert "$WORK/sd/etc/warbler/tls/ca.crt" "https://$HOST_IP:9443/admin" | grep -i "^content-security-policy: default-src 'self'" >/dev/null \
  || fail "the installed server does not serve the admin console at /admin with its Content-Security-Policy"
ok "the installed server serves the web client at / and the admin console at /admin, with the CSP"
before=$(stored_messages "$WORK/sd" 9443)
[ "${before:-0}" -ge 200 ] || fail "the server reports $before stored messages, expected at least 200"
shut_down reboot
boot_systemd "$WORK/sd" e2e-systemd "${binds[@]}"
for _ in $(seq 100); do login 9443 && break; sleep 0.1; done
login 9443 && [ "$(inside systemctl is-active warbler-server)" = active ] || fail "after a reboot the server is not back"
after=$(stored_messages "$WORK/sd" 9443)
[ "$after" = "$before" ] || fail "after the reboot the server has $after messages, before it had $before"
ok "reboot: the host came back with the server active, the admin able to log in, and all $after messages stored"
inside /root/warbler status >"$WORK/status.log" 2>&1 || { cat "$WORK/status.log"; fail "status says unhealthy"; }
grep -q "active/running" "$WORK/status.log" && grep -q "certificate expires in" "$WORK/status.log" \
  && grep -q "^exporter .*active/running" "$WORK/status.log" && grep -q "^alertd .*active/running" "$WORK/status.log" \
  && grep -q "^alerts: \|^alerts firing" "$WORK/status.log" || { cat "$WORK/status.log"; fail "status table"; }
inside /root/warbler status --json | grep -q '"healthy" : true' || fail "status --json"
ok "status: healthy; server, exporter and alertd active/running and ready; certificate days and alerts shown (table and --json)"
# Certificate renewal: the daily timer is on; the job runs clean in its sandbox; forced, it writes a new certificate
# that the running server serves, without a restart, to a client on another machine.
[ "$(inside systemctl is-enabled warbler-cert-renew.timer)" = enabled ] && [ "$(inside systemctl is-active warbler-cert-renew.timer)" = active ] \
  || fail "the renewal timer is not enabled and active"
inside systemctl start warbler-cert-renew.service || { inside journalctl -u warbler-cert-renew --no-pager | tail; fail "the renewal job failed"; }
inside journalctl -u warbler-cert-renew --no-pager | grep -q "Nothing to do" || { inside journalctl -u warbler-cert-renew --no-pager | tail; fail "renewal job output"; }
renew_score=$(inside systemd-analyze security warbler-cert-renew.service --no-pager | tail -1)
served_serial() { from_client sh -c "openssl s_client -connect $HOST_IP:9443 </dev/null 2>/dev/null | openssl x509 -noout -serial"; }
old_serial=$(served_serial)
pid=$(inside systemctl show -p MainPID --value warbler-server)
mkdir -p "$WORK/sd/etc/systemd/system/warbler-cert-renew.service.d"
printf '[Service]\nExecStart=\nExecStart=/opt/warbler/current/bin/warbler certs renew --force\n' >"$WORK/sd/etc/systemd/system/warbler-cert-renew.service.d/force.conf"
inside systemctl daemon-reload
inside systemctl start warbler-cert-renew.service || { inside journalctl -u warbler-cert-renew --no-pager | tail; fail "the forced renewal failed in its sandbox"; }
rm -r "$WORK/sd/etc/systemd/system/warbler-cert-renew.service.d"
inside systemctl daemon-reload
new_serial=$(openssl x509 -noout -serial -in "$WORK/sd/etc/warbler/tls/server.crt")
[ "$new_serial" != "$old_serial" ] || fail "no new certificate written"
[ "$(inside stat -c '%U %a' /etc/warbler/tls/server.key)" = "warbler 600" ] || fail "the renewed key is not warbler's, mode 0600"
waited=0
until [ "$(served_serial)" = "$new_serial" ]; do
  waited=$((waited + 1)); [ "$waited" -le 45 ] || fail "the server still serves $old_serial 45 s after renewal"; sleep 1
done
[ "$(inside systemctl show -p MainPID --value warbler-server)" = "$pid" ] || fail "the server restarted for the renewal"
login 9443 || fail "log in over the renewed certificate"
ok "renewal: timer enabled; forced renewal in the job's sandbox (${renew_score#→ }) served within ${waited} s, same server pid, login verified against the CA"
inside /root/warbler uninstall --yes >"$WORK/uninstall.log" 2>&1 || { cat "$WORK/uninstall.log"; fail "uninstall"; }
[ ! -e "$WORK/sd/etc/warbler" ] && [ ! -e "$WORK/sd/opt/warbler" ] && [ ! -e "$WORK/sd/etc/systemd/system/warbler-server.service" ] \
  && [ ! -e "$WORK/sd/etc/systemd/system/warbler-cert-renew.timer" ] \
  && [ -f "$WORK/sd/var/lib/warbler/warbler.db" ] && [ ! -e "$WORK/sd/var/lib/warbler-install" ] && [ ! -e "$WORK/sd/var/lib/warbler/install" ] \
  && [ ! -L "$WORK/sd/usr/local/bin/warbler" ] || { cat "$WORK/uninstall.log"; fail "uninstall left the wrong files"; }
[ "$(inside systemctl is-active warbler-server || true)" != active ] || fail "the server still runs after uninstall"
! inside /root/warbler status >/dev/null 2>&1 || fail "status exits 0 with nothing installed"
ok "uninstall: unit stopped and removed, releases, config, root's install state and /usr/local/bin/warbler gone, /var/lib/warbler kept; status now exits 1"
shut_down poweroff
NSPAWN_PID=

echo "==> host without systemd as PID 1 (built-in supervisor)"
mkdir "$WORK/ctr" && tar -C "$WORK/ctr" -xf "$CACHE/root.tar"
cat >"$WORK/ctr/root/check.sh" <<'SCRIPT'
#!/bin/sh
set -e
login() { curl -sf --cacert /etc/warbler/tls/ca.crt --resolve "$(hostname):$1:127.0.0.1" "https://$(hostname):$1/v1/auth/login" \
  -H 'content-type: application/json' -d "{\"username\":\"admin\",\"password\":\"$(head -1 /etc/warbler/secrets/admin-password)\"}" | grep -q accessToken; }
/root/warbler install --templates /root/templates --yes >/root/i1.log 2>&1 || { cat /root/i1.log; exit 1; }
grep -q "built-in supervisor" /root/i1.log && login 8443 && echo "  ok: installed under the built-in supervisor; logged in"
/root/warbler install --templates /root/templates --yes >/root/i2.log 2>&1
grep -q "nothing to change" /root/i2.log && echo "  ok: re-run: nothing to change"
/root/warbler install --templates /root/templates --yes --port 9443 >/root/i3.log 2>&1
login 9443 && echo "  ok: --port 9443: restarted on the new port (pid $(cat /run/warbler/server.pid), log /var/log/warbler/server.log)"
pid=$(cat /run/warbler/server.pid)
kill -9 "$pid"
for _ in $(seq 100); do n=$(cat /run/warbler/server.pid 2>/dev/null || true); [ -n "$n" ] && [ "$n" != "$pid" ] && login 9443 && break; sleep 0.1; done
login 9443 && grep -q "exited with status 137; restarting in 1 s" /var/log/warbler/server.log \
  && [ "$(stat -c '%U:%G %a' /var/log/warbler)" = "root:warbler 750" ] \
  && echo "  ok: kill -9: the supervisor (pid $(cat /run/warbler/supervise.pid)) restarted the server after 1 s; /var/log/warbler is root:warbler 0750"
/root/warbler status >/root/status.log 2>&1 && grep -q "builtin  active/running" /root/status.log && echo "  ok: status: healthy under the supervisor"
sup=$(cat /run/warbler/supervise.pid); srv=$(cat /run/warbler/server.pid)
/root/warbler uninstall --yes >/root/u.log 2>&1
! kill -0 "$sup" 2>/dev/null && ! kill -0 "$srv" 2>/dev/null && [ ! -e /etc/warbler ] && [ ! -e /opt/warbler ] && [ ! -e /run/warbler ] \
  && [ -f /var/lib/warbler/warbler.db ] && echo "  ok: uninstall: supervisor and server stopped, files gone, data kept"
/root/warbler uninstall --purge </dev/null >/root/p.log 2>&1 || grep -q "add --yes" /root/p.log && echo "  ok: --purge without a terminal refuses without --yes"
/root/warbler uninstall --purge --yes >/root/p2.log 2>&1 && [ ! -e /var/lib/warbler ] && ! id warbler >/dev/null 2>&1 && echo "  ok: --purge --yes: data and user gone"
SCRIPT
sed -i "s|--templates /root/templates|$TPL|g" "$WORK/ctr/root/check.sh"
chmod +x "$WORK/ctr/root/check.sh"
out=$(systemd-nspawn --register=no --keep-unit --private-network -D "$WORK/ctr" -M e2e-builtin --as-pid2 "${binds[@]}" /root/check.sh 2>&1 || true)
echo "$out" | grep '^  ok:' || true
[ "$(echo "$out" | grep -c '^  ok:')" = 8 ] || { echo "$out" >&2; fail "built-in supervisor run"; }
echo "==> all passed"
