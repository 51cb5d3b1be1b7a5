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
