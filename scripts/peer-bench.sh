#!/usr/bin/env bash
# Warbler beside ejabberd (Debian's package), one load driver for all (scripts/peer_bench.py), rounds interleaved.
# Reproduces the side-by-side table in docs/benchmarks.md. Everything listens on 127.0.0.1 only and is stopped by
# PID at the end; ejabberd's packaged service is never started (masked before install on a systemd host).
#
#   bash scripts/peer-bench.sh                      # 3 rounds × shapes T L R × Warbler, ejabberd, ejabberd+MAM
#   bash scripts/peer-bench.sh --rounds 5 --shapes "L R" --servers warbler \
#       --warbler "before=/tmp/old/warbler" --warbler "after=.build/release/warbler"
#   bash scripts/peer-bench.sh --warbler "mb256=BIN,WARBLER_STORAGE_MAX_BATCH=256" \
#       --warbler "mb1024=BIN,WARBLER_STORAGE_MAX_BATCH=1024" --servers warbler --shapes T
#   bash scripts/peer-bench.sh --smoke [--bin PATH]  # CI: a few seconds against Warbler, correctness only
#   bash scripts/peer-bench.sh --idle 5000 --warbler "before=BIN" --warbler "after=BIN"   # RSS per idle socket
#   bash scripts/peer-bench.sh --idle 15000 --idle-sources 4 --idle-shapes "T R C" --warbler "after=BIN"
#       # the same, then the shapes alone and again beside the 15,000 idle sockets (C: 1,000 sockets chatting)
#   bash scripts/peer-bench.sh --idle 5000 --tls --warbler "after=BIN"   # the same over TLS (wss://, the server's own)
#   bash scripts/peer-bench.sh --db postgres        # Warbler and ejabberd's archive on one throwaway PostgreSQL
#
# Options: --rounds N, --shapes "T L R", --procs N (driver processes), --warbler "LABEL=BIN[,KEY=VALUE...]"
# (repeatable; default one release build), --servers "warbler ejabberd ejabberd-mam" (which to run),
# --results FILE (keep the JSON lines there), --count-syscalls (perf stat the server: writes, futex calls and
# context switches per message, which do not depend on how loaded the machine is), --db sqlite|postgres (where
# Warbler and ejabberd-mam store messages: a SQLite file each, or a fresh database each in one PostgreSQL cluster
# this script starts on 127.0.0.1 with fsync and synchronous_commit on; ejabberd without the archive stores nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3 SHAPES="T L R" PROCS=2 COUNT= SMOKE=0 ONLY="warbler ejabberd ejabberd-mam" RESULTS= BIN= IDLE= IDLE_SOURCES=1 IDLE_SHAPES=
DB=sqlite TLS=0
WARBLERS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;; --shapes) SHAPES=$2; shift 2 ;; --procs) PROCS=$2; shift 2 ;;
    --warbler) WARBLERS+=("$2"); shift 2 ;; --bin) BIN=$2; shift 2 ;;
    --servers) ONLY=$2; shift 2 ;; --count-syscalls) COUNT=--count-syscalls; shift ;; --results) RESULTS=$2; shift 2 ;;
    --smoke) SMOKE=1; ONLY=warbler; ROUNDS=1; shift ;;
    --idle) IDLE=$2; ONLY=warbler; shift 2 ;;
    --idle-sources) IDLE_SOURCES=$2; shift 2 ;; --idle-shapes) IDLE_SHAPES=$2; shift 2 ;;
    --db) DB=$2; shift 2 ;;
    --tls) TLS=1; shift ;;
    *) echo "unknown option $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done
