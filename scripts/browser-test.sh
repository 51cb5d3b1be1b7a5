#!/usr/bin/env bash
# The browser suite: starts a real `warbler server` (the debug build) on a free loopback port with a temporary
# data directory and this repository's web/ as its web root, creates an admin, and drives Debian's chromium
# (headless, through chromedriver and selenium) against it: tests/browser/test_web.py, test_features.py, then
# test_theme_and_keys.py (dark mode, the keyboard, emoji, and README's screenshots: 00-readme-light/dark.png) and
# test_search_filters.py and test_errors_and_mutes.py (errors in Chinese, mutes for a chosen time).
# Screenshots go to $WARBLER_ARTIFACTS (default .artifacts/browser). The server is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ARTIFACTS=${WARBLER_ARTIFACTS:-$ROOT/.artifacts/browser}
BIN=${WARBLER_BIN:-$ROOT/.build/debug/warbler}

die() { echo "browser-test: $*" >&2; exit 1; }
[ -x "$BIN" ] || die "$BIN is missing; run 'swift build' first (or set WARBLER_BIN)"
CHROMIUM=$(command -v chromium || true)
CHROMEDRIVER=$(command -v chromedriver || true)
[ -n "$CHROMIUM" ] || die "chromium is not installed; install it with: apt-get install chromium chromium-driver python3-selenium"
[ -n "$CHROMEDRIVER" ] || die "chromedriver is not installed; install it with: apt-get install chromium-driver"

# selenium: Debian's python3-selenium for the system python, else a venv with selenium from PyPI.
PY=""
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null && "$p" -c 'import selenium' 2>/dev/null; then PY=$p; break; fi
done
if [ -z "$PY" ]; then
  VENV=$ROOT/.build/browser-venv
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import selenium' 2>/dev/null; then
    python3 -m venv "$VENV" || die "cannot create a venv; install python3-venv, or python3-selenium"
    "$VENV/bin/pip" install -q selenium || die "pip could not install selenium; install python3-selenium instead"
  fi
  PY=$VENV/bin/python
fi

WORK=$(mktemp -d /tmp/warbler-browser.XXXXXX)
# The AI assistant's endpoint: a fake OpenAI-compatible server streaming its answer (tests/browser/fake_openai.py).
"$PY" tests/browser/fake_openai.py "$WORK/ai-port" &
AI_PID=$!
trap 'kill -TERM "$AI_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT   # until cleanup (below) takes over
for _ in $(seq 1 50); do [ -s "$WORK/ai-port" ] && break; sleep 0.1; done
[ -s "$WORK/ai-port" ] || die "the fake AI endpoint did not start"
AI_PORT=$(cat "$WORK/ai-port")
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
ADMIN_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' )
printf '%s\n' "$ADMIN_PASSWORD" > "$WORK/admin-password"
cat > "$WORK/warbler.yaml" <<YAML
server:
  host: "127.0.0.1"
  port: $PORT
  web_root: "$ROOT/web"
  drain_seconds: 1
metrics:
  port: -1
storage:
  path: "$WORK/warbler.db"
auth:
  registration: "admin"
  jwt_key_file: "$WORK/jwt.key"
  bcrypt_cost: 4
  login_per_minute_per_address: 1000
webhooks:
  # The console test subscribes a receiver on loopback (refused unless allowed, like any private address).
  allowed_networks: ["127.0.0.0/8"]
assistant:
  enabled: true
  endpoint: "http://127.0.0.1:$AI_PORT/v1"
  model: "browser-test"
  edit_interval_seconds: 0.2
data_dir: "$WORK"
log_level: "notice"
YAML

"$BIN" user-add admin --admin --password-file "$WORK/admin-password" --config "$WORK/warbler.yaml" >/dev/null
"$BIN" server --config "$WORK/warbler.yaml" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
cleanup() {
  kill -TERM "$AI_PID" 2>/dev/null || true
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  mkdir -p "$ARTIFACTS" && cp "$WORK/server.log" "$ARTIFACTS/server.log" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  if "$PY" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/readyz', timeout=1)" 2>/dev/null; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "the server exited"; }
  sleep 0.1
done

mkdir -p "$ARTIFACTS"
# Every suite by default; WARBLER_BROWSER_SUITES names some (e.g. tests/browser/test_features.py) to run only those.
status=0
for suite in ${WARBLER_BROWSER_SUITES:-tests/browser/test_web.py tests/browser/test_features.py tests/browser/test_theme_and_keys.py tests/browser/test_search_filters.py tests/browser/test_errors_and_mutes.py}; do
  WARBLER_URL="http://127.0.0.1:$PORT" WARBLER_ADMIN_USER=admin WARBLER_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
    WARBLER_ARTIFACTS="$ARTIFACTS" CHROMIUM="$CHROMIUM" CHROMEDRIVER="$CHROMEDRIVER" WARBLER_BIN="$BIN" \
    "$PY" "$suite" || status=1
done
exit $status
