#!/usr/bin/env bash
# Signs installer files with an Ed25519 key, so that installs configured with the public key accept them.
#
#   packaging/sign.sh --new-key KEYFILE          # make a key (KEYFILE, 0600) and print its public half
#   packaging/sign.sh KEYFILE dist/warbler-*     # write FILE.sig beside each file
#
# Publish FILE.sig with FILE. Give the public key to installs with `warbler install --release-key BASE64`
# (kept in /etc/warbler/release-key.pub); `warbler upgrade` then refuses any file without a valid signature.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${WARBLER_BIN:-$(ls dist/warbler-*-linux-x86_64 2>/dev/null | sort -V | tail -1)}
[ -x "$BIN" ] || BIN=.build/debug/warbler
[ -x "$BIN" ] || { echo "sign.sh: no warbler to sign with; run packaging/build.sh first (or set WARBLER_BIN)" >&2; exit 2; }
if [ "${1:-}" = --new-key ]; then
  exec "$BIN" payload keygen --private-key "${2:?usage: sign.sh --new-key KEYFILE}"
fi
KEY=${1:?usage: sign.sh KEYFILE FILE...}; shift
[ $# -gt 0 ] || { echo "usage: sign.sh KEYFILE FILE..." >&2; exit 2; }
for f in "$@"; do "$BIN" payload sign --file "$f" --private-key "$KEY"; done
