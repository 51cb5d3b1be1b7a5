#ifndef WARBLER_CARCHIVE_H
#define WARBLER_CARCHIVE_H
// libarchive, for the installer payload and backups, and zlib, to check a gzip stream end to end (libarchive stops
// reading a tar.gz at the tar end-of-archive blocks and never checks the gzip CRC). Normal builds link the shared
// libarchive; packaging/build.sh links libarchive.a so the installer needs no libarchive on the host
// (packaging/README.md). zlib is in every Debian installation.
#include <archive.h>
#include <archive_entry.h>
#include <zlib.h>

/// inflateInit2 is a macro Swift cannot call: open a stream that accepts a gzip member only.
static inline int warbler_inflate_init_gzip(z_stream *stream) {
    return inflateInit2(stream, 15 + 16);
}
#endif
