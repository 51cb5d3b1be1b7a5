import CArchive
import Crypto
import Foundation
import Glibc
@testable import Payload

/// A fresh directory under /tmp, removed (read-only subdirectories included) when the value goes away.
final class Scratch {
    let path: String

    init() throws {
        var template = Array("/tmp/warbler-payload-tests.XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw PayloadError(.io, "mkdtemp failed")
        }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    deinit { FileIO.removeTree(path) }

    func file(_ relative: String) -> String { path + "/" + relative }

    /// The names directly in the scratch directory: what a failed unpack must not have added to.
    func listing() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: path).sorted() }
}

func write(_ path: String, _ contents: String, mode: mode_t = 0o644) throws {
    try write(path, Array(contents.utf8), mode: mode)
}

func write(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    try check(chmod(path, mode) == 0, "chmod \(path)")
}

func makeDirectory(_ path: String, mode: mode_t = 0o755) throws {
    try check(mkdir(path, 0o755) == 0, "mkdir \(path)")
    try check(chmod(path, mode) == 0, "chmod \(path)")
}

func makeSymlink(_ path: String, to target: String) throws {
    try check(symlink(target, path) == 0, "symlink \(path)")
}

func check(_ ok: Bool, _ what: String) throws {
    if !ok { throw PayloadError(.io, "\(what): \(String(cString: strerror(errno)))") }
}

func sha256Hex(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

func readBytes(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// The decompressed bytes of a gzip stream, or nil when zlib refuses it: an oracle independent of libarchive.
func gunzip(_ compressed: [UInt8]) -> [UInt8]? {
    var stream = z_stream()
    guard warbler_inflate_init_gzip(&stream) == Z_OK else { return nil }
    defer { inflateEnd(&stream) }
    var input = compressed
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    return input.withUnsafeMutableBufferPointer { inBuf -> [UInt8]? in
        stream.next_in = inBuf.baseAddress
        stream.avail_in = uInt(inBuf.count)
        while true {
            let status = chunk.withUnsafeMutableBufferPointer { outBuf -> Int32 in
                stream.next_out = outBuf.baseAddress
                stream.avail_out = uInt(outBuf.count)
                return inflate(&stream, Z_NO_FLUSH)
            }
            output += chunk[0..<(chunk.count - Int(stream.avail_out))]
            if status == Z_STREAM_END { return stream.avail_in == 0 ? output : nil }
            if status != Z_OK { return nil }
        }
    }
}

/// Flips every bit of the byte at `offset`.
func flipByte(in path: String, at offset: Int) throws {
    var bytes = try readBytes(path)
    bytes[offset] ^= 0xFF
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Every path under `root` with its type, permission bits and content hash or link target, read straight from the
/// filesystem (not through Payload), so a round trip can be compared independently of the code under test.
func snapshot(_ root: String, excluding excluded: Set<String> = []) throws -> [String: String] {
    var result: [String: String] = [:]
    func visit(_ relative: String) throws {
        let full = relative.isEmpty ? root : root + "/" + relative
        for name in try FileManager.default.contentsOfDirectory(atPath: full) {
            let path = relative.isEmpty ? name : relative + "/" + name
            if excluded.contains(path) { continue }
            var st = stat()
            try check(lstat(root + "/" + path, &st) == 0, "lstat \(path)")
            let mode = String(st.st_mode & 0o7777, radix: 8)
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                result[path] = "dir \(mode)"
                try visit(path)
            case S_IFREG:
                let digest = sha256Hex(try readBytes(root + "/" + path))
                result[path] = "file \(mode) \(st.st_size) \(digest)"
            case S_IFLNK:
                result[path] = "link -> " + (try FileManager.default.destinationOfSymbolicLink(atPath: root + "/" + path))
            default:
                result[path] = "other \(String(st.st_mode, radix: 8))"
            }
        }
    }
    try visit("")
    return result
}

/// Writes a tar.gz entry by entry with libarchive directly, bypassing every check in Payload, to build the hostile
/// archives an attacker could hand us.
struct HostileArchive {
    struct Entry {
        var path: String
        var type: mode_t = S_IFREG
        var mode: mode_t = 0o644
        var data: [UInt8] = []
        var symlink: String?
        var hardlink: String?
        var device: dev_t = 0
    }

    /// A manifest that vouches for `entries` exactly as given, so only the safety rules can refuse them.
    static func manifest(for entries: [Entry]) throws -> [UInt8] {
        var records: [String: Manifest.Entry] = [:]
        for e in entries {
            switch e.type {
            case S_IFDIR: records[e.path] = .directory(permissions: UInt16(e.mode & 0o777))
            case S_IFLNK: records[e.path] = .symlink(target: e.symlink ?? "")
            default:
                let digest = sha256Hex(e.data)
                records[e.path] = .file(permissions: UInt16(e.mode & 0o777), size: UInt64(e.data.count), sha256: digest)
            }
        }
        return Array(try Manifest(entries: records).encoded())
    }

    static func write(to path: String, entries: [Entry], withManifest: Bool = true) throws {
        let a = archive_write_new()!
        defer { archive_write_free(a) }
        try check(archive_write_set_format_pax_restricted(a) == ARCHIVE_OK, "format")
        try check(archive_write_add_filter_gzip(a) == ARCHIVE_OK, "gzip")
        try check(archive_write_open_filename(a, path) == ARCHIVE_OK, "open")
        var all = entries
        if withManifest {
            all.insert(Entry(path: Manifest.fileName, data: try manifest(for: entries)), at: 0)
        }
        for e in all {
            let entry = archive_entry_new()!
            defer { archive_entry_free(entry) }
            archive_entry_set_pathname(entry, e.path)
            archive_entry_set_filetype(entry, UInt32(e.type))
            archive_entry_set_perm(entry, e.mode)
            archive_entry_set_size(entry, la_int64_t(e.type == S_IFREG && e.hardlink == nil ? e.data.count : 0))
            if let target = e.symlink { archive_entry_set_symlink(entry, target) }
            if let target = e.hardlink { archive_entry_set_hardlink(entry, target) }
            if e.device != 0 { archive_entry_set_rdev(entry, e.device) }
            try check(archive_write_header(a, entry) == ARCHIVE_OK, "header \(e.path)")
            if !e.data.isEmpty && e.hardlink == nil {
                _ = e.data.withUnsafeBytes { archive_write_data(a, $0.baseAddress, $0.count) }
            }
        }
        try check(archive_write_close(a) == ARCHIVE_OK, "close")
    }
}
