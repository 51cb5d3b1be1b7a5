import Foundation

/// What a payload archive holds: every path with its kind, permission bits and, for files, size and SHA-256.
/// Written as the archive's first entry when packing; an unpack accepts the archive only if it matches exactly.
public struct Manifest: Codable, Equatable, Sendable {
    /// The manifest's name inside the archive and in the unpacked directory. Reserved: a source tree may not hold it.
    public static let fileName = "warbler-manifest.json"
    static let currentFormat = 1
    /// Larger than any real manifest; bounds what a hostile archive can make us hold in memory.
    static let maximumSize = 16 << 20

    public enum Kind: String, Codable, Sendable {
        case file, directory, symlink
    }

    /// One path in the archive.
    public struct Entry: Equatable, Sendable {
        public var kind: Kind
        /// Permission bits only (never setuid, setgid or sticky).
        public var permissions: UInt16
        /// Files only.
        public var size: UInt64?
        /// Files only: lowercase hex.
        public var sha256: String?
        /// Symlinks only: the relative target.
        public var target: String?

        public static func file(permissions: UInt16, size: UInt64, sha256: String) -> Entry {
            Entry(kind: .file, permissions: permissions, size: size, sha256: sha256, target: nil)
        }
        public static func directory(permissions: UInt16) -> Entry {
            Entry(kind: .directory, permissions: permissions, size: nil, sha256: nil, target: nil)
        }
        public static func symlink(target: String) -> Entry {
            Entry(kind: .symlink, permissions: 0o777, size: nil, sha256: nil, target: target)
        }
    }

    public var format: Int
    /// The release version the file carrying this payload installs (stamped by packaging/build.sh); nil in a
    /// payload packed without one.
    public var release: String?
    /// Relative path ("templates/server.yaml", no "./") to entry.
    public var entries: [String: Entry]

    public init(entries: [String: Entry], release: String? = nil) {
        self.format = Self.currentFormat
        self.release = release
        self.entries = entries
    }

    /// How many regular files the archive holds.
    public var fileCount: Int { entries.values.count { $0.kind == .file } }
    /// The sum of the regular files' sizes.
    public var totalFileBytes: UInt64 { entries.values.reduce(0) { $0 + ($1.size ?? 0) } }

    /// Deterministic JSON: sorted keys, so packing the same tree twice gives the same bytes.
    func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        var data = try encoder.encode(self)
        data.append(0x0A)
        return data
    }

    static func decode(_ data: Data) throws -> Manifest {
        let manifest: Manifest
        do {
            manifest = try JSONDecoder().decode(Manifest.self, from: data)
        } catch {
            throw PayloadError(.corruptArchive, "the payload's manifest is not valid: \(error)")
        }
        guard manifest.format == currentFormat else {
            throw PayloadError(.corruptArchive, "the payload's manifest has format \(manifest.format); this warbler reads format \(currentFormat)")
        }
        return manifest
    }
}

extension Manifest.Entry: Codable {
    private enum CodingKeys: String, CodingKey {
        case kind = "type", mode, size, sha256, target
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        kind = try c.decode(Manifest.Kind.self, forKey: .kind)
        let mode = try c.decode(String.self, forKey: .mode)
        guard let bits = UInt16(mode, radix: 8), bits & ~0o777 == 0 else {
            throw DecodingError.dataCorruptedError(forKey: .mode, in: c, debugDescription: "mode \(mode) is not an octal permission (0000-0777)")
        }
        permissions = bits
        size = try c.decodeIfPresent(UInt64.self, forKey: .size)
        sha256 = try c.decodeIfPresent(String.self, forKey: .sha256)
        target = try c.decodeIfPresent(String.self, forKey: .target)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind, forKey: .kind)
        try c.encode(octal(permissions), forKey: .mode)
        try c.encodeIfPresent(size, forKey: .size)
        try c.encodeIfPresent(sha256, forKey: .sha256)
        try c.encodeIfPresent(target, forKey: .target)
    }
}

func octal(_ bits: UInt16) -> String {
    let digits = String(bits, radix: 8)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}
