#!/usr/bin/env bash
# Builds Warbler from this checkout and runs it on this host, leaving a working chat server.
#
#   sudo ./install.sh                 # build (release), install, start, create the first admin
#   sudo ./install.sh --port 8443     # any later run converges: rebuilds, restarts, keeps data
#
# This is the interim single-host installer: it runs the server detached (no systemd needed, so it works in
# containers too) with a PID file and a log file. The self-contained installer file with systemd units comes
# with `warbler install` (docs/operations.md).
set -euo pipefail

PORT=8080
HOST=0.0.0.0
PREFIX=/usr/local
ETC=/etc/warbler
DATA=/var/lib/warbler
LOGDIR=/var/log/warbler
RUNDIR=/run/warbler
while [ $# -gt 0 ]; do
  case "$1" in
    --port) PORT="$2"; shift 2 ;;
    --host) HOST="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo ./install.sh): it writes $ETC, $DATA and $PREFIX/bin"
command -v swift >/dev/null || die "the Swift toolchain is not on PATH; install Swift 6 first"
cd "$(dirname "$0")"

# A taken port is the most common failure: say so before building anything.
if [ -f "$RUNDIR/server.pid" ] && kill -0 "$(cat "$RUNDIR/server.pid")" 2>/dev/null; then
  RUNNING=$(cat "$RUNDIR/server.pid")
else
  RUNNING=
  if (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null; then
    die "port $PORT is already in use by another program; free it or pass --port N"
  fi
fi

if ! pkg-config --exists libsystemd libarchive 2>/dev/null; then
  say "installing build dependencies (libsystemd-dev, libarchive-dev)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libsystemd-dev libarchive-dev pkg-config >/dev/null
fi

say "building warbler (release; the first build takes a while on 2 cores)"
swift build -c release --product warbler --scratch-path .build-release >/tmp/warbler-build.log 2>&1 \
  || { tail -30 /tmp/warbler-build.log >&2; die "build failed (full log: /tmp/warbler-build.log)"; }
install -m 0755 .build-release/release/warbler "$PREFIX/bin/warbler.new"
mv -f "$PREFIX/bin/warbler.new" "$PREFIX/bin/warbler"

id warbler >/dev/null 2>&1 || useradd --system --home-dir "$DATA" --shell /usr/sbin/nologin warbler
install -d -m 0755 "$ETC"
install -d -m 0700 -o warbler -g warbler "$ETC/secrets" "$DATA" "$LOGDIR"
install -d -m 0755 -o warbler -g warbler "$RUNDIR"

if [ ! -f "$ETC/warbler.yaml" ] || ! grep -q "port: $PORT\$" "$ETC/warbler.yaml"; then
  say "writing $ETC/warbler.yaml"
  cat > "$ETC/warbler.yaml.new" <<YAML
# Warbler server settings (docs/operations.md lists them all). Environment variables WARBLER_SECTION_KEY override.
server:
  host: $HOST
  port: $PORT
metrics:
  host: 127.0.0.1
  port: 9464
storage:
  driver: sqlite
  path: $DATA/warbler.db
auth:
  jwt_key_file: $ETC/secrets/jwt.key
data_dir: $DATA
YAML
  mv -f "$ETC/warbler.yaml.new" "$ETC/warbler.yaml"
fi

as_warbler() { setpriv --reuid=warbler --regid=warbler --init-groups "$@"; }

if [ -n "$RUNNING" ]; then
  say "stopping the running server (pid $RUNNING) to start the new build"
  kill -TERM "$RUNNING"
  for _ in $(seq 1 100); do kill -0 "$RUNNING" 2>/dev/null || break; sleep 0.1; done
fi

# The first admin, once.
if [ ! -f "$ETC/secrets/admin-password" ]; then
  umask 077
  head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$ETC/secrets/admin-password"
  chown warbler:warbler "$ETC/secrets/admin-password"
  as_warbler "$PREFIX/bin/warbler" user-add admin --admin --password-file "$ETC/secrets/admin-password" --config "$ETC/warbler.yaml"
fi

say "starting warbler server"
as_warbler nohup "$PREFIX/bin/warbler" server --config "$ETC/warbler.yaml" >>"$LOGDIR/server.log" 2>&1 &
echo $! > "$RUNDIR/server.pid"
for _ in $(seq 1 150); do
  if curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; then
    say "Warbler is up: http://$(hostname -f 2>/dev/null || hostname):$PORT (and http://127.0.0.1:$PORT)"
    echo "    admin user:      admin"
    echo "    admin password:  $ETC/secrets/admin-password (mode 0600)"
    echo "    log:             $LOGDIR/server.log   pid: $RUNDIR/server.pid"
    echo "    try it:          curl -s http://127.0.0.1:$PORT/v1/auth/login -d '{\"username\":\"admin\",\"password\":\"'\$(cat $ETC/secrets/admin-password)'\"}'"
    exit 0
  fi
  kill -0 "$(cat "$RUNDIR/server.pid")" 2>/dev/null || break
  sleep 0.2
done
tail -20 "$LOGDIR/server.log" >&2
die "the server did not become ready; see $LOGDIR/server.log"
