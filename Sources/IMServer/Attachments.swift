import DurableFiles
import Foundation
import Hummingbird
import IMCore
import IMStorage
import NIOCore

/// Attachment bytes on disk under `<data_dir>/attachments`, metadata in storage. Uploads stream to disk and
/// downloads stream from it (a 25 MiB file never sits whole in memory); each user has a byte quota and an upload
/// rate; files go with their conversation, and housekeeping removes the ones no message refers to.
struct Attachments: Sendable {
    let directory: String
    let storage: any Storage
    let maxBytes: Int
    let allowedTypes: [String]
    let quotaBytes: Int64
    let uploads: RateLimiter
    let fileIO = FileIO()

    init(directory: String, storage: any Storage, limits: ServerConfig.Limits) {
        self.directory = directory
        self.storage = storage
        maxBytes = limits.attachmentBytes
        allowedTypes = limits.attachmentTypes
        quotaBytes = Int64(limits.attachmentQuotaBytes)
        uploads = RateLimiter(perMinute: limits.uploadsPerMinute)
    }

    func allowed(_ type: String) -> Bool {
        allowedTypes.contains { pattern in
            if pattern.hasSuffix("/*") { return type.hasPrefix(String(pattern.dropLast(1))) }
            return pattern == type
        }
    }

    func path(for id: String) -> String { "\(directory)/\(id.prefix(2))/\(id)" }

    func store(request: Request, conversation: ConversationID, uploader: UserID) async throws -> AttachmentRef {
        let type = (request.headers[.contentType] ?? "application/octet-stream").split(separator: ";").first
            .map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? "application/octet-stream"
        guard allowed(type) else {
            throw IMError.invalid("attachments of type \(type) are not accepted; allowed: \(allowedTypes.joined(separator: ", "))")
        }
        if let wait = uploads.take(String(uploader)) {
            throw RateLimited(message: "too many uploads; wait \(Int(wait.rounded(.up))) seconds", retryAfter: wait)
        }
        if let declared = request.headers[.contentLength].flatMap(Int.init), declared > maxBytes {
            throw IMError(.tooLarge, "attachments may be at most \(maxBytes) bytes")
        }
        let used = try await storage.attachmentBytes(uploader: uploader)
        let left = max(0, quotaBytes - used)
        let allowance = min(Int64(maxBytes), left)
        let overMessage = allowance < Int64(maxBytes)
            ? "your attachment quota of \(quotaBytes) bytes is used up (\(left) left); ask an administrator, or wait for old files to be removed"
            : "attachments may be at most \(maxBytes) bytes"
        guard allowance > 0 else { throw IMError(.tooLarge, overMessage) }
        let rawName = request.uri.queryParameters.get("name") ?? "file"
        let name = String(rawName.replacingOccurrences(of: "/", with: "_").prefix(200))
        let id = TokenService.randomToken(bytes: 18)
        let final = path(for: id)
        let dir = (final as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        // Stream into a private temporary file (AtomicFile: O_EXCL|O_NOFOLLOW, 0600 from creation), fsync, rename,
        // fsync the directory: a crash leaves no file or the whole file, never half of one; a body over the
        // allowance stops the upload where it crosses it.
        let (fd, tmp): (Int32, String)
        do { (fd, tmp) = try AtomicFile.createTemporary(besides: final, mode: 0o600) } catch {
            throw IMError(.unavailable, "cannot store the attachment (\(error)); check the data directory")
        }
        var size: Int64 = 0
        do {
            defer { close(fd) }
            for try await chunk in request.body {
                size += Int64(chunk.readableBytes)
                guard size <= allowance else { throw IMError(.tooLarge, overMessage) }
                do {
                    try chunk.withUnsafeReadableBytes { try AtomicFile.writeAll(fd, $0, path: tmp) }
                } catch {
                    throw IMError(.unavailable, "cannot store the attachment (disk full?); nothing was saved")
                }
            }
            guard size > 0 else { throw IMError.invalid("the attachment is empty") }
            guard fsync(fd) == 0 else { throw IMError(.unavailable, "cannot store the attachment (disk full?); nothing was saved") }
        } catch {
            unlink(tmp)
            throw error
        }
        do { try AtomicFile.rename(tmp, to: final) } catch {
            unlink(tmp)
            throw IMError(.unavailable, "cannot store the attachment (\(error)); nothing was saved")
        }
        let ref = AttachmentRef(id: id, name: name, contentType: type, size: size)
        do {
            try await storage.insertAttachment(AttachmentRecord(ref: ref, conversation: conversation, uploader: uploader, createdAt: nowMillis()))
        } catch {
            unlink(final)
            throw error
        }
        return ref
    }

    func response(for rec: AttachmentRecord, context: some RequestContext) async throws -> Response {
        let file = path(for: rec.ref.id)
        var st = stat()
        guard lstat(file, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw IMError.notFound("the attachment's file is missing")
        }
        var headers: HTTPFields = [.contentType: rec.ref.contentType]
        headers[.contentDisposition] = "attachment; filename=\"\(rec.ref.name.replacingOccurrences(of: "\"", with: "_"))\""
        headers[.xContentTypeOptions] = "nosniff"
        headers[.contentLength] = String(st.st_size)
        return Response(status: .ok, headers: headers, body: try await fileIO.loadFile(path: file, context: context))
    }

    /// Removes attachments' files (their rows are already gone); a file already missing is no error.
    func removeFiles(_ ids: [String]) {
        for id in ids { unlink(path(for: id)) }
    }

    /// Deletes attachments that no message refers to, once they are `graceSeconds` old (an upload is normally
    /// sent within seconds; recalled and never-sent ones are what this finds). Returns how many went.
    func collectGarbage(now: Int64, graceSeconds: Int64 = 24 * 3600) async throws -> Int {
        var removed = 0
        while true {
            let ids = try await storage.unreferencedAttachments(createdBefore: now - graceSeconds * 1000, limit: 500)
            guard !ids.isEmpty else { return removed }
            try await storage.deleteAttachments(ids: ids)
            removeFiles(ids)
            removed += ids.count
            if ids.count < 500 { return removed }
        }
    }
}
