import Foundation
import IMClient
import IMCore
@testable import IMServer
import IMStorage
import Testing

/// A server on PostgreSQL keeps attachments in the database; files an earlier server kept on disk move in at start,
/// resumably, and are then served like any other.
@Suite(.timeLimit(.minutes(2))) struct AttachmentImportTests {
    @Test func filesOnDiskMoveIntoTheDatabaseAndAreServedFromThere() async throws {
        try await withServer(.postgres) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let dir = server.runtime.config.dataDir + "/attachments"
            let storage = server.runtime.storage
            let chunk = Attachments.chunkBytes
            // Two files as a disk-backed server left them, rows written; the second half moved already (a cut-off import).
            let whole = (0..<(chunk + 500)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let cut = (0..<(2 * chunk + 7)).map { UInt8(truncatingIfNeeded: $0 &* 17) }
            for (id, bytes) in [("aa-whole", whole), ("bb-cut", cut)] {
                try FileManager.default.createDirectory(atPath: dir + "/" + id.prefix(2), withIntermediateDirectories: true)
                try Data(bytes).write(to: URL(fileURLWithPath: Attachments.path(for: id, in: dir)))
                try await storage.insertAttachment(AttachmentRecord(ref: AttachmentRef(id: id, name: id, contentType: "text/plain", size: Int64(bytes.count)),
                                                                    conversation: conv, uploader: alice.id, createdAt: nowMillis()))
            }
            try await storage.putAttachmentChunk(id: "bb-cut", seq: 0, data: Array(cut[0..<chunk]), createdAt: 1)
            // A stray file with no row stays for housekeeping.
            try Data([1]).write(to: URL(fileURLWithPath: Attachments.path(for: "aa-stray", in: dir)))

            #expect(try await server.runtime.attachments.importFiles(from: dir) == 2)
            #expect(!FileManager.default.fileExists(atPath: Attachments.path(for: "aa-whole", in: dir)))
            #expect(!FileManager.default.fileExists(atPath: Attachments.path(for: "bb-cut", in: dir)))
            #expect(FileManager.default.fileExists(atPath: Attachments.path(for: "aa-stray", in: dir)))
            #expect(try await bob.client.downloadAttachment("aa-whole").data == Data(whole))
            #expect(try await bob.client.downloadAttachment("bb-cut").data == Data(cut))
            #expect(try await storage.attachmentChunkTotals(id: "bb-cut").count == 3)
            // Again: nothing left to move.
            #expect(try await server.runtime.attachments.importFiles(from: dir) == 0)
        }
    }

    @Test func aFileOfTheWrongSizeIsKeptAndReported() async throws {
        try await withServer(.postgres) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let dir = server.runtime.config.dataDir + "/attachments"
            try FileManager.default.createDirectory(atPath: dir + "/cc", withIntermediateDirectories: true)
            try Data(count: 10).write(to: URL(fileURLWithPath: Attachments.path(for: "cc-short", in: dir)))
            try await server.runtime.storage.insertAttachment(AttachmentRecord(ref: AttachmentRef(id: "cc-short", name: "s", contentType: "text/plain", size: 20),
                                                                               conversation: conv, uploader: alice.id, createdAt: nowMillis()))
            await #expect(throws: IMError.self) { _ = try await server.runtime.attachments.importFiles(from: dir) }
            #expect(FileManager.default.fileExists(atPath: Attachments.path(for: "cc-short", in: dir)))
        }
    }
}
