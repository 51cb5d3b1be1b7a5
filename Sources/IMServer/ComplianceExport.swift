import Crypto
import Foundation
import IMCore
import IMStorage
import Payload

/// Builds a compliance export (docs/protocol.md, "Compliance"): a conversation's messages, or every message one user
/// sent, in a time range, with their attachments, as a `SignedArchive` signed with the server's Ed25519 key (the one
/// its access tokens are signed with, under its own context string, so neither signature can pass for the other).
///
/// Members: `messages.jsonl` (one message a line, by conversation then seq, reactions included, recalled ones marked),
/// `attachments/ID` (each attachment's bytes, named in its message), `conversations.json`, `users.json` (everyone who
/// sent one of the messages), `export.json` (what, by whom, when), then `manifest.json` and `manifest.sig`.
struct ComplianceExporter: Sendable {
    static let context = ComplianceArchive.context
    /// Messages read from storage per query.
    static let page = 500

    let storage: any Storage
    let attachments: Attachments
    let key: Curve25519.Signing.PrivateKey
    /// Where archives are put together (mode 0700); each is removed once sent.
    let directory: String

    struct Built {
        var path: String
        var info: API.ComplianceExportInfo
        var sha256: String
        var size: Int64
    }

    var publicKey: API.ComplianceKey {
        API.ComplianceKey(algorithm: "ed25519", publicKey: key.publicKey.rawRepresentation.base64EncodedString(),
                          fingerprint: SignedArchive.fingerprint(key.publicKey))
    }

    /// Checks the request: one of conversation and user, which exists, and a range that is not empty.
    func validate(_ r: API.ComplianceExportRequest) async throws {
        guard (r.conversation == nil) != (r.user == nil) else {
            throw IMError.invalid("an export names either 'conv' (a conversation's messages) or 'user' (everything one user sent), not both or neither")
        }
        guard r.from < r.to else { throw IMError.invalid("'from' must be before 'to' (both ms since 1970)") }
        if let c = r.conversation, try await storage.conversation(id: c) == nil {
            throw IMError.notFound("no conversation \(c) (a dissolved group's messages are gone)")
        }
        if let u = r.user, try await storage.user(id: u) == nil { throw IMError.notFound("no user \(u)") }
    }

    func build(_ r: API.ComplianceExportRequest, by admin: UserRecord, now: Int64) async throws -> Built {
        try await validate(r)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let stem = directory + "/export-" + TokenService.randomToken(bytes: 12)
        let messagesFile = stem + ".jsonl", archive = stem + ".tar.gz"
        defer { unlink(messagesFile) }
        do {
            return try await write(r, by: admin, now: now, messagesFile: messagesFile, archive: archive)
        } catch {
            unlink(archive)
            throw error
        }
    }

