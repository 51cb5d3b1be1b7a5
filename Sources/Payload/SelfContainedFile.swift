import Crypto
import Foundation
import Glibc

/// An executable carrying its payload: `[executable bytes][payload bytes][trailer]`, the trailer being the fixed
/// 64-byte block described at `Trailer`. The executable still runs as before; it finds its payload by reading the
/// end of its own file (/proc/self/exe).
public enum SelfContainedFile {
    /// Where a file's payload lies and what it must hash to.
    public struct Location: Equatable, Sendable {
        public let path: String
        public let payloadRange: Range<UInt64>
        /// 32 bytes, from the trailer.
        public let expectedSHA256: [UInt8]
        public var expectedSHA256Hex: String { expectedSHA256.hex }
    }

    /// The running executable.
    public static let selfPath = "/proc/self/exe"

    /// Reads the trailer of the file at `path` (no hashing). Tells a plain build (no payload) from a file whose end
    /// was cut off.
    public static func locate(path: String) throws -> Location {
        let fd = try FileIO.open(path, O_RDONLY)
        defer { close(fd) }
        let size = try FileIO.size(ofOpenFile: fd, path: path)
        if size >= UInt64(Trailer.size),
           let trailer = Trailer(decoding: try FileIO.read(fd: fd, path: path, offset: size - UInt64(Trailer.size), count: Trailer.size)) {
            let trailerStart = size - UInt64(Trailer.size)
            let (end, overflow) = trailer.payloadOffset.addingReportingOverflow(trailer.payloadLength)
            if overflow || end > trailerStart {
                throw PayloadError(.truncated, "\(path) is truncated: its trailer describes \(trailer.payloadLength) payload bytes at offset \(trailer.payloadOffset), but the file holds only \(trailerStart) bytes before the trailer; download it again")
            }
            if end < trailerStart {
                throw PayloadError(.checksumMismatch, "the installer file is corrupt or was modified: \(trailerStart - end) unexpected bytes lie between its payload and its trailer; download it again")
            }
            return Location(path: path, payloadRange: trailer.payloadOffset..<end, expectedSHA256: trailer.payloadSHA256)
        }
        if let elfEnd = ELFExtent.end(fd: fd, path: path, fileSize: size) {
            if size > elfEnd {
                throw PayloadError(.truncated, "\(path) is truncated or damaged: \(size - elfEnd) bytes follow the executable, but the trailer that locates the payload is missing; download it again")
            }
            if size < elfEnd {
                throw PayloadError(.truncated, "\(path) is truncated: the executable in it should be \(elfEnd) bytes but the file has \(size); download it again")
            }
        }
        throw PayloadError(.noPayload, "this warbler binary carries no payload; build it with packaging/build.sh")
    }

    /// The release version stamped in the file's payload manifest, without verifying the payload (nil: a plain
    /// build, or a payload packed without a release). Cheap: reads the trailer and the archive's first entry.
    public static func release(path: String) -> String? {
        guard let location = try? locate(path: path),
              let manifest = try? PayloadArchive.manifest(archive: path, byteRange: location.payloadRange),
              let release = manifest.release, PayloadArchive.isValidRelease(release) else { return nil }
        return release
    }

    /// Locates the payload and recomputes its SHA-256 by streaming it (never the whole file in memory).
    @discardableResult
    public static func verify(path: String) throws -> Location {
        let location = try locate(path: path)
        try verify(location)
        return location
    }

    /// Recomputes the SHA-256 of a located payload and compares it with the trailer's.
    public static func verify(_ location: Location) throws {
        let fd = try FileIO.open(location.path, O_RDONLY)
        defer { close(fd) }
        let actual = try FileIO.sha256(fd: fd, path: location.path, range: location.payloadRange)
        guard actual == location.expectedSHA256 else {
            throw PayloadError(.checksumMismatch, "the installer file is corrupt or was modified: expected \(location.expectedSHA256Hex), got \(actual.hex); download it again")
        }
    }

    /// Verifies the payload's checksum, then reads the whole archive and checks every entry against its manifest,
    /// writing nothing. Returns what an extract would produce.
    public static func inspect(path: String) throws -> (location: Location, manifest: Manifest) {
        let location = try verify(path: path)
        return (location, try PayloadArchive.check(archive: path, byteRange: location.payloadRange))
    }

    /// Verifies the payload's checksum, then unpacks it into `destination` (which must not exist) through a
    /// temporary directory beside it and a rename.
    @discardableResult
    public static func extractPayload(from path: String, into destination: String) throws -> Manifest {
        let location = try verify(path: path)
        return try PayloadArchive.unpack(archive: path, byteRange: location.payloadRange, into: destination)
    }

    /// Writes `output` = the executable's bytes, the payload file's bytes and a trailer. `output` appears (mode 0755)
    /// only once complete.
    @discardableResult
    /// With `replacing`, `executable` may be an installer file already: its executable part gets the new payload
    /// (packaging re-stamps a release this way without rebuilding).
    public static func append(payload: String, to executable: String, output: String, replacing: Bool = false) throws -> Location {
        var executableSize: UInt64?
        if let existing = try? locate(path: executable) {
            guard replacing else {
                throw PayloadError(.unsupportedFile, "\(executable) already carries a payload; append to a plain build (or replace it: --replace)")
            }
            try verify(existing)
            executableSize = existing.payloadRange.lowerBound
        }
        let exeFD = try FileIO.open(executable, O_RDONLY)
        defer { close(exeFD) }
        let payloadFD = try FileIO.open(payload, O_RDONLY)
        defer { close(payloadFD) }
        let exeSize = try executableSize ?? FileIO.size(ofOpenFile: exeFD, path: executable)
        let payloadSize = try FileIO.size(ofOpenFile: payloadFD, path: payload)

        let (outFD, temporary) = try FileIO.temporaryFile(besides: output)
        do {
            defer { close(outFD) }
            try FileIO.stream(fd: exeFD, path: executable, range: 0..<exeSize) { try FileIO.writeAll(fd: outFD, path: temporary, $0) }
            var hasher = SHA256()
            try FileIO.stream(fd: payloadFD, path: payload, range: 0..<payloadSize) { chunk in
                hasher.update(bufferPointer: chunk)
                try FileIO.writeAll(fd: outFD, path: temporary, chunk)
            }
            let trailer = Trailer(payloadOffset: exeSize, payloadLength: payloadSize, payloadSHA256: Array(hasher.finalize()))
            try trailer.encoded.withUnsafeBytes { try FileIO.writeAll(fd: outFD, path: temporary, $0) }
            guard fchmod(outFD, 0o755) == 0 else { throw PayloadError.io("cannot set the mode of", path: temporary) }
            guard fsync(outFD) == 0 else { throw PayloadError.io("cannot sync", path: temporary) }
            try FileIO.rename(temporary, to: output)
            return Location(path: output, payloadRange: exeSize..<(exeSize + payloadSize), expectedSHA256: trailer.payloadSHA256)
        } catch {
            unlink(temporary)
            throw error
        }
    }
}
