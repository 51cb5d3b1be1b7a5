#!/usr/bin/env bash
# End-to-end check of upgrades, rollbacks, backup and restore on a fresh Debian 12 host booted with systemd.
#
#   sudo scripts/e2e-upgrade.sh dist/warbler-VERSION-linux-x86_64
#
# From the one installer file it makes: the "previous" release (the same file re-stamped 0.0.9), a release that
# fails readiness (re-stamped 99.0.0 with a config template the server refuses), and a tampered copy. Then:
# install the previous release; put traffic through from another network namespace while upgrading to the file's
# own release, counting every message on both sides and measuring the gap; refuse the tampered file; watch the
# broken release roll itself back; roll back on request; back up, purge, reinstall, restore, and compare. The
# releases are signed (packaging/sign.sh's commands) and the install is given the key, so unsigned files are refused.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${1:?usage: e2e-upgrade.sh INSTALLER_FILE}")
"$BIN" payload verify >/dev/null 2>&1 || { echo "$BIN is not an installer file (packaging/build.sh makes one)" >&2; exit 2; }
source scripts/e2e-lib.sh
VERSION=$("$BIN" version --json | sed -n 's/.*"version":"\([^"]*\)".*/\1/p')

echo "==> upgrade, rollback, backup and restore ($VERSION, from $(basename "$BIN"))"
mkdir "$WORK/up" && tar -C "$WORK/up" -xf "$CACHE/root.tar"
restamp 0.0.9 "$WORK/up/root/warbler-0.0.9"
restamp 99.0.0 "$WORK/up/root/warbler-broken" "printf 'no_such_setting: 1\n' >> templates/warbler.yaml.mustache"
cp "$BIN" "$WORK/up/root/warbler"
cp "$BIN" "$WORK/up/root/unsigned"
# Releases are signed; the install is given the public key, and upgrades then insist on it.
PUB=$("$BIN" payload keygen --private-key "$WORK/release.key")
for f in warbler warbler-broken; do "$BIN" payload sign --file "$WORK/up/root/$f" --private-key "$WORK/release.key" >/dev/null; done
cp "$BIN" "$WORK/up/root/tampered"
size=$(stat -c %s "$WORK/up/root/tampered")
printf '\x00' | dd of="$WORK/up/root/tampered" bs=1 seek=$((size - 64 - 100)) conv=notrunc status=none
boot_systemd "$WORK/up" e2e-upgrade
ROOT="$WORK/up"

inside /root/warbler-0.0.9 install --yes --registration open --release-key "$PUB" >"$WORK/install.log" 2>&1 || { cat "$WORK/install.log"; fail "installing 0.0.9"; }
login 8443 || fail "log in to 0.0.9"
[ "$(readlink "$ROOT/opt/warbler/current")" = releases/0.0.9 ] || fail "0.0.9 is not current"
ok "installed the previous release, 0.0.9"

# Traffic from another machine through the whole upgrade.
from_client "$BIN" bench --url "https://$HOST_IP:8443" --ca "$ROOT/etc/warbler/tls/ca.crt" --pairs 2 --soak 30 --rate 10 \
  --prefix upgrade >"$WORK/soak.log" 2>&1 &
SOAK=$!; BACKGROUND_PIDS+=("$SOAK")
sleep 6

pid=$(inside systemctl show -p MainPID --value warbler-server)
! inside /opt/warbler/current/bin/warbler upgrade /root/tampered --yes >"$WORK/tampered.log" 2>&1 \
  && grep -q "corrupt or was modified" "$WORK/tampered.log" || { cat "$WORK/tampered.log"; fail "the tampered file was not refused"; }
[ "$(readlink "$ROOT/opt/warbler/current")" = releases/0.0.9 ] && [ "$(inside systemctl show -p MainPID --value warbler-server)" = "$pid" ] \
  && [ ! -e "$ROOT/opt/warbler/releases/$VERSION" ] || fail "the tampered file changed something"
ok "a tampered installer file is refused before anything changes (same release, same server pid)"
! inside /opt/warbler/current/bin/warbler upgrade /root/unsigned --yes >"$WORK/unsigned.log" 2>&1 \
  && grep -q "accepts only signed releases" "$WORK/unsigned.log" || { cat "$WORK/unsigned.log"; fail "an unsigned file was not refused"; }
[ "$(readlink "$ROOT/opt/warbler/current")" = releases/0.0.9 ] && [ ! -e "$ROOT/opt/warbler/releases/$VERSION" ] || fail "the unsigned file changed something"
ok "with a release key installed, an unsigned file is refused before anything changes"

start=$(date +%s%N)
inside /root/warbler upgrade --yes >"$WORK/upgrade.log" 2>&1 || { cat "$WORK/upgrade.log"; fail "upgrade to $VERSION"; }
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$(readlink "$ROOT/opt/warbler/current")" = "releases/$VERSION" ] && [ "$(readlink "$ROOT/opt/warbler/previous")" = releases/0.0.9 ] \
  || { cat "$WORK/upgrade.log"; fail "after the upgrade current/previous are wrong"; }
login 8443 || fail "log in after the upgrade"
backup=$(sed -n 's/^.*backup: \(\/.*\.tar\.gz\).*$/\1/p' "$WORK/upgrade.log" | head -1)
[ -n "$backup" ] && [ -f "$ROOT$backup" ] || { cat "$WORK/upgrade.log"; fail "no pre-upgrade backup"; }
ok "upgraded 0.0.9 → $VERSION in $((ms / 1000)).$(printf %03d $((ms % 1000))) s (backup $(basename "$backup"), self-check passed; previous → 0.0.9)"

