#!/usr/bin/env bash
# The cluster upgrade from a real earlier build: an earlier commit of this repository, with an older schema, is
# built and stamped as the previous release; three booted hosts are installed from it as a cluster; then
# scripts/e2e-cluster.sh runs its whole suite on them (UPGRADE_FROM), whose step 6e upgrades the running cluster
# to INSTALLER_FILE under load through the VIP (its expand migrations run once, the members switch one at a time,
# the older and newer releases serve side by side on one schema meanwhile), 6f rolls it back to the earlier build,
# 6g stops an upgrade to a release that fails readiness on its first member, and, when INSTALLER_FILE brings
# contract migrations, 6h upgrades again under load and runs them as the separate last step, after which a
# rollback is refused; the rest (host 3 leaving, a cluster on a given database, the restore) follows.
#
#   sudo scripts/e2e-cluster-upgrade.sh dist/warbler-VERSION-linux-x86_64 [OLD_REV]
#
# OLD_REV: the commit to build (default: the parent of the commit that brought this tree's newest migration, i.e.
# the newest commit whose schema is one older). It must have the cluster's upgrade receiver. Its build is cached in
# $WARBLER_E2E_CACHE (a worktree and its build directory, and the installer file), so a second run does not build
# it again. OLD_VERSION (default: 0.0.9) is the release it is stamped as; OLD_DEBUG=1 builds it as a debug build.
# SKIP_DRILLS defaults to 1 here (the fault drills are the cluster suite's; this run is about the upgrade).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(readlink -f "${1:?usage: e2e-cluster-upgrade.sh INSTALLER_FILE [OLD_REV]}")
"$BIN" payload verify >/dev/null 2>&1 || { echo "$BIN is not an installer file (packaging/build.sh makes one)" >&2; exit 2; }
source scripts/e2e-root.sh

MIGRATIONS=Sources/IMStorage/Migrations.swift
schema_at() { git show "$1:$MIGRATIONS" | sed -n 's/^ *version: \([0-9]*\),.*/\1/p' | sort -n | tail -1; }
NOW=$(schema_at HEAD)
OLD_REV=${2:-}
if [ -z "$OLD_REV" ]; then
  newest=
  for c in $(git log --format=%H -- "$MIGRATIONS"); do
    [ "$(schema_at "$c")" -lt "$NOW" ] && break
    newest=$c
  done
  [ -n "$newest" ] && git rev-parse -q --verify "$newest^" >/dev/null \
    || { echo "no earlier commit with a schema older than $NOW in this history; give OLD_REV" >&2; exit 2; }
  OLD_REV=$(git rev-parse "$newest^")
fi
OLD_REV=$(git rev-parse --verify "$OLD_REV^{commit}")
OLD_SCHEMA=$(schema_at "$OLD_REV")
git cat-file -e "$OLD_REV:Sources/Upgrade/Cluster/UpgradeReceiver.swift" 2>/dev/null \
  || { echo "$OLD_REV has no cluster upgrade receiver: a cluster of it cannot be upgraded member by member" >&2; exit 2; }
[ "$OLD_SCHEMA" -lt "$NOW" ] || echo "note: $OLD_REV has schema $OLD_SCHEMA, the same as this tree's $NOW: the upgrade runs no migration"

OLD_VERSION=${OLD_VERSION:-0.0.9}
MODE=release; [ "${OLD_DEBUG:-0}" = 1 ] && MODE=debug
SRC="$CACHE/old-src"
OUT="$CACHE/old-${OLD_REV:0:12}-$OLD_VERSION-$MODE"
OLD_FILE="$OUT/warbler-$OLD_VERSION-linux-x86_64"
echo "==> the earlier build: $(git log -1 --format='%h %s' "$OLD_REV") (schema $OLD_SCHEMA; this tree: $NOW), as $OLD_VERSION ($MODE)"
if [ ! -f "$OLD_FILE" ]; then
  # One worktree for every earlier build, checked out at OLD_REV: its build directory stays, so another commit
  # rebuilds only what changed.
  if [ ! -d "$SRC/.git" ] && [ ! -f "$SRC/.git" ]; then
    git worktree prune
    git worktree add --detach "$SRC" "$OLD_REV" >/dev/null
  else
    git -C "$SRC" checkout -q --detach "$OLD_REV"
  fi
  flags=(--version "$OLD_VERSION"); [ "$MODE" = debug ] && flags+=(--debug)
  mkdir -p "$OUT"
  t=$(date +%s)
  (cd "$SRC" && WARBLER_DIST="$OUT" bash packaging/build.sh "${flags[@]}") >"$OUT/build.log" 2>&1 \
    || { tail -30 "$OUT/build.log" >&2; rm -f "$OLD_FILE"; echo "building $OLD_REV failed (log: $OUT/build.log)" >&2; exit 1; }
  echo "    built in $(( $(date +%s) - t )) s: $OLD_FILE"
fi
"$OLD_FILE" payload verify >/dev/null || { echo "$OLD_FILE is not an installer file" >&2; exit 1; }
echo "==> the cluster suite on hosts installed from it, upgraded to $(basename "$BIN")"
UPGRADE_FROM="$OLD_FILE" SKIP_DRILLS=${SKIP_DRILLS:-1} exec bash scripts/e2e-cluster.sh "$BIN"
