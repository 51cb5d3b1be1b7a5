import Crypto
import Foundation
import Glibc

/// A tar.gz whose every member is listed, with its size and SHA-256, in `manifest.json`, and that list signed with
/// Ed25519 in `manifest.sig` (the same one-line form as an installer's signature: `warbler-signature-v1 ed25519
/// BASE64`). What is signed is the archive's purpose (`context`, e.g. "warbler-compliance-export-v1"), a NUL byte, then
/// the SHA-256 of `manifest.json`'s bytes: the context keeps a signature made for one use from passing for another.
/// A verifier recomputes every member's hash and refuses a member the manifest does not list, so the signature covers
/// the whole archive. Members are written through `ArchiveWriter` (deterministic headers) and streamed.
public enum SignedArchive {
    public static let manifestName = "manifest.json"
    public static let signatureName = "manifest.sig"
    static let signatureTag = "warbler-signature-v1 ed25519 "
    /// Largest manifest or signature a verifier reads into memory.
    static let maxControlBytes = 64 << 20

    public struct Member: Codable, Sendable, Equatable {
        public var path: String
        public var size: UInt64
        /// Hex of the member's SHA-256.
        public var sha256: String
    }

    public struct Manifest: Codable, Sendable, Equatable {
        public var format: Int
        /// What the archive is for; a verifier names the context it expects.
        public var context: String
        /// Base64 of the signer's Ed25519 public key, for information: trust comes from the key the verifier is given.
        public var signer: String
        public var members: [Member]
    }

    /// The first 16 hex digits of a public key's SHA-256: how a manifest, a log and an admin name a key.
    public static func fingerprint(_ key: Curve25519.Signing.PublicKey) -> String {
        String(SHA256.hash(data: key.rawRepresentation).hex.prefix(16))
    }

    static func signedMessage(context: String, manifest: Data) -> [UInt8] {
        Array(context.utf8) + [0] + Array(SHA256.hash(data: manifest))
    }

    /// What a verified archive holds: its manifest and the bytes of the members asked for.
    public struct Verified: Sendable {
        public var manifest: Manifest
        public var contents: [String: Data]
    }

    /// Checks the archive at `path` against `publicKey` and `context`: the signature over the manifest, then every
    /// member's size and SHA-256, no member missing and none unlisted, no member twice, regular files only. Returns
    /// the manifest and the bytes of the members named in `reading`; throws `badSignature` or `manifestMismatch` saying
    /// what is wrong.
    public static func verify(path: String, context: String, publicKey: Curve25519.Signing.PublicKey,
                              reading: Set<String> = []) throws -> Verified {
        let reader = try ArchiveReader(path: path, range: nil)
        var seen: [String: (size: UInt64, sha256: String)] = [:]
        var manifestData: Data?, signatureData: Data?
        var contents: [String: Data] = [:]
        while let header = try reader.next() {
            guard header.fileType == S_IFREG else {
                throw PayloadError(.unsafeEntry, "\(path) holds \(header.path), which is not a regular file; a signed archive holds only files")
            }
            guard seen[header.path] == nil, header.path != manifestName || manifestData == nil,
                  header.path != signatureName || signatureData == nil else {
                throw PayloadError(.manifestMismatch, "\(path) holds \(header.path) twice; it was altered")
            }
            let control = header.path == manifestName || header.path == signatureName
            let keep = control || reading.contains(header.path)
            var hasher = SHA256()
            var size: UInt64 = 0
            var data = Data()
            try reader.readData { chunk in
                size += UInt64(chunk.count)
                if control && size > UInt64(maxControlBytes) {
                    throw PayloadError(.manifestMismatch, "\(header.path) in \(path) is larger than \(maxControlBytes) bytes; it is not a signed archive's")
                }
                hasher.update(bufferPointer: chunk)
                if keep { data.append(contentsOf: chunk) }
            }
            switch header.path {
            case manifestName: manifestData = data
            case signatureName: signatureData = data
            default:
                seen[header.path] = (size, hasher.finalize().hex)
                if keep { contents[header.path] = data }
            }
        }
        guard let manifestData else { throw PayloadError(.manifestMismatch, "\(path) has no \(manifestName): it is not a signed archive") }
        guard let signatureData, let line = String(data: signatureData, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines),
              line.hasPrefix(signatureTag), let signature = Data(base64Encoded: String(line.dropFirst(signatureTag.count))),
              signature.count == 64 else {
            throw PayloadError(.badSignature, "\(path) has no readable \(signatureName): it is not a signed archive, or it was altered")
        }
        guard publicKey.isValidSignature(signature, for: signedMessage(context: context, manifest: manifestData)) else {
            throw PayloadError(.badSignature, "the signature of \(path) does not match: it was altered, signed with another key (not \(fingerprint(publicKey))), or is not a \(context) archive")
        }
        let manifest: Manifest
        do { manifest = try JSONDecoder().decode(Manifest.self, from: manifestData) } catch {
            throw PayloadError(.manifestMismatch, "\(path) has a signed but unreadable manifest (\(error))")
        }
        guard manifest.context == context else {
            throw PayloadError(.manifestMismatch, "\(path) is a \(manifest.context) archive, not a \(context) one")
        }
        var listed = Set<String>()
        for m in manifest.members {
            guard listed.insert(m.path).inserted else { throw PayloadError(.manifestMismatch, "the manifest of \(path) lists \(m.path) twice") }
            guard let found = seen[m.path] else { throw PayloadError(.manifestMismatch, "\(path) lacks \(m.path), which its manifest lists") }
            guard found.size == m.size, found.sha256 == m.sha256 else {
                throw PayloadError(.manifestMismatch, "\(m.path) in \(path) does not match its manifest (size or SHA-256): it was altered")
            }
        }
        if let extra = seen.keys.sorted().first(where: { !listed.contains($0) }) {
            throw PayloadError(.manifestMismatch, "\(path) holds \(extra), which its manifest does not list: it was altered")
        }
        return Verified(manifest: manifest, contents: contents)
    }
}

