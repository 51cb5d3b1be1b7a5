import CArchive
import Glibc

/// Reads a tar.gz with libarchive from a byte range of a file (the payload inside the installer, or a whole file),
/// one entry at a time. Only tar and gzip are enabled: nothing else is ever parsed.
public final class ArchiveReader {
    /// An entry's header as the archive states it, before any checks.
    public struct Header: Sendable {
        public var path: String
        /// `S_IFREG`, `S_IFDIR`, `S_IFLNK`, … (the `S_IFMT` bits).
        public var fileType: mode_t
        public var mode: mode_t
        public var size: Int64?
        public var symlink: String?
        public var hardlink: String?
    }

    private let archive: OpaquePointer
    private let source: RangeSource
    private let path: String

    /// Opens `range` of the file at `path` (nil: the whole file).
    public init(path: String, range: Range<UInt64>?) throws {
        let fd = try FileIO.open(path, O_RDONLY)
        let whole: Range<UInt64>
        do { whole = 0..<(try FileIO.size(ofOpenFile: fd, path: path)) } catch { close(fd); throw error }
        let range = range ?? whole
        guard range.upperBound <= whole.upperBound else {
            close(fd)
            throw PayloadError(.truncated, "\(path) is \(whole.upperBound) bytes, shorter than the payload it should hold (up to byte \(range.upperBound)); download it again")
        }
        guard let archive = archive_read_new() else {
            close(fd)
            throw PayloadError(.io, "libarchive: out of memory")
        }
        self.archive = archive
        self.source = RangeSource(fd: fd, path: path, range: range)
        self.path = path
        archive_read_support_format_tar(archive)
        archive_read_support_filter_gzip(archive)
        let status = archive_read_open(archive, Unmanaged.passUnretained(source).toOpaque(), nil, { _, client, buffer in
            let source = Unmanaged<RangeSource>.fromOpaque(client!).takeUnretainedValue()
            return source.read(into: buffer!)
        }, nil)
        guard status == ARCHIVE_OK else { throw corrupt("cannot open the archive") }
    }

    deinit {
        archive_read_free(archive)
        close(source.fd)
    }

    /// The next entry's header, or nil at the end of the archive.
    public func next() throws -> Header? {
        var entry: OpaquePointer?
        let status = archive_read_next_header(archive, &entry)
        if status == ARCHIVE_EOF { return nil }
        // A warning here is how libarchive reports things like an unreadable pax attribute: refuse those too.
        guard status == ARCHIVE_OK, let entry else { throw corrupt("cannot read an entry header") }
        // The raw bytes of names (see ArchiveWriter: no locale conversion), which must be UTF-8.
        func text(_ raw: UnsafePointer<CChar>?, _ what: String) throws -> String? {
            guard let raw else { return nil }
            guard let text = String(validatingCString: raw) else {
                throw PayloadError(.unsafeEntry, "refusing an archive entry whose \(what) is not valid UTF-8")
            }
            return text
        }
        guard let name = try text(archive_entry_pathname(entry), "name") else {
            throw PayloadError(.unsafeEntry, "refusing an archive entry without a name")
        }
        let mode = archive_entry_mode(entry)
        return Header(
            path: name,
            fileType: mode & S_IFMT,
            mode: mode & 0o7777,
            size: archive_entry_size_is_set(entry) != 0 ? archive_entry_size(entry) : nil,
            symlink: try text(archive_entry_symlink(entry), "symlink target"),
            hardlink: try text(archive_entry_hardlink(entry), "hard link target"))
    }

    /// Streams the current entry's data through `body`.
    public func readData(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = archive_read_data(archive, buffer.baseAddress, buffer.count)
            if n == 0 { return }
            guard n > 0 else { throw corrupt("cannot read an entry's data") }
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
    }

    private func corrupt(_ what: String) -> PayloadError {
        if let failure = source.failure { return failure }
        let detail = archive_error_string(archive).map { String(cString: $0) } ?? "unknown error"
        return PayloadError(.corruptArchive, "the payload archive in \(path) is corrupt (\(what): \(detail)); download the file again")
    }
}

/// Hands libarchive the bytes of one range of a file, then end-of-file: whatever follows (the trailer) is never seen.
final class RangeSource {
    let fd: Int32
    let path: String
    private var offset: UInt64
    private let end: UInt64
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
    /// The I/O error behind a failed read, reported instead of libarchive's generic message.
    private(set) var failure: PayloadError?

    init(fd: Int32, path: String, range: Range<UInt64>) {
        self.fd = fd
        self.path = path
        self.offset = range.lowerBound
        self.end = range.upperBound
    }

    deinit { buffer.deallocate() }

    func read(into out: UnsafeMutablePointer<UnsafeRawPointer?>) -> la_ssize_t {
        let want = Int(min(UInt64(buffer.count), end - offset))
        guard want > 0 else { return 0 }
        while true {
            let n = pread(fd, buffer.baseAddress!, want, off_t(offset))
            if n < 0 && errno == EINTR { continue }
            if n < 0 {
                failure = PayloadError.io("cannot read", path: path)
                return -1
            }
            if n == 0 {
                failure = PayloadError(.truncated, "\(path) ends at byte \(offset), inside its payload; download it again")
                return -1
            }
            offset += UInt64(n)
            out.pointee = UnsafeRawPointer(buffer.baseAddress!)
            return la_ssize_t(n)
        }
    }
}