case "$DB" in sqlite|postgres) ;; *) echo "--db is sqlite or postgres, not '$DB'" >&2; exit 2 ;; esac
[ "$TLS" = 0 ] || { [ -n "$IDLE" ] && [ -z "$IDLE_SHAPES" ]; } || { echo "--tls measures idle sockets only (--idle N, without --idle-shapes)" >&2; exit 2; }
DRIVER="python3 scripts/peer_bench.py"
has() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
if [ ${#WARBLERS[@]} -eq 0 ] && has warbler; then
  if [ -z "$BIN" ]; then
    for b in .build/release/warbler .build-release/release/warbler; do [ -x "$b" ] && { BIN=$b; break; }; done
  fi
  if [ -z "$BIN" ]; then
    swift build -c release --product warbler >/dev/null
    BIN=.build/release/warbler
  fi
  WARBLERS=("warbler=$BIN")
fi

WORK=$(mktemp -d /var/tmp/warbler-peer-bench.XXXXXX)
chmod 755 "$WORK"
: > "$WORK/empty.yaml"
RESULTS=${RESULTS:-$WORK/results.jsonl}
: > "$RESULTS"
SERVER_PID= SERVER_CPU_PID=
PGBIN= PGPORT=
cleanup() {
  stop_server
  if [ -f "$WORK/pg/postmaster.pid" ]; then runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -m fast -w stop >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # $1 = port, $2 = what
  for _ in $(seq 1 300); do
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$1" 2>/dev/null && return 0
    [ -n "$SERVER_PID" ] && ! kill -0 "$SERVER_PID" 2>/dev/null && break
    sleep 0.1
  done
  echo "$2 did not start listening on 127.0.0.1:$1" >&2; return 1
}
stop_server() {
  if [ -n "$SERVER_CPU_PID" ] && [ "$SERVER_CPU_PID" != "$SERVER_PID" ]; then kill -TERM "$SERVER_CPU_PID" 2>/dev/null || true; fi
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID= SERVER_CPU_PID=
}

TLS_ENV=() TLS_ARGS=() SCHEME=http
if [ "$TLS" = 1 ]; then
  # The server terminates TLS itself, as a single-node install does (server.tls_cert): a self-signed certificate
  # for 127.0.0.1, which the driver trusts as its CA.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$WORK/tls.key" -out "$WORK/tls.crt" 2>/dev/null
  TLS_ENV=(WARBLER_SERVER_TLS_CERT="$WORK/tls.crt" WARBLER_SERVER_TLS_KEY="$WORK/tls.key")
  TLS_ARGS=(--ca "$WORK/tls.crt") SCHEME=https
fi
# ---------------------------------------------------------------------------------------------------- PostgreSQL
# One cluster for the sitting, on 127.0.0.1 and a socket in $WORK only, durable as the product runs it (fsync and
# synchronous_commit on); each server run gets a fresh database so that no run reads another's rows.
start_postgres() {
  ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >/dev/null
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  PGPORT=$(free_port)
  install -d -o postgres -g postgres "$WORK/pg"
  runuser -u postgres -- "$PGBIN/initdb" -D "$WORK/pg" -A trust -U postgres >/dev/null
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w -o "-c listen_addresses=127.0.0.1 \
    -p $PGPORT -k $WORK/pg -c fsync=on -c synchronous_commit=on -c max_connections=200 -c shared_buffers=256MB" \
    start >/dev/null
}
fresh_database() { # $1 = name
  runuser -u postgres -- "$PGBIN/dropdb" --if-exists -h 127.0.0.1 -p "$PGPORT" "$1"
  runuser -u postgres -- "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" "$1"
}

# ---------------------------------------------------------------------------------------------------- ejabberd
install_ejabberd() {
  if ls -d /usr/lib/*/ejabberd-* >/dev/null 2>&1; then
    dpkg -s erlang-p1-sqlite3 erlang-p1-pgsql >/dev/null 2>&1 \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y erlang-p1-sqlite3 erlang-p1-pgsql >/dev/null
    return
  fi
  # The package's own service would listen on every address: never let it start.
  if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then systemctl mask ejabberd.service >/dev/null 2>&1 || true; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y ejabberd erlang-p1-sqlite3 erlang-p1-pgsql >/dev/null
  if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
    systemctl stop ejabberd.service >/dev/null 2>&1 || true
    systemctl disable ejabberd.service >/dev/null 2>&1 || true
  fi
}

# $1 = label, $2 = 1 for the message archive (mod_mam on SQLite, or on PostgreSQL with --db postgres)
start_ejabberd() {
  local label=$1 mam=$2 dir="$WORK/$1" port; port=$(free_port)
  rm -rf "$dir"; mkdir -p "$dir/spool"
  {
    cat <<EOF
hosts: [localhost]
loglevel: warning
log_rotate_count: 0
auth_method: internal
# Benchmark accounts register in-band from loopback, many per second.
registration_timeout: infinity
listen:
  - port: $port
    ip: "127.0.0.1"
    module: ejabberd_c2s
    backlog: 1024
    max_stanza_size: 262144
    # No traffic shaper: the benchmark lifts the per-connection limits, as it does Warbler's send limit.
    shaper: none
    access: all
access_rules:
  register: {allow: all}
shaper_rules:
  max_user_sessions: 10
modules:
  mod_register: {ip_access: all, access: register}
  mod_stream_mgmt: {}
EOF
    if [ "$mam" = 1 ]; then
      echo "  mod_mam: {db_type: sql, default: always}"
      if [ "$DB" = postgres ]; then
        # ejabberd's default pool: 10 connections, so up to 10 archive commits overlap.
        cat <<EOF
sql_type: pgsql
sql_server: "127.0.0.1"
sql_port: $PGPORT
sql_database: "ejabberd_mam"
sql_username: "postgres"
sql_password: ""
EOF
      else
        cat <<EOF
sql_type: sqlite
sql_database: "$dir/ejabberd.db"
EOF
      fi
    fi
  } > "$dir/ejabberd.yml"
  if [ "$mam" = 1 ] && [ "$DB" = postgres ]; then
    fresh_database ejabberd_mam
    runuser -u postgres -- "$PGBIN/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -d ejabberd_mam \
      -f /usr/share/ejabberd/sql/pg.sql >/dev/null
  elif [ "$mam" = 1 ]; then
    # ejabberd creates its tables in an empty file and leaves SQLite's default rollback journal; put the file in
    # WAL mode first (it persists in the file) so that both servers commit the same way: WAL, synchronous=FULL.
    python3 -c 'import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.execute("PRAGMA journal_mode=WAL"); c.execute("CREATE TABLE t (x)")
c.execute("DROP TABLE t"); c.commit(); c.close()' "$dir/ejabberd.db"
  fi
  chown -R ejabberd: "$dir"
  local lib; lib=$(dirname "$(ls -d /usr/lib/*/ejabberd-* | head -1)")
  # Run the VM directly, without Erlang distribution: no epmd and no distribution port on any address.
  (cd "$dir" && exec runuser -u ejabberd -- env ERL_LIBS="$lib" EJABBERD_CONFIG_PATH="$dir/ejabberd.yml" \
    EJABBERD_LOG_PATH="$dir/ejabberd.log" HOME="$dir" \
    erl -noinput +K true +P 250000 -mnesia dir "\"$dir/spool\"" -s ejabberd >"$dir/console.log" 2>&1) &
  SERVER_PID=$!
  wait_port "$port" "$label" || { tail -20 "$dir/console.log" "$dir/ejabberd.log" >&2 || true; return 1; }
  SERVER_CPU_PID=$(pgrep -P "$SERVER_PID" | head -1)  # beam.smp, the child runuser started
  [ -n "$SERVER_CPU_PID" ] || SERVER_CPU_PID=$SERVER_PID
  TARGET=(--proto xmpp --addr "127.0.0.1:$port" --domain localhost)
}

# ---------------------------------------------------------------------------------------------------- Warbler
# $1 = "LABEL=BIN[,KEY=VALUE...]"
start_warbler() {
  local spec=$1 label=${1%%=*} rest=${1#*=} bin env=() port; port=$(free_port)
  IFS=, read -r -a parts <<<"$rest"; bin=${parts[0]}; env=("${parts[@]:1}")
  local dir="$WORK/$label"; rm -rf "$dir"; mkdir -p "$dir"
  local storage=(WARBLER_STORAGE_DRIVER=sqlite WARBLER_STORAGE_PATH="$dir/warbler.db")
  if [ "$DB" = postgres ]; then
    fresh_database warbler_bench
    storage=(WARBLER_STORAGE_DRIVER=postgres WARBLER_STORAGE_POSTGRES_HOST=127.0.0.1 WARBLER_STORAGE_POSTGRES_PORT="$PGPORT"
      WARBLER_STORAGE_POSTGRES_USER=postgres WARBLER_STORAGE_POSTGRES_DATABASE=warbler_bench)
  fi
  env WARBLER_SERVER_HOST=127.0.0.1 WARBLER_SERVER_PORT="$port" WARBLER_METRICS_PORT=-1 \
    WARBLER_DATA_DIR="$dir" WARBLER_AUTH_JWT_KEY_FILE="$dir/jwt.key" WARBLER_LOG_LEVEL=error \
    "${storage[@]}" WARBLER_AUTH_BCRYPT_COST=4 WARBLER_AUTH_LOGIN_PER_MINUTE_PER_ADDRESS=100000 \
    WARBLER_AUTH_REGISTER_PER_HOUR_PER_ADDRESS=100000 WARBLER_SERVER_MAX_CONNECTIONS_PER_ADDRESS=0 \
    WARBLER_LIMITS_SENDS_PER_SECOND=100000 WARBLER_LIMITS_SEND_BURST=100000 "${TLS_ENV[@]}" "${env[@]}" \
    "$bin" server --config "$WORK/empty.yaml" >"$dir/server.log" 2>&1 &
  SERVER_PID=$! SERVER_CPU_PID=$!
  wait_port "$port" "$label" || { tail -20 "$dir/server.log" >&2; return 1; }
  for _ in $(seq 1 100); do curl -fsk "$SCHEME://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  TARGET=(--proto warbler --url "$SCHEME://127.0.0.1:$port")
}

shape_args() { # smaller shapes for the CI smoke: a few seconds, correctness only
  [ "$SMOKE" = 1 ] || return 0
  case "$1" in
    T) echo --pairs 4 --window 8 --messages 200 ;; L) echo --pairs 2 --messages 100 ;; R) echo --pairs 4 --rate 20 --messages 20 ;;
  esac
}

