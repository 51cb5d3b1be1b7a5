#!/usr/bin/env bash
# Runs the whole test suite: unit, storage contract (SQLite and a real PostgreSQL the tests start), in-process
# server tests driven by the client SDK, installer and payload tests, the browser suite, then the end-to-end suite: the installer
# file built by packaging/build.sh --debug, installed on fresh Debian 12 roots under systemd-nspawn (one host, then an
# upgrade, then a three-host cluster).
#
#   bash scripts/test.sh          (as root on a fresh machine it first installs what it needs from Debian's packages)
#
# WARBLER_E2E=0 leaves the end-to-end suite out (it needs root, mmdebstrap and systemd-container).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '==> %s\n' "$*"; }
E2E=${WARBLER_E2E:-1}

# What the suite needs from Debian, checked with dpkg and installed when missing (as install.sh does for the build):
# libsystemd-dev, libarchive-dev, pkg-config: the CSystemd and CArchive shims (and libarchive.a for packaging/build.sh);
# postgresql: the real server the PostgreSQL tests start; systemd: systemd-analyze, which the template tests run;
# chromium, chromium-driver, python3-selenium: the browser suite (fonts-noto-cjk: Chinese glyphs in its zh-CN
# screenshots, which are empty boxes without a CJK font; fonts-noto-color-emoji: the colour emoji font its emoji
# test looks for, as a user's system has one); mmdebstrap, systemd-container: the end-to-end
# suite's fresh Debian 12 hosts (systemd-nspawn); patchelf: packaging/components.sh, which makes the embedded
# cluster components relocatable.
plain=(libsystemd-dev libarchive-dev pkg-config postgresql systemd chromium chromium-driver python3-selenium fonts-noto-cjk fonts-noto-color-emoji)
with_recommends=()
[ "$E2E" = 0 ] || with_recommends=(mmdebstrap systemd-container debian-archive-keyring patchelf)
missing_plain=(); missing_rec=()
for p in "${plain[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing_plain+=("$p"); done
for p in "${with_recommends[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing_rec+=("$p"); done
if [ $((${#missing_plain[@]} + ${#missing_rec[@]})) -gt 0 ]; then
  all=$(echo "${missing_plain[@]}" "${missing_rec[@]}")
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/test.sh: missing Debian packages: $all; run as root: apt-get update && apt-get install -y $all  (or run this script as root)" >&2
    exit 1
  fi
  say "installing what the tests need from Debian's packages: $all"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  [ ${#missing_plain[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${missing_plain[@]}" >/dev/null
  [ ${#missing_rec[@]} -eq 0 ] || apt-get install -y -qq "${missing_rec[@]}" >/dev/null
fi
if [ "$E2E" != 0 ] && [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh: the end-to-end suite boots Debian hosts with systemd-nspawn and needs root; run as root, or set WARBLER_E2E=0 to leave it out" >&2
  exit 1
fi

# A target importing a module of ours it does not depend on builds only when the build happens to order it right.
say "checking that every target depends on the modules it imports (scripts/check-imports.py)"
python3 scripts/check-imports.py
# Tests that start subprocesses (the crash test) find the built `warbler` executable beside the test bundle.
say "building the tests (swift build --build-tests; the first build takes about 15 minutes on 2 cores)"
swift build --build-tests 2>&1 | awk '/^\[[0-9]+\/[0-9]+\]/ { if (++n % 150 == 1) { print "    " $1 " " $2 " " $3; fflush() } next } { print; fflush() }'
# The cluster's embedded components (pinned Debian packages, cached outside the repo in /var/cache/warbler-debs):
# the installer tests check the rendered HAProxy config with the embedded haproxy itself.
if [ "$E2E" != 0 ]; then
  say "staging the cluster's embedded components (packaging/components.sh)"
  bash packaging/components.sh stage .build-packaging/components
  export WARBLER_COMPONENTS_DIR=$PWD/.build-packaging/components
fi
say "unit, storage contract and in-process server tests (swift test)"
# The suites that start and kill whole server processes run on their own afterwards: beside the rest on two cores
# they starved its timing-sensitive tests (token renewal, reconnects, periodic jobs); so do the tests that measure
# a deadline against the wall clock (a 5-second token's renewal, a slow webhook endpoint, a refusal's answer time),
# which the other 600 tests in flight at once on two cores can push past it.
# The database-outage suites (a commit held past the watchdog's timeout, every backend terminated under a stream of
# sends, a relay that goes silent) measure seconds too: beside the rest a 400 ms commit timeout gave up on an
# ordinary commit, and the terminated-backends test ran past its 3 minutes. alertd's daemon tests scrape and
# evaluate every few hundred milliseconds: beside the rest, under a loaded machine, a late scrape resolved an alert
# that then fired again (a second notification where the test wants one).
HEAVY="CrashTests|DaemonTests|WebhookCrashTests|SessionEndTests|aSlowEndpointNeverSlowsMessageDelivery|idleSocketsPastThePerAddressCap|CommitWatchdogTests|DatabaseOutageTests|TerminatedBackendsTests|SilentServerTests|SilentDatabaseTests|ClusterReconnectTests"
swift test --skip-build --parallel --num-workers 2 --skip "$HEAVY"
swift test --skip-build --filter "$HEAVY"
# The web client and admin console in headless chromium against a real `warbler server`.
say "the browser suite (scripts/browser-test.sh)"
bash scripts/browser-test.sh
# The benchmark's load driver against the debug server for a few seconds: fails only when an acknowledged message is
# lost or delivered twice, never on a timing (docs/benchmarks.md).
say "the benchmark smoke (scripts/peer-bench.sh --smoke), on SQLite and on PostgreSQL (overlapping commits)"
bash scripts/peer-bench.sh --smoke --bin .build/debug/warbler
bash scripts/peer-bench.sh --smoke --db postgres --bin .build/debug/warbler

if [ "$E2E" != 0 ]; then
  say "the installer file for the end-to-end suites (packaging/build.sh --debug)"
  bash packaging/build.sh --debug
  FILE=$(ls dist/warbler-*-linux-x86_64 | sort -V | tail -1)
  bash scripts/e2e-nspawn.sh "$FILE"
  bash scripts/e2e-cluster-supervisor.sh "$FILE"
  bash scripts/e2e-upgrade.sh "$FILE"
  bash scripts/e2e-cluster.sh "$FILE"
fi
