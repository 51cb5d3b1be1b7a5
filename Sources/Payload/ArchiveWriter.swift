import CArchive
import Glibc

/// A deterministic tar.gz writer over libarchive: POSIX pax (restricted) entries owned by 0:0 with mtime 0, and a gzip
/// header without a timestamp, so the same entries always give the same bytes. Public so other archives (backups)
/// are written the same way; their own manifests record the modes and owners to restore.
public final class ArchiveWriter {
    private let archive: OpaquePointer
    private let path: String
    private var closed = false

    /// Starts a tar.gz at `path` (the file is created or truncated).
    public init(path: String) throws {
        guard let archive = archive_write_new() else { throw PayloadError(.io, "libarchive: out of memory") }
        self.archive = archive
        self.path = path
        try check(archive_write_set_format_pax_restricted(archive), "cannot select the tar format")
        try check(archive_write_add_filter_gzip(archive), "cannot select gzip compression")
        // Without this, the gzip header carries the current time and no two builds match.
        try check(archive_write_set_filter_option(archive, "gzip", "timestamp", nil), "cannot drop the gzip timestamp")
        // Names go in as their UTF-8 bytes, unconverted. libarchive would otherwise convert through the process
        // locale, which is "C" in a Swift program: non-ASCII names then fail, and a name set only in UTF-8 form
        // crashes the pax writer (3.6.2). The reader validates the bytes as UTF-8 itself.
        try check(archive_write_set_format_option(archive, "pax", "hdrcharset", "BINARY"), "cannot select binary pax names")
        try check(archive_write_open_filename(archive, path), "cannot create \(path)")
    }

    deinit {
        if !closed { archive_write_close(archive) }
        archive_write_free(archive)
    }

    /// Starts an entry; a file's `size` bytes must follow through `writeData`.
    public func writeHeader(path entryPath: String, kind: Manifest.Kind, permissions: UInt16, size: UInt64 = 0, target: String? = nil) throws {
        guard let entry = archive_entry_new() else { throw PayloadError(.io, "libarchive: out of memory") }
        defer { archive_entry_free(entry) }
        archive_entry_set_pathname(entry, entryPath)
        switch kind {
        case .file:
            archive_entry_set_filetype(entry, UInt32(Glibc.S_IFREG))
            archive_entry_set_size(entry, la_int64_t(size))
        case .directory:
            archive_entry_set_filetype(entry, UInt32(Glibc.S_IFDIR))
            archive_entry_set_size(entry, 0)
        case .symlink:
            archive_entry_set_filetype(entry, UInt32(Glibc.S_IFLNK))
            archive_entry_set_size(entry, 0)
            archive_entry_set_symlink(entry, target)
        }
        archive_entry_set_perm(entry, mode_t(permissions))
        archive_entry_set_uid(entry, 0)
        archive_entry_set_gid(entry, 0)
        archive_entry_set_mtime(entry, 0, 0)
        try check(archive_write_header(archive, entry), "cannot write the entry for \(entryPath)")
    }

    public func writeData(_ buffer: UnsafeRawBufferPointer) throws {
        guard buffer.count > 0 else { return }
        let n = archive_write_data(archive, buffer.baseAddress, buffer.count)
        guard n == buffer.count else {
            throw PayloadError(.io, "cannot write \(path): \(errorMessage)")
        }
    }

    /// Flushes the compressor and the tar end-of-archive blocks, and closes the file.
    public func finish() throws {
        closed = true
        try check(archive_write_close(archive), "cannot finish \(path)")
    }

    private var errorMessage: String {
        archive_error_string(archive).map { String(cString: $0) } ?? "unknown libarchive error"
    }

    private func check(_ status: Int32, _ what: @autoclosure () -> String) throws {
        guard status >= ARCHIVE_WARN else { throw PayloadError(.io, "\(what()): \(errorMessage)") }
    }
}
