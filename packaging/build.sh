#!/usr/bin/env bash
# Builds the self-contained installer file dist/warbler-VERSION-linux-x86_64 and dist/SHA256SUMS.
#
#   packaging/build.sh            # release build (the first one takes 25+ minutes on 2 cores)
#   packaging/build.sh --debug    # debug build, packaged the same way (for tests and the end-to-end suite)
#   packaging/build.sh --version 1.2.0   # stamp the release version (default: the version compiled in)
#
# The file is the warbler executable (static Swift standard library, libarchive linked in, stripped), then its
# payload (templates/ and, when present, web/, packed as a deterministic tar.gz with a manifest), then a 64-byte
# trailer. packaging/README.md describes the layout and why the link is done this way.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=release
RELEASE=
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) CONFIG=debug; shift ;;
    --version) RELEASE="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

SCRATCH=.build-packaging
STATIC="$PWD/$SCRATCH/static-libs"
DIST=${WARBLER_DIST:-dist}   # where the file goes (WARBLER_DIST: elsewhere, e.g. beside a run that uses dist/)
ARCH=$(uname -m)
[ "$ARCH" = x86_64 ] || die "this script builds the linux-x86_64 file; this machine is $ARCH"
command -v swift >/dev/null || die "the Swift toolchain is not on PATH"
for tool in pkg-config ar cc strip; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install pkg-config binutils gcc"
done
pkg-config --exists libarchive libsystemd \
  || die "libarchive-dev or libsystemd-dev is missing: apt-get install libarchive-dev libsystemd-dev"
LIBDIR=$(pkg-config --variable=libdir libarchive)
[ -f "$LIBDIR/libarchive.a" ] || die "$LIBDIR/libarchive.a is missing: apt-get install libarchive-dev"

# 1. A libarchive.a with only what the tar.gz reader and writer need. archive_write_set_format.o (the table of all
#    writers) is swapped for packaging/libarchive-format-stub.c, so the linker pulls in tar, gzip and zlib and
#    nothing that needs libxml2, nettle, liblzma or libbz2.
say "preparing a static libarchive ($(pkg-config --modversion libarchive))"
rm -rf "$STATIC"
mkdir -p "$STATIC/pkgconfig"
cp "$LIBDIR/libarchive.a" "$STATIC/libarchive.a"
ar d "$STATIC/libarchive.a" archive_write_set_format.o
cc -c -O2 -fPIC -I"$(pkg-config --variable=includedir libarchive)" \
  -o "$STATIC/warbler-format-stub.o" packaging/libarchive-format-stub.c
ar rs "$STATIC/libarchive.a" "$STATIC/warbler-format-stub.o"

# 2. pkg-config files that SwiftPM reads instead of the system's: libarchive from the directory above (only the .a
#    is there, so `-larchive` from CArchive's module map finds it), and libsystemd without its -L/usr/lib/... which
#    would otherwise come first on the link line and make `-larchive` find the shared library.
cat > "$STATIC/pkgconfig/libarchive.pc" <<PC
Name: libarchive
Description: libarchive, linked statically into the warbler installer
Version: $(pkg-config --modversion libarchive)
Cflags: -I$(pkg-config --variable=includedir libarchive)
Libs: -L$STATIC -larchive -lz
PC
cat > "$STATIC/pkgconfig/libsystemd.pc" <<PC
Name: systemd
Description: libsystemd, from the default library path
Version: $(pkg-config --modversion libsystemd)
Cflags: -I$(pkg-config --variable=includedir libsystemd)
Libs: -lsystemd
PC

# 3. The executable.
say "building warbler ($CONFIG, static Swift standard library) in $SCRATCH"
LOG="$SCRATCH/build.log"
PKG_CONFIG_PATH="$STATIC/pkgconfig" swift build -c "$CONFIG" --static-swift-stdlib --product warbler \
  --scratch-path "$SCRATCH" >"$LOG" 2>&1 \
  || { tail -40 "$LOG" >&2; die "the build failed (full log: $LOG)"; }
BIN="$SCRATCH/$CONFIG/warbler"

# Only libraries a minimal Debian 12 (mmdebstrap --variant=minbase) has; libarchive and friends must not appear.
ALLOWED='^(linux-vdso\.so\.1|/lib64/ld-linux-x86-64\.so\.2|libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|libgcc_s\.so\.1|libstdc\+\+\.so\.6|libz\.so\.1|libsystemd\.so\.0|libcap\.so\.2|libgcrypt\.so\.20|libgpg-error\.so\.0|liblzma\.so\.5|libzstd\.so\.1|liblz4\.so\.1)$'
UNEXPECTED=$(ldd "$BIN" | awk '{print $1}' | grep -Ev "$ALLOWED" || true)
[ -z "$UNEXPECTED" ] || die "$BIN needs libraries a minimal Debian 12 host lacks: $(echo $UNEXPECTED)"

VERSION=${RELEASE:-$("$BIN" version | awk '{print $2}')}
[ -n "$VERSION" ] || die "cannot read the version from $BIN"
say "warbler $VERSION"

# 4. The payload: templates/, web/ (when there is one) and components/ under one root.
ROOT="$SCRATCH/payload-root"
rm -rf "$ROOT"
mkdir -p "$ROOT"
[ -d templates ] || die "templates/ is missing"
cp -a templates "$ROOT/templates"
[ -d web ] && cp -a web "$ROOT/web"
# The cluster's components (PostgreSQL, etcd, Patroni, HAProxy, keepalived from Debian 12's packages, packaging/components.sh),
# each packed as its own verified archive: an install unpacks only the ones its roles run, a single node none.
if [ "${WARBLER_NO_COMPONENTS:-}" != 1 ]; then
  packaging/components.sh stage "$SCRATCH/components"
  mkdir -p "$ROOT/components"
  for comp in "$SCRATCH"/components/*/; do
    comp=$(basename "$comp")
    "$BIN" payload pack "$SCRATCH/components/$comp" "$ROOT/components/$comp.tar.gz" --release "$VERSION" >/dev/null
  done
fi
"$BIN" payload pack "$ROOT" "$SCRATCH/payload.tar.gz" --release "$VERSION"

# 5. Strip, append payload and trailer, checksum.
cp "$BIN" "$SCRATCH/warbler.stripped"
strip "$SCRATCH/warbler.stripped"
mkdir -p "$DIST"
NAME="warbler-$VERSION-linux-$ARCH"
"$BIN" payload append --executable "$SCRATCH/warbler.stripped" --payload "$SCRATCH/payload.tar.gz" --output "$DIST/$NAME"
(cd "$DIST" && sha256sum "$NAME" > SHA256SUMS)

# 6. The file checks its own payload, as an install would.
"$DIST/$NAME" payload verify
say "$DIST/$NAME ($(du -h "$DIST/$NAME" | cut -f1)), $DIST/SHA256SUMS"
