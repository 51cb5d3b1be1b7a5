#!/usr/bin/env bash
# The cluster's components (PostgreSQL 15, etcd, Patroni with its Python runtime, HAProxy, keepalived), taken from Debian 12's
# own packages, pinned in packaging/components.lock, and made relocatable so the installer file can carry them.
#
#   packaging/components.sh fetch          # download the pinned .debs into the cache (checks every SHA-256)
#   packaging/components.sh stage DIR      # fetch, then build DIR/<component>/ trees ready to pack
#   packaging/components.sh lock           # re-pin every package to the version apt offers today
#
# The cache is $WARBLER_DEB_CACHE (default /var/cache/warbler-debs), outside the repository, so CI and repeated
# builds download each .deb once. Each component tree is what Debian installs under /usr, minus documentation,
# translations, headers and PostgreSQL's LLVM JIT, with every ELF file's RUNPATH pointing at the component's own
# usr/lib/x86_64-linux-gnu ($ORIGIN-relative: no LD_LIBRARY_PATH that would leak into child processes). A shared
# library is kept only when a minimal Debian 12 host lacks it (packaging/minbase-sonames.txt, the sonames of
# `mmdebstrap --variant=minbase --include=systemd,systemd-sysv,dbus,iproute2 bookworm`); staging fails when an ELF
# needs a library that neither has.
set -euo pipefail
cd "$(dirname "$0")/.."

LOCK=packaging/components.lock
CACHE=${WARBLER_DEB_CACHE:-/var/cache/warbler-debs}
say() { printf '==> %s\n' "$*"; }
die() { printf 'components.sh: %s\n' "$*" >&2; exit 1; }

entries() { grep -v '^#' "$LOCK" | awk 'NF == 4'; }
deb_file() { # package version -> cache path (the version's epoch colon is %3a in Debian's file names)
  printf '%s/%s_%s_amd64.deb' "$CACHE" "$1" "${2//:/%3a}"
}
arch_file() { # a package may be Architecture: all
  local f; f=$(deb_file "$1" "$2")
  [ -f "$f" ] || f="$CACHE/$1_${2//:/%3a}_all.deb"
  printf '%s' "$f"
}

