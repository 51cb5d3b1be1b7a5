# Shared by the end-to-end scripts (source it): root, and the cached minimal Debian 12 root in $CACHE/root.tar
# (built once with mmdebstrap; the e2e hosts are fresh copies of it).
set -euo pipefail
CACHE=${WARBLER_E2E_CACHE:-/var/cache/warbler-e2e}
[ "$(id -u)" = 0 ] || { echo "run as root (systemd-nspawn)" >&2; exit 2; }
mkdir -p "$CACHE"
if [ ! -f "$CACHE/root.tar" ]; then
  echo "==> building the Debian 12 root (once)"
  mmdebstrap --variant=minbase --include=systemd,systemd-sysv,dbus,iproute2,curl,ca-certificates bookworm "$CACHE/root.tar" >"$CACHE/mmdebstrap.log" 2>&1
fi

# restamp VERSION OUTPUT [COMMAND]: OUTPUT is BIN with its payload re-packed as release VERSION, after COMMAND ran in
# the unpacked payload directory (BIN and WORK are the sourcing script's).
restamp() {
  local v=$1 out=$2 cmd=${3:-true} d="$WORK/stamp-$(basename "$2")"
  "$BIN" payload extract --file "$BIN" "$d" >/dev/null
  rm "$d/warbler-manifest.json"
  (cd "$d" && eval "$cmd")
  "$BIN" payload pack "$d" "$d.tar.gz" --release "$v" >/dev/null
  "$BIN" payload append --executable "$BIN" --payload "$d.tar.gz" --output "$out" --replace >/dev/null
}
