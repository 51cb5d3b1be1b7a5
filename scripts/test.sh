#!/usr/bin/env bash
# Runs the whole test suite: unit, storage contract (SQLite and a real PostgreSQL the tests start), in-process
# server tests driven by the client SDK, installer and payload tests, the browser suite, then the end-to-end suite: the installer
# file built by packaging/build.sh --debug, installed on fresh Debian 12 roots under systemd-nspawn.
# WARBLER_E2E=0 leaves the end-to-end suite out (it needs root, mmdebstrap and systemd-container).
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests that start subprocesses (the crash test) find the built `warbler` executable beside the test bundle.
swift build --build-tests
swift test --skip-build --parallel --num-workers 2
# The web client and admin console in headless chromium against a real `warbler server` (needs chromium,
# chromium-driver and selenium; it fails, saying what to install, when they are missing).
bash scripts/browser-test.sh

if [ "${WARBLER_E2E:-1}" != 0 ]; then
  bash packaging/build.sh --debug
  FILE=$(ls dist/warbler-*-linux-x86_64 | sort -V | tail -1)
  bash scripts/e2e-nspawn.sh "$FILE"
  bash scripts/e2e-upgrade.sh "$FILE"
fi
