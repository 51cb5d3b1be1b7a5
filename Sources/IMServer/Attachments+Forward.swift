import DurableFiles
import Foundation
import IMCore
import IMStorage

extension Attachments {
    /// A new attachment in `conversation`, charged to `uploader`, with the bytes of `source` (a hard link: nothing
    /// is copied or uploaded again; each id's file is removed on its own). Used when a message is forwarded.
    func forwardCopy(of source: AttachmentRecord, into conversation: ConversationID, uploader: UserID) async throws -> AttachmentRef {
        let used = try await storage.attachmentBytes(uploader: uploader)
        guard used + source.ref.size <= quotaBytes else {
            throw IMError(.tooLarge, "your attachment quota of \(quotaBytes) bytes would be exceeded by forwarding \(source.ref.name); ask an administrator, or wait for old files to be removed")
        }
        let id = TokenService.randomToken(bytes: 18)
        let final = path(for: id)
        let dir = (final as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            guard link(path(for: source.ref.id), final) == 0 else {
                throw IMError(.unavailable, "cannot link the attachment (errno \(errno)); check the data directory")
            }
            try AtomicFile.syncDirectory(dir)
        } catch let e as IMError {
            throw e
        } catch {
            unlink(final)
            throw IMError(.unavailable, "cannot store the forwarded attachment (\(error)); nothing was saved")
        }
        let ref = AttachmentRef(id: id, name: source.ref.name, contentType: source.ref.contentType, size: source.ref.size)
        do {
            try await storage.insertAttachment(AttachmentRecord(ref: ref, conversation: conversation, uploader: uploader, createdAt: nowMillis()))
        } catch {
            unlink(final)
            throw error
        }
        return ref
    }
}
