/// The fixed 64-byte block at the very end of an installer file that locates and checksums its payload.
///
///     offset  size  field
///          0    16  magic: "WARBLERPAYLOAD1" followed by one NUL byte
///         16     8  payload offset from the start of the file, unsigned, little-endian
///         24     8  payload length in bytes, unsigned, little-endian
///         32    32  SHA-256 of the payload bytes
///
/// The payload ends where the trailer starts: offset + length + 64 == file size.
public struct Trailer: Equatable, Sendable {
    public static let magic: [UInt8] = Array("WARBLERPAYLOAD1".utf8) + [0]
    public static let size = 64

    public var payloadOffset: UInt64
    public var payloadLength: UInt64
    /// 32 bytes.
    public var payloadSHA256: [UInt8]

    public init(payloadOffset: UInt64, payloadLength: UInt64, payloadSHA256: [UInt8]) {
        precondition(payloadSHA256.count == 32, "a SHA-256 is 32 bytes")
        self.payloadOffset = payloadOffset
        self.payloadLength = payloadLength
        self.payloadSHA256 = payloadSHA256
    }

    /// Decodes a trailer, or nil when `bytes` is not one (wrong size or magic).
    public init?(decoding bytes: [UInt8]) {
        guard bytes.count == Self.size, Array(bytes[0..<16]) == Self.magic else { return nil }
        payloadOffset = Self.readLittleEndian(bytes, at: 16)
        payloadLength = Self.readLittleEndian(bytes, at: 24)
        payloadSHA256 = Array(bytes[32..<64])
    }

    public var encoded: [UInt8] {
        var bytes = Self.magic
        bytes += withUnsafeBytes(of: payloadOffset.littleEndian, Array.init)
        bytes += withUnsafeBytes(of: payloadLength.littleEndian, Array.init)
        bytes += payloadSHA256
        return bytes
    }

    private static func readLittleEndian(_ bytes: [UInt8], at start: Int) -> UInt64 {
        (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[start + $1]) << (8 * UInt64($1)) }
    }
}
