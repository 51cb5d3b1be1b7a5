import Foundation
import IMCore
import IMStorage
import Testing

@Suite("Storage contract: attachment chunks")
struct AttachmentChunksContractTests {
    /// Bytes of every value (0...255, so a NUL or invalid UTF-8 would show), read back exactly, in order.
    @Test(arguments: Backend.allCases)
    func chunksRoundTripByteForByteAndGoWithTheirAttachment(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let conv = try await store.directConversation(between: a.id, and: b.id)
            let first = (0..<1000).map { UInt8($0 % 256) }, second: [UInt8] = [0, 0xff, 0xfe, 0x00, 0x80]
            try await store.putAttachmentChunk(id: "att1", seq: 0, data: first, createdAt: 100)
            try await store.putAttachmentChunk(id: "att1", seq: 1, data: second, createdAt: 100)
            try await store.insertAttachment(AttachmentRecord(ref: AttachmentRef(id: "att1", name: "f.bin", contentType: "application/octet-stream",
                                                                                 size: 1005),
                                                              conversation: conv.id, uploader: a.id, createdAt: 100))
            #expect(try await store.attachmentChunk(id: "att1", seq: 0) == first)
            #expect(try await store.attachmentChunk(id: "att1", seq: 1) == second)
            #expect(try await store.attachmentChunk(id: "att1", seq: 2) == nil)
            let totals = try await store.attachmentChunkTotals(id: "att1")
            #expect(totals.count == 2 && totals.bytes == 1005)
            // A chunk twice is refused (the primary key), not silently doubled.
            await #expect(throws: (any Error).self) { try await store.putAttachmentChunk(id: "att1", seq: 1, data: [1], createdAt: 100) }

            try await store.deleteAttachments(ids: ["att1"])
            #expect(try await store.attachmentChunkTotals(id: "att1").count == 0)
        }
    }

    @Test(arguments: Backend.allCases)
    func orphanChunksGoOnlyOnceOldAndOnlyWithoutTheirRow(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let conv = try await store.directConversation(between: a.id, and: b.id)
            try await store.putAttachmentChunk(id: "cut-off", seq: 0, data: [1, 2, 3], createdAt: 100)
            try await store.putAttachmentChunk(id: "uploading", seq: 0, data: [4], createdAt: 900)
            try await store.putAttachmentChunk(id: "kept", seq: 0, data: [5], createdAt: 100)
            try await store.insertAttachment(AttachmentRecord(ref: AttachmentRef(id: "kept", name: "k", contentType: "text/plain", size: 1),
                                                              conversation: conv.id, uploader: a.id, createdAt: 100))
            #expect(try await store.deleteOrphanAttachmentChunks(createdBefore: 500) == 1)
            #expect(try await store.attachmentChunkTotals(id: "cut-off").count == 0)
            #expect(try await store.attachmentChunkTotals(id: "uploading").count == 1, "a young upload is left alone")
            #expect(try await store.attachmentChunk(id: "kept", seq: 0) == [5])
        }
    }

    @Test(arguments: Backend.allCases)
    func dissolvingAGroupTakesItsAttachmentsChunks(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let g = try await store.createGroup(name: "g", owner: a.id, members: [b.id])
            try await store.putAttachmentChunk(id: "g-file", seq: 0, data: [9, 9], createdAt: 100)
            try await store.insertAttachment(AttachmentRecord(ref: AttachmentRef(id: "g-file", name: "g", contentType: "text/plain", size: 2),
                                                              conversation: g.id, uploader: a.id, createdAt: 100))
            #expect(try await store.dissolve(conversation: g.id) == ["g-file"])
            #expect(try await store.attachmentChunkTotals(id: "g-file").count == 0)
        }
    }
}
