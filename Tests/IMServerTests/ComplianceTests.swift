import Crypto
import Foundation
import IMClient
import IMCore
@testable import IMServer
import IMStorage
import Testing

@Suite(.timeLimit(.minutes(2))) struct ComplianceTests {
    /// Writes an export's bytes to a file of its own, for the verifier.
    static func save(_ export: IMComplianceExport, in server: TestServer) throws -> String {
        let path = server.directory + "/received-\(export.auditID).tar.gz"
        try export.archive.write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test(arguments: Backend.allCases)
    func anAdminExportsAConversationWithItsAttachmentsAsAnArchiveSignedByTheServer(backend: Backend) async throws {
        try await withServer(backend) { server in
            let root = try await server.admin()
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            let start = Int64(Date().timeIntervalSince1970 * 1000) - 1
            _ = try await a.connection.send(conversation: conv, text: "合同的最终版本")
            let bytes = Data((0..<70_000).map { UInt8($0 % 251) })
            let ref = try await alice.client.uploadAttachment(to: conv, name: "contract.pdf", contentType: "application/pdf", data: bytes)
            _ = try await a.connection.send(conversation: conv, attachment: ref, caption: "signed copy")
            let recalled = try await a.connection.send(conversation: conv, text: "oops")
            _ = try await a.connection.recall(conversation: conv, seq: recalled.seq)
            await a.close()
            let end = Int64(Date().timeIntervalSince1970 * 1000) + 1

            let export = try await root.client.adminComplianceExport(.init(conversation: conv, from: start, to: end))
            #expect(export.sha256 == SHA256.hash(data: export.archive).map { String(format: "%02x", $0) }.joined())
            let key = try await root.client.adminComplianceKey()
            #expect(key.algorithm == "ed25519")
            let path = try Self.save(export, in: server)
            let verified = try ComplianceArchive.verify(path: path, publicKey: key.publicKey)
            #expect(verified.info.conversation == conv && verified.info.requestedByName == "root" && verified.info.from == start)
            #expect(verified.messages.map(\.kind) == [.text, .attachment, .text, .recall])
            #expect(verified.messages[0].text == "合同的最终版本")
            #expect(verified.messages[2].recalled == true && verified.messages[2].text == nil, "a recall erases the content, and the export says so")
            #expect(verified.info.attachments == 1 && verified.info.missingAttachments.isEmpty)
            let member = try #require(verified.members.first { $0.path == "attachments/" + ref.id })
            #expect(member.size == UInt64(bytes.count))
            #expect(member.sha256 == SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined())
            #expect(Set(verified.members.map(\.path)).isSuperset(of: ["messages.jsonl", "conversations.json", "users.json", "export.json"]))

            // Another key, or any byte changed, fails.
            let stranger = Curve25519.Signing.PrivateKey().publicKey.rawRepresentation.base64EncodedString()
            #expect(throws: (any Error).self) { try ComplianceArchive.verify(path: path, publicKey: stranger) }
            var altered = export.archive
            altered[altered.count / 2] ^= 0x01
            try altered.write(to: URL(fileURLWithPath: path))
            #expect(throws: (any Error).self) { try ComplianceArchive.verify(path: path, publicKey: key.publicKey) }

            // The audit trail holds the export, with the archive's hash.
            let trail = try await root.client.adminComplianceAudit()
            #expect(trail.first?.id == export.auditID && trail.first?.action == .export && trail.first?.archiveSha256 == export.sha256)
            #expect(trail.first?.conversation == conv && trail.first?.results == 4 && trail.first?.adminName == "root")
            // No archive is left on the server's disk.
            let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: server.directory + "/compliance")) ?? []
            #expect(leftovers.isEmpty, "\(leftovers)")
        }
    }

    @Test func aUsersExportHoldsWhatTheySentInEveryConversationWithinTheRange() async throws {
        try await withServer { server in
            let root = try await server.admin()
            let alice = try await server.user("alice"), bob = try await server.user("bob"), carol = try await server.user("carol")
            let ab = try await alice.client.createDirectConversation(with: bob.id).id
            let g = try await bob.client.createGroup(name: "team", members: [alice.id, carol.id]).id
            let a = try await EventLog.connect(alice), b = try await EventLog.connect(bob)
            let start = Int64(Date().timeIntervalSince1970 * 1000) - 1
            _ = try await a.connection.send(conversation: ab, text: "alice to bob")
            _ = try await b.connection.send(conversation: ab, text: "bob to alice")
            _ = try await a.connection.send(conversation: g, text: "alice to the team")
            let end = Int64(Date().timeIntervalSince1970 * 1000) + 1
            try await Task.sleep(for: .milliseconds(5))
            _ = try await a.connection.send(conversation: g, text: "after the range")
            await a.close(); await b.close()

            let export = try await root.client.adminComplianceExport(.init(user: alice.id, from: start, to: end))
            let key = try await root.client.adminComplianceKey().publicKey
            let verified = try ComplianceArchive.verify(path: try Self.save(export, in: server), publicKey: key)
            #expect(verified.messages.map(\.text) == ["alice to bob", "alice to the team"])
            #expect(verified.info.user == alice.id && verified.info.conversation == nil)
        }
    }

    @Test(arguments: Backend.allCases)
    func complianceSearchSeesEveryConversationAndEverySearchIsAudited(backend: Backend) async throws {
        try await withServer(backend) { server in
            let root = try await server.admin()
            let alice = try await server.user("alice"), bob = try await server.user("bob"), carol = try await server.user("carol")
            let ab = try await alice.client.createDirectConversation(with: bob.id).id
            let bc = try await bob.client.createDirectConversation(with: carol.id).id
            let a = try await EventLog.connect(alice), c = try await EventLog.connect(carol)
            _ = try await a.connection.send(conversation: ab, text: "报销单 for march")
            _ = try await c.connection.send(conversation: bc, text: "报销单 for april")
            await a.close(); await c.close()

            // The admin is in neither conversation; a user's own search still sees only theirs.
            #expect(try await root.client.search("报销单").results.isEmpty)
            #expect(try await alice.client.search("报销单").results.map(\.message.conversation) == [ab])
            let page = try await root.client.adminComplianceSearch("报销单", limit: 1)
            #expect(page.results.map(\.message.text) == ["报销单 for april"] && page.results[0].highlight.first?.match == true)
            let next = try await root.client.adminComplianceSearch("报销单", before: page.next, limit: 1)
            #expect(next.results.map(\.message.conversation) == [ab])
            _ = try await root.client.adminComplianceSearch("april", sender: carol.id)

            let trail = try await root.client.adminComplianceAudit()
            #expect(trail.map(\.action) == [.search, .search, .search])
            #expect(trail.map(\.query) == ["april", "报销单", "报销单"])
            #expect(trail[0].user == carol.id && trail[1].before == page.next && trail.map(\.results) == [1, 1, 1])
            #expect(try await root.client.adminComplianceAudit(before: trail[0].id, limit: 1).map(\.id) == [trail[1].id])

            // Admins only, for every compliance call; a refused call is not searched, exported or recorded.
            await expectIMError(.forbidden) { _ = try await alice.client.adminComplianceSearch("报销单") }
            await expectIMError(.forbidden) { _ = try await alice.client.adminComplianceExport(.init(conversation: ab, from: 0, to: 1)) }
            await expectIMError(.forbidden) { _ = try await alice.client.adminComplianceAudit() }
            await expectIMError(.forbidden) { _ = try await alice.client.adminComplianceKey() }
            #expect(try await root.client.adminComplianceAudit().count == 3)
        }
    }

    @Test func anExportNeedsOneScopeAnExistingTargetAndARange() async throws {
        try await withServer { server in
            let root = try await server.admin()
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            await expectIMError(.invalid) { _ = try await root.client.adminComplianceExport(.init(conversation: conv, user: alice.id, from: 0, to: 10)) }
            await expectIMError(.invalid) { _ = try await root.client.adminComplianceExport(.init(from: 0, to: 10)) }
            await expectIMError(.invalid) { _ = try await root.client.adminComplianceExport(.init(conversation: conv, from: 10, to: 10)) }
            await expectIMError(.notFound) { _ = try await root.client.adminComplianceExport(.init(conversation: 999_999, from: 0, to: 10)) }
            await expectIMError(.notFound) { _ = try await root.client.adminComplianceExport(.init(user: 999_999, from: 0, to: 10)) }
            #expect(try await root.client.adminComplianceAudit().isEmpty, "a refused export is not recorded as one")
        }
    }

    @Test func anAttachmentWhoseBytesAreGoneIsListedAsMissingAndTheRestIsExported() async throws {
        try await withServer { server in
            let root = try await server.admin()
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            let start = Int64(Date().timeIntervalSince1970 * 1000) - 1
            let kept = try await alice.client.uploadAttachment(to: conv, name: "kept.txt", contentType: "text/plain", data: Data("kept".utf8))
            let lost = try await alice.client.uploadAttachment(to: conv, name: "lost.txt", contentType: "text/plain", data: Data("lost".utf8))
            _ = try await a.connection.send(conversation: conv, attachment: kept)
            _ = try await a.connection.send(conversation: conv, attachment: lost)
            await a.close()
            let end = Int64(Date().timeIntervalSince1970 * 1000) + 1
            // The disk lost one file (an operator's mistake, a restore without attachments).
            let file = server.directory + "/attachments/" + lost.id.prefix(2) + "/" + lost.id
            #expect(unlink(file) == 0)

            let export = try await root.client.adminComplianceExport(.init(conversation: conv, from: start, to: end))
            let verified = try ComplianceArchive.verify(path: try Self.save(export, in: server), publicKey: try await root.client.adminComplianceKey().publicKey)
            #expect(verified.messages.count == 2)
            #expect(verified.info.attachments == 1 && verified.info.missingAttachments == [lost.id])
            #expect(verified.members.contains { $0.path == "attachments/" + kept.id } && !verified.members.contains { $0.path == "attachments/" + lost.id })
        }
    }

    @Test func nothingIsShownOrSentWhenTheAuditEntryCannotBeStored() async throws {
        try await withServer { server in
            let root = try await server.admin()
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            _ = try await a.connection.send(conversation: conv, text: "confidential")
            await a.close()
            #expect(try await root.client.adminComplianceSearch("confidential").results.count == 1)
            // The audit trail becomes unwritable.
            try await server.runtime.store.driver.write { db in
                try await db.query("DROP TABLE compliance_audit")
                return ()
            }
            await #expect(throws: (any Error).self) { _ = try await root.client.adminComplianceSearch("confidential") }
            await #expect(throws: (any Error).self) {
                _ = try await root.client.adminComplianceExport(.init(conversation: conv, from: 0, to: Int64.max / 2))
            }
            let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: server.directory + "/compliance")) ?? []
            #expect(leftovers.isEmpty, "\(leftovers)")
        }
    }
}