fetch() {
  mkdir -p "$CACHE"
  local missing=()
  while read -r _ pkg ver sum; do
    local f; f=$(arch_file "$pkg" "$ver")
    if [ -f "$f" ] && [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sum" ]; then continue; fi
    missing+=("$pkg=$ver")
  done < <(entries | sort -u -k2,2)
  if [ ${#missing[@]} -gt 0 ]; then
    say "downloading ${#missing[@]} Debian packages into $CACHE"
    (cd "$CACHE" && apt-get download "${missing[@]}" >/dev/null 2>"$CACHE/download.err") \
      || die "apt-get download failed ($(tail -1 "$CACHE/download.err")); run apt-get update, or re-pin with: packaging/components.sh lock"
  fi
  while read -r _ pkg ver sum; do
    local f; f=$(arch_file "$pkg" "$ver")
    [ -f "$f" ] || die "$pkg $ver is not in $CACHE after the download"
    [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sum" ] \
      || die "$f does not match the SHA-256 pinned in $LOCK; delete it to download it again"
  done < <(entries)
}

lock() {
  command -v apt-get >/dev/null || die "apt-get is needed to re-pin"
  local tmp; tmp=$(mktemp)
  grep '^#' "$LOCK" > "$tmp"
  mkdir -p "$CACHE"
  while read -r comp pkg _ _; do
    local ver; ver=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "apt offers no $pkg"
    local f; f=$(arch_file "$pkg" "$ver")
    [ -f "$f" ] || (cd "$CACHE" && apt-get download "$pkg=$ver" >/dev/null)
    f=$(arch_file "$pkg" "$ver")
    echo "$comp $pkg $ver $(sha256sum "$f" | cut -d' ' -f1)" >> "$tmp"
  done < <(entries)
  mv "$tmp" "$LOCK"
  say "re-pinned $(entries | wc -l) packages in $LOCK"
}

is_elf() { [ "$(head -c4 "$1" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; }

stage_component() { # component dest
  local comp=$1 dest=$2
  rm -rf "$dest"; mkdir -p "$dest"
  while read -r c pkg ver _; do
    [ "$c" = "$comp" ] || continue
    dpkg-deb -x "$(arch_file "$pkg" "$ver")" "$dest"
  done < <(entries)
  # Merged /usr: Debian 12 puts some libraries under /lib.
  if [ -d "$dest/lib" ]; then cp -a "$dest/lib/." "$dest/usr/lib/"; rm -rf "$dest/lib"; fi
  rm -rf "$dest/etc" "$dest/var" "$dest/usr/share/doc" "$dest/usr/share/man" "$dest/usr/share/info" \
    "$dest/usr/share/locale" "$dest/usr/share/lintian" "$dest/usr/share/bash-completion" "$dest/usr/share/zsh" \
    "$dest/usr/include" "$dest/usr/lib/systemd" "$dest/usr/share/postgresql-common" \
    "$dest/usr/lib/postgresql/15/lib/llvmjit.so" "$dest/usr/lib/postgresql/15/lib/llvmjit_types.bc" \
    "$dest/usr/lib/postgresql/15/lib/bitcode" "$dest/usr/lib/postgresql/15/lib/pgxs" \
    "$dest/usr/lib/python3.11/test" "$dest/usr/lib/python3.11/idlelib" "$dest/usr/lib/python3.11/tkinter" \
    "$dest/usr/lib/python3.11/ensurepip" "$dest/usr/lib/python3.11/lib2to3" "$dest/usr/lib/python3.11/pydoc_data" \
    "$dest/usr/share/haproxy" "$dest/usr/share/vim" "$dest/usr/lib/postgresql/15/bin/postmaster"
  find "$dest" -name __pycache__ -type d -prune -exec rm -rf {} +
  # Patroni 3.0.2 reads etcd without a quorum ("We can tolerate stale reads"). It cannot: a host back from a
  # partition read its own lagging etcd, saw itself still holding the leader key, and started as primary over
  # the one promoted meanwhile, whose acknowledged writes were then rewound (drill 2 on booted hosts; Patroni's
  # own fix came later, patroni/patroni#3318). Linearizable reads cost a round trip to etcd's leader per read.
  if [ "$comp" = patroni ]; then
    local e3="$dest/usr/lib/python3/dist-packages/patroni/dcs/etcd3.py"
    [ "$(grep -c "params\['serializable'\] = True" "$e3" 2>/dev/null)" = 1 ] \
      || die "$e3: the serializable-read line to change is not there exactly once (a new Patroni? check it still reads without a quorum)"
    sed -i "s/params\['serializable'\] = True.*/params['serializable'] = False  # Warbler: quorum reads (packaging\/components.sh)/" "$e3"
    grep -q "params\['serializable'\] = False" "$e3" || die "$e3: could not switch Patroni to quorum reads"
  fi
  # Absolute symlinks point into the host's /; make each relative inside the tree, or drop it when its target
  # is not part of the component (the payload refuses links that leave the tree).
  while IFS= read -r link; do
    local target; target=$(readlink "$link")
    case "$target" in
      /*) if [ -e "$dest$target" ]; then
            ln -sfn "$(realpath -s --relative-to="$(dirname "$link")" "$dest$target")" "$link"
          else rm -f "$link"; fi ;;
    esac
  done < <(find "$dest" -type l)
  find "$dest" -xtype l -delete
  # The installer lays out plain files only: a symlink becomes the file it names (a library's versioned file is
  # renamed to its soname when nothing else points at it, so nothing is stored twice; a program's other name,
  # postmaster for postgres, becomes a copy).
  while IFS= read -r link; do
    local t dir; t=$(readlink "$link"); dir=$(dirname "$link")
    if [[ "$link" == *.so.* && "$t" != */* ]] && [ -f "$dir/$t" ] && [ ! -L "$dir/$t" ] \
       && [ "$(find "$dir" -maxdepth 1 -type l -lname "$t" | wc -l)" = 1 ]; then
      mv -f "$dir/$t" "$link"
    else
      cp --remove-destination "$(realpath "$link")" "$link"
    fi
  done < <(find "$dest" -type l)
  # RUNPATH on every ELF file, relative to where it lies.
  local libdir="$dest/usr/lib/x86_64-linux-gnu" have needs missing=""
  mkdir -p "$libdir"
  while IFS= read -r f; do
    is_elf "$f" || continue
    patchelf --set-rpath "\$ORIGIN/$(realpath --relative-to="$(dirname "$f")" "$libdir")" "$f"
    for needed in $(patchelf --print-needed "$f"); do
      [ -e "$libdir/$needed" ] && continue
      grep -qxF "$needed" packaging/minbase-sonames.txt && continue
      missing+=" $needed(${f#"$dest"/})"
    done
  done < <(find "$dest" -type f)
  [ -z "$missing" ] || die "$comp needs libraries neither it nor a minimal Debian 12 has:$missing"
  # Libraries the host already has are dropped (keeps the file small; the host's copy gets security updates).
  for lib in "$libdir"/*.so*; do
    [ -e "$lib" ] || continue
    grep -qxF "$(basename "$lib")" packaging/minbase-sonames.txt && rm -f "$lib"
  done
  say "$comp: $(du -sh "$dest" | cut -f1)"
}

case "${1:-}" in
  fetch) fetch ;;
  lock) lock ;;
  stage)
    [ -n "${2:-}" ] || die "usage: components.sh stage DIR"
    command -v patchelf >/dev/null || die "patchelf is missing: apt-get install patchelf"
    fetch
    for comp in $(entries | awk '{print $1}' | sort -u); do stage_component "$comp" "$2/$comp"; done ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
