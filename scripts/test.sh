#!/usr/bin/env bash
# Runs the whole test suite: unit, storage contract (SQLite and a real PostgreSQL the tests start), and
# in-process server tests driven by the client SDK.
set -euo pipefail
cd "$(dirname "$0")/.."
# Tests that start subprocesses (the crash test) find the built `warbler` executable beside the test bundle.
swift build --build-tests
swift test --skip-build --parallel --num-workers 2
