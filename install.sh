#!/usr/bin/env bash
# Installs Warbler on this host and leaves a working chat server.
#
#   ./install.sh [warbler install options]      as root (or sudo ./install.sh), e.g. --port 8443 --domain chat.example.com
#
# With the Swift toolchain here, it installs the build dependencies, builds the self-contained installer file
# with packaging/build.sh (release; the first build takes a long while on 2 cores, later ones are incremental)
# and runs its `install`. Without a toolchain, or given a prebuilt installer (WARBLER_INSTALLER=FILE or
# --installer FILE), it just runs that file. Re-running is safe: the install converges.
set -euo pipefail
cd "$(dirname "$0")"
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run it as root (./install.sh as root, or sudo ./install.sh): the install writes /etc, /opt, /var/lib and systemd units"

INSTALLER=${WARBLER_INSTALLER:-}
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --installer) INSTALLER=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

if [ -z "$INSTALLER" ]; then
  if command -v swift >/dev/null; then
    missing=()
    for p in libsystemd-dev libarchive-dev pkg-config patchelf; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then
      echo "==> installing build dependencies: ${missing[*]}"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    echo "==> building the installer file (packaging/build.sh; the first release build takes about 11 minutes on 2 cores)"
    # A fresh name (mktemp: O_EXCL, 0600): as root, a fixed name in /tmp would follow a link someone planted there.
    log=$(mktemp /tmp/warbler-build.XXXXXXXX.log) || die "cannot create a build log in /tmp"
    bash packaging/build.sh >"$log" 2>&1 &
    build=$!
    # Progress every 15 s: the build's last step ("[812/1475] Compiling …") or stage ("==> …"), never 10 silent minutes.
    shown=""
    while kill -0 "$build" 2>/dev/null; do
      sleep 15
      step=$(grep -aE '^(==>|\[[0-9]+/[0-9]+\])' "$log" | tail -n 1 | cut -c1-110 || true)
      if [ -n "$step" ] && [ "$step" != "$shown" ]; then echo "    $step"; shown=$step; fi
    done
    wait "$build" || { tail -30 "$log" >&2; die "build failed; full log in $log"; }
    rm -f "$log"
  fi
  INSTALLER=$(ls dist/warbler-*-linux-x86_64 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$INSTALLER" ] || die "no installer file: install the Swift toolchain to build one, or pass --installer FILE"
fi
[ -x "$INSTALLER" ] || die "$INSTALLER is not an executable installer file"
echo "==> running $INSTALLER install ${args[*]:-}"
exec "$INSTALLER" install --yes "${args[@]}"