/// Writes a `SignedArchive`: members one after another (each announced with its size, then its bytes), then
/// `finish()` adds the manifest and its signature. Not thread-safe: one writer, one task.
public final class SignedArchiveWriter {
    private let writer: ArchiveWriter
    private let context: String
    private let key: Curve25519.Signing.PrivateKey
    private var members: [SignedArchive.Member] = []
    private var open: (path: String, size: UInt64, written: UInt64, hasher: SHA256)?

    /// Starts the archive at `path` (created or truncated).
    public init(path: String, context: String, key: Curve25519.Signing.PrivateKey) throws {
        writer = try ArchiveWriter(path: path)
        self.context = context
        self.key = key
    }

    /// Starts member `path` of `size` bytes, which `write` then gives.
    public func begin(_ path: String, size: UInt64) throws {
        try closeMember()
        guard !path.isEmpty, !path.hasPrefix("/"), !path.split(separator: "/").contains(".."),
              path != SignedArchive.manifestName, path != SignedArchive.signatureName,
              !members.contains(where: { $0.path == path }) else {
            throw PayloadError(.unsafeEntry, "cannot add \(path) to a signed archive: it is absolute, climbs out, is reserved or was added already")
        }
        try writer.writeHeader(path: path, kind: .file, permissions: 0o644, size: size)
        open = (path, size, 0, SHA256())
    }

    public func write(_ buffer: UnsafeRawBufferPointer) throws {
        guard var member = open else { throw PayloadError(.io, "write before begin in a signed archive") }
        guard member.written + UInt64(buffer.count) <= member.size else {
            throw PayloadError(.io, "\(member.path) grew past the \(member.size) bytes announced for it")
        }
        try writer.writeData(buffer)
        member.hasher.update(bufferPointer: buffer)
        member.written += UInt64(buffer.count)
        open = member
    }

    public func write(_ data: Data) throws {
        try data.withUnsafeBytes { try write($0) }
    }

    /// Adds a whole member from bytes in memory.
    public func add(_ path: String, _ data: Data) throws {
        try begin(path, size: UInt64(data.count))
        try write(data)
        try closeMember()
    }

    private func closeMember() throws {
        guard let member = open else { return }
        guard member.written == member.size else {
            throw PayloadError(.io, "\(member.path) ended after \(member.written) of the \(member.size) bytes announced for it")
        }
        members.append(.init(path: member.path, size: member.size, sha256: member.hasher.finalize().hex))
        open = nil
    }

    /// Writes the manifest and its signature and closes the archive; returns the manifest.
    @discardableResult
    public func finish() throws -> SignedArchive.Manifest {
        try closeMember()
        let manifest = SignedArchive.Manifest(format: 1, context: context, signer: key.publicKey.rawRepresentation.base64EncodedString(),
                                              members: members)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(manifest)
        let signature = try key.signature(for: SignedArchive.signedMessage(context: context, manifest: data))
        for (name, bytes) in [(SignedArchive.manifestName, data),
                              (SignedArchive.signatureName, Data((SignedArchive.signatureTag + signature.base64EncodedString() + "\n").utf8))] {
            try writer.writeHeader(path: name, kind: .file, permissions: 0o644, size: UInt64(bytes.count))
            try bytes.withUnsafeBytes { try writer.writeData($0) }
        }
        try writer.finish()
        return manifest
    }
}