run_shape() { # $1 = shape, $2 = label
  # shellcheck disable=SC2046
  if ! $DRIVER run "${TARGET[@]}" --shape "$1" --procs "$PROCS" --label "$2" --pid "$SERVER_CPU_PID" $COUNT \
      $(shape_args "$1") | tee -a "$RESULTS"; then
    FAILED=1
    [ "$SMOKE" = 1 ] && { echo "peer-bench smoke: $2 $1 FAILED" >&2; exit 1; }
  fi
  return 0
}

SERVERS=()
if has warbler; then for w in "${WARBLERS[@]}"; do SERVERS+=("warbler:$w"); done; fi
if has ejabberd || has ejabberd-mam; then install_ejabberd; fi
if [ "$DB" = postgres ]; then start_postgres; fi
if has ejabberd; then SERVERS+=("ejabberd:ejabberd"); fi
if has ejabberd-mam; then SERVERS+=("ejabberd-mam:ejabberd-mam"); fi
[ ${#SERVERS[@]} -gt 0 ] || { echo "--servers names none of warbler, ejabberd, ejabberd-mam" >&2; exit 2; }

FAILED=0
echo "== $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); rounds $ROUNDS; shapes $SHAPES; storage $DB; servers: ${SERVERS[*]%%=*}"
for round in $(seq 1 "$ROUNDS"); do
  $DRIVER disk "$WORK" >>"$RESULTS"
  # Interleave: each round starts with the next server, so drift in the machine's load spreads over all of them.
  n=${#SERVERS[@]}
  for k in $(seq 0 $((n - 1))); do
    entry=${SERVERS[$(((k + round - 1) % n))]}
    kind=${entry%%:*} spec=${entry#*:}
    case "$kind" in
      warbler) start_warbler "$spec"; label=${spec%%=*} ;;
      ejabberd) start_ejabberd ejabberd 0; label=ejabberd ;;
      ejabberd-mam) start_ejabberd ejabberd-mam 1; label=ejabberd-mam ;;
    esac
    if [ -n "$IDLE" ] && [ -z "$IDLE_SHAPES" ]; then
      $DRIVER idle "${TARGET[@]:2}" "${TLS_ARGS[@]}" --pid "$SERVER_CPU_PID" --connections "$IDLE" --sources "$IDLE_SOURCES" \
        --label "$label" | tee -a "$WORK/idle.jsonl"
      stop_server
      continue
    fi
    if [ -n "$IDLE" ]; then
      # The shapes alone first, then again while $IDLE authenticated sockets stay open and idle.
      for shape in $IDLE_SHAPES; do run_shape "$shape" "$label"; done
      hold="$WORK/hold"; : > "$hold"; rm -f "$hold.ready"
      $DRIVER idle "${TARGET[@]:2}" --pid "$SERVER_CPU_PID" --connections "$IDLE" --sources "$IDLE_SOURCES" --label "$label" \
        --hold-file "$hold" | tee -a "$WORK/idle.jsonl" &
      idle_pid=$!
      while [ ! -e "$hold.ready" ] && kill -0 "$idle_pid" 2>/dev/null; do sleep 1; done
      if [ -e "$hold.ready" ]; then
        for shape in $IDLE_SHAPES; do run_shape "$shape" "$label+${IDLE}idle"; done
      else
        FAILED=1; echo "the idle sockets did not all open" >&2
      fi
      rm -f "$hold"
      wait "$idle_pid" || FAILED=1
      stop_server
      continue
    fi
    for shape in $SHAPES; do run_shape "$shape" "$label"; done
    stop_server
  done
done
echo
if [ -n "$IDLE" ]; then
  $DRIVER idle-summary "$WORK/idle.jsonl"
  [ -n "$IDLE_SHAPES" ] || exit 0
  echo
fi
$DRIVER table "$RESULTS" || FAILED=1
if [ "$SMOKE" = 1 ] && [ "$FAILED" = 0 ]; then echo "peer-bench smoke: every acknowledged message delivered exactly once"; fi
exit "$FAILED"