    private func write(_ r: API.ComplianceExportRequest, by admin: UserRecord, now: Int64, messagesFile: String,
                       archive: String) async throws -> Built {
        // The messages go to a file first: the archive's header needs their size, and an export may be large.
        guard FileManager.default.createFile(atPath: messagesFile, contents: nil, attributes: [.posixPermissions: 0o600]),
              let out = FileHandle(forWritingAtPath: messagesFile) else {
            throw IMError(.unavailable, "cannot create \(messagesFile) for the export; check that \(directory) is writable by the server")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var count: Int64 = 0
        var senders = Set<UserID>(), conversations: [ConversationID] = []
        var attached: [String: AttachmentRef] = [:]
        do {
            defer { try? out.close() }
            var convs: [ConversationID] = []
            if let c = r.conversation { convs = [c] }
            if let u = r.user { convs = try await storage.complianceConversations(sender: u, from: r.from, to: r.to) }
            for conv in convs {
                var after: Int64 = 0
                var any = false
                while true {
                    let batch = try await storage.complianceMessages(conversation: conv, sender: r.user, from: r.from, to: r.to,
                                                                     afterSeq: after, limit: Self.page)
                    for m in batch {
                        var line = try encoder.encode(m)
                        line.append(0x0A)
                        try out.write(contentsOf: line)
                        senders.insert(m.sender)
                        if let a = m.attachment { attached[a.id] = a }
                    }
                    count += Int64(batch.count)
                    any = any || !batch.isEmpty
                    guard batch.count == Self.page, let last = batch.last else { break }
                    after = last.seq
                }
                if any { conversations.append(conv) }
            }
        }

        let writer = try SignedArchiveWriter(path: archive, context: Self.context, key: key)
        guard let input = FileHandle(forReadingAtPath: messagesFile) else { throw IMError(.unavailable, "cannot read \(messagesFile) back") }
        defer { try? input.close() }
        try writer.begin("messages.jsonl", size: try input.seekToEnd())
        try input.seek(toOffset: 0)
        while let chunk = try input.read(upToCount: Attachments.chunkBytes), !chunk.isEmpty { try writer.write(chunk) }

        var missing: [String] = []
        var included: Int64 = 0
        for id in attached.keys.sorted() {
            guard let rec = try await storage.attachment(id: id), let size = try await attachments.storedSize(of: rec) else {
                missing.append(id)
                continue
            }
            try writer.begin("attachments/" + id, size: UInt64(size))
            try await attachments.read(rec) { try writer.write($0) }
            included += 1
        }

        var convRecords: [Conversation] = []
        for c in conversations { if let conv = try await storage.conversation(id: c) { convRecords.append(conv) } }
        try writer.add("conversations.json", try encoder.encode(convRecords))
        if let u = r.user { senders.insert(u) }
        try writer.add("users.json", try encoder.encode(try await storage.users(ids: senders.sorted())))
        let info = API.ComplianceExportInfo(conversation: r.conversation, user: r.user, from: r.from, to: r.to, createdAt: now,
                                            requestedBy: admin.id, requestedByName: admin.profile.username,
                                            serverVersion: WarblerVersion.version, messages: count, attachments: included,
                                            missingAttachments: missing)
        try writer.add("export.json", try encoder.encode(info))
        try writer.finish()

        guard let done = FileHandle(forReadingAtPath: archive) else { throw IMError(.unavailable, "cannot read the export \(archive) back") }
        defer { try? done.close() }
        var hasher = SHA256()
        var size: Int64 = 0
        while let chunk = try done.read(upToCount: Attachments.chunkBytes), !chunk.isEmpty {
            hasher.update(data: chunk)
            size += Int64(chunk.count)
        }
        return Built(path: archive, info: info, sha256: hasher.finalize().map { String(format: "%02x", $0) }.joined(), size: size)
    }
}

/// Checks a compliance export against the server's public key (`GET /v1/admin/compliance/key`): what
/// `warbler compliance-verify` runs, and what an auditor's own tool would do.
public enum ComplianceArchive {
    public static let context = "warbler-compliance-export-v1"

    /// A verified export: what it says it holds, its members, and its messages.
    public struct Verified: Sendable {
        public var info: API.ComplianceExportInfo
        public var members: [SignedArchive.Member]
        public var messages: [Message]
    }

    /// Verifies the archive at `path` with the base64 Ed25519 `publicKey`; throws saying what is wrong.
    public static func verify(path: String, publicKey: String) throws -> Verified {
        guard let raw = Data(base64Encoded: publicKey.trimmingCharacters(in: .whitespacesAndNewlines)), raw.count == 32,
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
            throw IMError.invalid("the public key must be the base64 of 32 bytes, as GET /v1/admin/compliance/key gives it")
        }
        let verified = try SignedArchive.verify(path: path, context: context, publicKey: key, reading: ["export.json", "messages.jsonl"])
        guard let infoData = verified.contents["export.json"], let lines = verified.contents["messages.jsonl"] else {
            throw IMError.invalid("\(path) is signed but lacks export.json or messages.jsonl: it is not a compliance export")
        }
        let decoder = JSONDecoder()
        let info = try decoder.decode(API.ComplianceExportInfo.self, from: infoData)
        let messages = try lines.split(separator: 0x0A).map { try decoder.decode(Message.self, from: Data($0)) }
        guard Int64(messages.count) == info.messages else {
            throw IMError.invalid("\(path) holds \(messages.count) messages but its export.json says \(info.messages)")
        }
        return Verified(info: info, members: verified.manifest.members, messages: messages)
    }
}
