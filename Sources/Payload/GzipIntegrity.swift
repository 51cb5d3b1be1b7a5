import CArchive
import Glibc

/// Checks a gzip stream end to end with zlib: it inflates, its CRC-32 and length trailer match, and nothing follows
/// it. libarchive stops reading a tar.gz at the tar end-of-archive blocks, so without this a damaged gzip trailer or
/// padding would go unnoticed. Only the header's time, flags and OS bytes are outside what gzip can check.
enum GzipIntegrity {
    static func verify(fd: Int32, path: String, range: Range<UInt64>) throws {
        var stream = z_stream()
        guard warbler_inflate_init_gzip(&stream) == Z_OK else { throw PayloadError(.io, "zlib: cannot start inflating") }
        defer { inflateEnd(&stream) }
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { output.deallocate() }
        var ended = false
        try FileIO.stream(fd: fd, path: path, range: range) { chunk in
            guard !ended else { throw corrupt(path, "data follows the end of the compressed stream") }
            stream.next_in = UnsafeMutablePointer(mutating: chunk.baseAddress!.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(chunk.count)
            repeat {
                stream.next_out = output.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = uInt(output.count)
                let status = inflate(&stream, Z_NO_FLUSH)
                if status == Z_STREAM_END {
                    ended = true
                    guard stream.avail_in == 0 else { throw corrupt(path, "data follows the end of the compressed stream") }
                    return
                }
                guard status == Z_OK || status == Z_BUF_ERROR else {
                    throw corrupt(path, stream.msg.map { String(cString: $0) } ?? "zlib error \(status)")
                }
            } while stream.avail_out == 0  // zlib consumed all input once it leaves output space
        }
        guard ended else { throw corrupt(path, "the compressed stream ends early") }
    }

    private static func corrupt(_ path: String, _ detail: String) -> PayloadError {
        PayloadError(.corruptArchive, "the payload archive in \(path) is corrupt (gzip: \(detail)); download the file again")
    }
}
