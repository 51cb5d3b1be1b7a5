import DurableFiles
import Foundation
import IMCore
import IMStorage

extension Attachments {
    /// A new attachment in `conversation`, charged to `uploader`, with the bytes of `source` (a hard link: nothing
    /// is copied or uploaded again; each id's file is removed on its own; in the database, the chunks are copied
    /// there). Used when a message is forwarded.
    func forwardCopy(of source: AttachmentRecord, into conversation: ConversationID, uploader: UserID) async throws -> AttachmentRef {
        let used = try await storage.attachmentBytes(uploader: uploader)
        guard used + source.ref.size <= quotaBytes else {
            throw IMError(.tooLarge, "your attachment quota of \(quotaBytes) bytes would be exceeded by forwarding \(source.ref.name); ask an administrator, or wait for old files to be removed")
        }
        let id = TokenService.randomToken(bytes: 18)
        switch backing {
        case .disk(let directory):
            let final = Self.path(for: id, in: directory)
            let dir = (final as NSString).deletingLastPathComponent
            do {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                guard link(Self.path(for: source.ref.id, in: directory), final) == 0 else {
                    throw IMError(.unavailable, "cannot link the attachment (errno \(errno)); check the data directory")
                }
                try AtomicFile.syncDirectory(dir)
            } catch let e as IMError {
                throw e
            } catch {
                unlink(final)
                throw IMError(.unavailable, "cannot store the forwarded attachment (\(error)); nothing was saved")
            }
        case .database:
            // The chunks copied inside the database (no bytes through this node); the row below makes them visible.
            let copied = try await storage.copyAttachmentChunks(from: source.ref.id, to: id, createdAt: nowMillis())
            guard copied.bytes == source.ref.size else {
                await discard([id])
                throw IMError(.notFound, "the attachment's bytes are missing or incomplete in the database; nothing was forwarded")
            }
        }
        return try await record(AttachmentRef(id: id, name: source.ref.name, contentType: source.ref.contentType, size: source.ref.size),
                                conversation: conversation, uploader: uploader)
    }
}