wait "$SOAK" || { cat "$WORK/soak.log"; fail "messages were lost, failed or shown twice across the upgrade"; }
line=$(grep '^soak: pairs' "$WORK/soak.log")
gap=$(echo "$line" | sed -n 's/.*longest-ack-gap=\([0-9.]*\)s.*/\1/p')
awk "BEGIN { exit !($gap < 3.0) }" || {
  echo "$line"
  inside journalctl -u warbler-server -o short-precise --no-pager | grep -E "Stopping|Stopped|Starting|Started|draining|listening|storage closed|migrat" | tail -12
  fail "clients could not send for ${gap} s (more than 3 s)"
}
ok "through the upgrade: ${line#soak: }"
echo "$line" >"$WORK/../upgrade-gap.txt" 2>/dev/null || true

before=$(stored_messages "$ROOT" 8443)
! inside /opt/warbler/current/bin/warbler upgrade /root/warbler-broken --yes >"$WORK/broken.log" 2>&1 \
  && grep -q "rolled back" "$WORK/broken.log" || { cat "$WORK/broken.log"; fail "the broken release was not rolled back"; }
# Every message is still there (the rollback's self-check adds its own one, in its own group).
after=$(stored_messages "$ROOT" 8443)
[ "$(readlink "$ROOT/opt/warbler/current")" = "releases/$VERSION" ] && [ ! -e "$ROOT/opt/warbler/releases/99.0.0" ] && login 8443 \
  && [ "$after" -ge "$before" ] && [ "$after" -le $((before + 1)) ] || { cat "$WORK/broken.log"; fail "after the rollback the host is not as it was ($after messages, $before before)"; }
inside /opt/warbler/current/bin/warbler status >/dev/null || fail "status unhealthy after the automatic rollback"
ok "a release that fails readiness (99.0.0) rolled itself back: $VERSION current, its directory gone, healthy, all $before messages there"

inside /opt/warbler/current/bin/warbler rollback --yes >"$WORK/rollback.log" 2>&1 || { cat "$WORK/rollback.log"; fail "rollback"; }
after=$(stored_messages "$ROOT" 8443)
[ "$(readlink "$ROOT/opt/warbler/current")" = releases/0.0.9 ] && login 8443 && [ "$after" -ge "$before" ] \
  || { cat "$WORK/rollback.log"; fail "warbler rollback did not return to 0.0.9 with the data ($after messages, $before before)"; }
ok "warbler rollback: back on 0.0.9 with all $before messages"

# Backup, purge, reinstall, restore: every message and attachment comes back.
token=$(admin_token "$ROOT" 8443)
# json FIELD: reads one field of the JSON on stdin, or fails saying what came instead.
json() { python3 -c 'import json,sys; t=sys.stdin.read(); v=json.loads(t).get(sys.argv[1]) if t.startswith("{") else None; print(v) if v is not None else sys.exit("expected " + sys.argv[1] + " in: " + t[:300])' "$1"; }
conv=$(from_client curl -s --cacert "$ROOT/etc/warbler/tls/ca.crt" -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  "https://$HOST_IP:8443/v1/conversations/group" -d '{"name":"files","members":[]}' | json id) || fail "could not create a group"
head -c 300000 /dev/urandom >"$WORK/blob.bin"
att=$(from_client curl -s --cacert "$ROOT/etc/warbler/tls/ca.crt" -H "Authorization: Bearer $token" -H 'content-type: application/octet-stream' \
  --data-binary @"$WORK/blob.bin" "https://$HOST_IP:8443/v1/conversations/$conv/attachments?name=blob.bin" | json id) || fail "could not upload an attachment"
[ -n "$att" ] || fail "could not upload an attachment"
messages=$(stored_messages "$ROOT" 8443)
inside /opt/warbler/current/bin/warbler backup --output /root/full-backup.tar.gz >"$WORK/backup.log" 2>&1 || { cat "$WORK/backup.log"; fail "backup"; }
# The backup is authenticated with the install's backup key, which the purge removes: keep it, as docs/operations.md says.
inside cp /etc/warbler/secrets/backup-hmac.key /root/backup-hmac.key || fail "no backup key after a root backup"
inside /opt/warbler/current/bin/warbler uninstall --purge --yes >"$WORK/purge.log" 2>&1 || { cat "$WORK/purge.log"; fail "uninstall --purge"; }
[ ! -e "$ROOT/var/lib/warbler" ] || fail "purge left the data"
inside /root/warbler-0.0.9 install --yes >"$WORK/reinstall.log" 2>&1 || { cat "$WORK/reinstall.log"; fail "reinstall"; }
inside systemctl stop warbler-server
inside install -m 0600 -o root -g root /root/backup-hmac.key /etc/warbler/secrets/backup-hmac.key
inside /opt/warbler/current/bin/warbler restore /root/full-backup.tar.gz >"$WORK/restore.log" 2>&1 || { cat "$WORK/restore.log"; fail "restore"; }
inside systemctl start warbler-server
login 8443 || fail "log in after the restore"
[ "$(stored_messages "$ROOT" 8443)" = "$messages" ] || fail "after the restore: $(stored_messages "$ROOT" 8443) messages, before $messages"
token=$(admin_token "$ROOT" 8443)
from_client curl -sf --cacert "$ROOT/etc/warbler/tls/ca.crt" -H "Authorization: Bearer $token" "https://$HOST_IP:8443/v1/attachments/$att" -o "$WORK/blob.back"
cmp -s "$WORK/blob.bin" "$WORK/blob.back" || fail "the attachment did not come back byte for byte"
ok "backup → uninstall --purge → reinstall → restore: all $messages messages and the 300 KB attachment back, byte for byte; the old CA still trusted"
echo "==> all passed"
