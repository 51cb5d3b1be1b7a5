import Crypto
import Foundation
import Testing
@testable import Payload

@Suite("Signed archives")
struct SignedArchiveTests {
    static let context = "warbler-test-archive-v1"

    /// Writes members (in order) and the signed manifest; returns the manifest.
    @discardableResult
    func make(_ path: String, _ members: [(String, String)], key: Curve25519.Signing.PrivateKey,
              context: String = context) throws -> SignedArchive.Manifest {
        let writer = try SignedArchiveWriter(path: path, context: context, key: key)
        for (name, text) in members { try writer.add(name, Data(text.utf8)) }
        return try writer.finish()
    }

    /// Copies an archive's members as they are, replacing or adding some: what someone altering it would do.
    func rewrite(_ source: String, to target: String, replacing: [String: String] = [:], adding: [(String, String)] = []) throws {
        let reader = try ArchiveReader(path: source, range: nil)
        var entries: [(String, Data)] = []
        while let h = try reader.next() {
            var data = Data()
            try reader.readData { data.append(contentsOf: $0) }
            entries.append((h.path, replacing[h.path].map { Data($0.utf8) } ?? data))
        }
        let control = entries.filter { $0.0 == SignedArchive.manifestName || $0.0 == SignedArchive.signatureName }
        let body = entries.filter { $0.0 != SignedArchive.manifestName && $0.0 != SignedArchive.signatureName }
            + adding.map { ($0.0, Data($0.1.utf8)) }
        let writer = try ArchiveWriter(path: target)
        for (name, data) in body + control {
            try writer.writeHeader(path: name, kind: .file, permissions: 0o644, size: UInt64(data.count))
            try data.withUnsafeBytes { try writer.writeData($0) }
        }
        try writer.finish()
    }

    @Test func verifiesItsOwnArchiveAndReadsTheMembersAskedFor() throws {
        let scratch = try Scratch()
        let key = Curve25519.Signing.PrivateKey()
        let manifest = try make(scratch.file("a.tar.gz"), [("messages.jsonl", "{\"seq\":1}\n"), ("attachments/ab", "bytes")], key: key)
        #expect(manifest.members.map(\.path) == ["messages.jsonl", "attachments/ab"])
        #expect(manifest.members[1].sha256 == sha256Hex(Array("bytes".utf8)))
        let verified = try SignedArchive.verify(path: scratch.file("a.tar.gz"), context: Self.context, publicKey: key.publicKey,
                                                reading: ["messages.jsonl"])
        #expect(verified.manifest == manifest)
        #expect(verified.contents == ["messages.jsonl": Data("{\"seq\":1}\n".utf8)])
        #expect(manifest.signer == key.publicKey.rawRepresentation.base64EncodedString())
    }

    @Test func refusesAnotherKeyAndAnotherPurpose() throws {
        let scratch = try Scratch()
        let key = Curve25519.Signing.PrivateKey()
        try make(scratch.file("a.tar.gz"), [("x", "1")], key: key)
        #expect(throws: PayloadError.self) {
            try SignedArchive.verify(path: scratch.file("a.tar.gz"), context: Self.context, publicKey: Curve25519.Signing.PrivateKey().publicKey)
        }
        // Signed by the right key for another use: the context is part of what is signed.
        try make(scratch.file("b.tar.gz"), [("x", "1")], key: key, context: "warbler-other-v1")
        let error = #expect(throws: PayloadError.self) {
            try SignedArchive.verify(path: scratch.file("b.tar.gz"), context: Self.context, publicKey: key.publicKey)
        }
        #expect(error?.code == .badSignature)
    }

    @Test func refusesAnAlteredMissingOrAddedMember() throws {
        let scratch = try Scratch()
        let key = Curve25519.Signing.PrivateKey()
        try make(scratch.file("a.tar.gz"), [("messages.jsonl", "original"), ("other", "2")], key: key)
        // The unaltered copy passes, so the failures below are the alterations'.
        try rewrite(scratch.file("a.tar.gz"), to: scratch.file("same.tar.gz"))
        _ = try SignedArchive.verify(path: scratch.file("same.tar.gz"), context: Self.context, publicKey: key.publicKey)

        try rewrite(scratch.file("a.tar.gz"), to: scratch.file("altered.tar.gz"), replacing: ["messages.jsonl": "0riginal"])
        let altered = #expect(throws: PayloadError.self) {
            try SignedArchive.verify(path: scratch.file("altered.tar.gz"), context: Self.context, publicKey: key.publicKey)
        }
        #expect(altered?.code == .manifestMismatch)
        #expect(altered?.message.contains("messages.jsonl") == true)

        try rewrite(scratch.file("a.tar.gz"), to: scratch.file("added.tar.gz"), adding: [("planted", "x")])
        let added = #expect(throws: PayloadError.self) {
            try SignedArchive.verify(path: scratch.file("added.tar.gz"), context: Self.context, publicKey: key.publicKey)
        }
        #expect(added?.message.contains("planted") == true)

        // A manifest rewritten to match the alteration breaks the signature instead.
        let verified = try SignedArchive.verify(path: scratch.file("a.tar.gz"), context: Self.context, publicKey: key.publicKey)
        var forged = verified.manifest
        forged.members[0].sha256 = sha256Hex(Array("0riginal".utf8))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try rewrite(scratch.file("a.tar.gz"), to: scratch.file("forged.tar.gz"),
                    replacing: ["messages.jsonl": "0riginal", SignedArchive.manifestName: String(decoding: try encoder.encode(forged), as: UTF8.self)])
        let forgedError = #expect(throws: PayloadError.self) {
            try SignedArchive.verify(path: scratch.file("forged.tar.gz"), context: Self.context, publicKey: key.publicKey)
        }
        #expect(forgedError?.code == .badSignature)
    }

    @Test func aMemberMustGiveExactlyTheBytesItAnnounced() throws {
        let scratch = try Scratch()
        let writer = try SignedArchiveWriter(path: scratch.file("a.tar.gz"), context: Self.context, key: Curve25519.Signing.PrivateKey())
        try writer.begin("short", size: 5)
        try writer.write(Data("abc".utf8))
        #expect(throws: PayloadError.self) { try writer.finish() }
        let other = try SignedArchiveWriter(path: scratch.file("b.tar.gz"), context: Self.context, key: Curve25519.Signing.PrivateKey())
        try other.begin("long", size: 2)
        #expect(throws: PayloadError.self) { try other.write(Data("abc".utf8)) }
        let third = try SignedArchiveWriter(path: scratch.file("c.tar.gz"), context: Self.context, key: Curve25519.Signing.PrivateKey())
        #expect(throws: PayloadError.self) { try third.add("../escape", Data()) }
        #expect(throws: PayloadError.self) { try third.add(SignedArchive.manifestName, Data()) }
        try third.add("fine", Data("ok".utf8))
        #expect(throws: PayloadError.self) { try third.add("fine", Data()) }
    }
}
