#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: starts a release `warbler server` on loopback (SQLite, then PostgreSQL in a
# throwaway cluster), runs `warbler bench` against each, prints the figures, and stops what it started.
#   bash scripts/bench.sh [--pairs N] [--messages N] [--window N] [--only sqlite|postgres]
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=50 MESSAGES=400 WINDOW=32 ONLY=
while [ $# -gt 0 ]; do
  case "$1" in
    --pairs) PAIRS=$2; shift 2 ;; --messages) MESSAGES=$2; shift 2 ;; --window) WINDOW=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;; *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
BIN=.build-release/release/warbler
[ -x "$BIN" ] || swift build -c release --product warbler --scratch-path .build-release
WORK=$(mktemp -d /tmp/warbler-bench.XXXXXX)
chmod 755 "$WORK"
: > "$WORK/empty.yaml"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -f "$WORK/pg/postmaster.pid" ]; then runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_server() { # $1 = label, rest = env assignments
  local label=$1; shift
  local port; port=$(free_port)
  env "$@" WARBLER_SERVER_HOST=127.0.0.1 WARBLER_SERVER_PORT="$port" WARBLER_METRICS_PORT=-1 \
    WARBLER_DATA_DIR="$WORK" WARBLER_AUTH_JWT_KEY_FILE="$WORK/jwt.key" WARBLER_LOG_LEVEL=error \
    WARBLER_AUTH_BCRYPT_COST=4 WARBLER_AUTH_LOGIN_PER_MINUTE_PER_ADDRESS=100000 WARBLER_AUTH_REGISTER_PER_HOUR_PER_ADDRESS=100000 WARBLER_SERVER_MAX_CONNECTIONS_PER_ADDRESS=0 WARBLER_LIMITS_SENDS_PER_SECOND=100000 WARBLER_LIMITS_SEND_BURST=100000 \
    "$BIN" server --config "$WORK/empty.yaml" >"$WORK/$label.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  echo "== $label: $PAIRS pairs x $MESSAGES messages, window $WINDOW ($(nproc) cores)"
  "$BIN" bench --url "http://127.0.0.1:$port" --pairs "$PAIRS" --messages "$MESSAGES" --window "$WINDOW" --prefix "b$label"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

if [ "$ONLY" != postgres ]; then
  run_server sqlite WARBLER_STORAGE_DRIVER=sqlite WARBLER_STORAGE_PATH="$WORK/warbler.db"
fi
if [ "$ONLY" != sqlite ]; then
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PGPORT=$(free_port)
  install -d -o postgres -g postgres "$WORK/pg"
  runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $WORK/pg -c fsync=on -c synchronous_commit=on" start >/dev/null
  runuser -u postgres -- "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" warbler
  run_server postgres WARBLER_STORAGE_DRIVER=postgres WARBLER_STORAGE_POSTGRES_HOST=127.0.0.1 \
    WARBLER_STORAGE_POSTGRES_PORT="$PGPORT" WARBLER_STORAGE_POSTGRES_USER=postgres WARBLER_STORAGE_POSTGRES_DATABASE=warbler
fi
