import DurableFiles
import Foundation
import Hummingbird
import IMCore
import IMStorage
import NIOCore

/// Attachment bytes, with their metadata in storage. A single node keeps the bytes on disk under
/// `<data_dir>/attachments`; a cluster keeps them in PostgreSQL as chunks of at most 256 KiB (`.database`), so that
/// every node serves every attachment and replication copies them. Either way uploads and downloads stream (a
/// 25 MiB file never sits whole in memory); each user has a byte quota and an upload rate; files go with their
/// conversation, and housekeeping removes the ones no message refers to.
struct Attachments: Sendable {
    enum Backing: Sendable, Equatable {
        /// Files under this directory.
        case disk(String)
        /// Chunks in the database (`attachment_chunks`).
        case database
    }
    static let chunkBytes = 256 * 1024

    let backing: Backing
    let storage: any Storage
    let maxBytes: Int
    let allowedTypes: [String]
    let quotaBytes: Int64
    let uploads: RateLimiter
    let fileIO = FileIO()

    init(backing: Backing, storage: any Storage, limits: ServerConfig.Limits) {
        self.backing = backing
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

    static func path(for id: String, in directory: String) -> String { "\(directory)/\(id.prefix(2))/\(id)" }

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
        let size: Int64
        switch backing {
        case .disk(let directory):
            size = try await storeFile(request.body, id: id, directory: directory, allowance: allowance, overMessage: overMessage)
        case .database:
            size = try await storeChunks(request.body, id: id, allowance: allowance, overMessage: overMessage)
        }
        return try await record(AttachmentRef(id: id, name: name, contentType: type, size: size), conversation: conversation, uploader: uploader)
    }

    /// Writes the row that makes stored bytes an attachment; when that fails, the bytes go too.
    func record(_ ref: AttachmentRef, conversation: ConversationID, uploader: UserID) async throws -> AttachmentRef {
        do {
            try await storage.insertAttachment(AttachmentRecord(ref: ref, conversation: conversation, uploader: uploader, createdAt: nowMillis()))
        } catch {
            await discard([ref.id])
            throw error
        }
        return ref
    }

    private func storeFile(_ body: RequestBody, id: String, directory: String, allowance: Int64, overMessage: String) async throws -> Int64 {
        let final = Self.path(for: id, in: directory)
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
            for try await chunk in body {
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
        return size
    }

    /// Streams the body into 256 KiB chunk rows, each committed on its own (a replica gets them as they come); the
    /// attachment's row, written after the last chunk, is what makes them visible. A failed upload's chunks are
    /// deleted at once, or by housekeeping if the node dies first.
    private func storeChunks(_ body: RequestBody, id: String, allowance: Int64, overMessage: String) async throws -> Int64 {
        let created = nowMillis()
        var buffer: [UInt8] = []
        buffer.reserveCapacity(Self.chunkBytes)
        var seq = 0
        var size: Int64 = 0
        func flush() async throws {
            do {
                try await storage.putAttachmentChunk(id: id, seq: seq, data: buffer, createdAt: created)
            } catch {
                throw IMError(.unavailable, "cannot store the attachment (the database refused it: \(error)); nothing was saved")
            }
            seq += 1
            buffer.removeAll(keepingCapacity: true)
        }
        do {
            for try await var chunk in body {
                size += Int64(chunk.readableBytes)
                guard size <= allowance else { throw IMError(.tooLarge, overMessage) }
                while chunk.readableBytes > 0 {
                    let take = min(chunk.readableBytes, Self.chunkBytes - buffer.count)
                    buffer.append(contentsOf: chunk.readBytes(length: take) ?? [])
                    if buffer.count == Self.chunkBytes { try await flush() }
                }
            }
            guard size > 0 else { throw IMError.invalid("the attachment is empty") }
            if !buffer.isEmpty { try await flush() }
        } catch {
            await discard([id])
            throw error
        }
        return size
    }

    /// Removes what an upload left (its file or its chunks); best effort, housekeeping catches the rest.
    func discard(_ ids: [String]) async {
        switch backing {
        case .disk(let directory): for id in ids { unlink(Self.path(for: id, in: directory)) }
        case .database: try? await storage.deleteAttachments(ids: ids)
        }
    }

    func response(for rec: AttachmentRecord, context: some RequestContext) async throws -> Response {
        var headers: HTTPFields = [.contentType: rec.ref.contentType]
        headers[.contentDisposition] = "attachment; filename=\"\(rec.ref.name.replacingOccurrences(of: "\"", with: "_"))\""
        headers[.xContentTypeOptions] = "nosniff"
        switch backing {
        case .disk(let directory):
            let file = Self.path(for: rec.ref.id, in: directory)
            var st = stat()
            guard lstat(file, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
                throw IMError.notFound("the attachment's file is missing")
            }
            headers[.contentLength] = String(st.st_size)
            return Response(status: .ok, headers: headers, body: try await fileIO.loadFile(path: file, context: context))
        case .database:
            let totals = try await storage.attachmentChunkTotals(id: rec.ref.id)
            guard totals.count > 0, totals.bytes == rec.ref.size else {
                throw IMError.notFound("the attachment's bytes are missing or incomplete in the database")
            }
            headers[.contentLength] = String(totals.bytes)
            let storage = self.storage, id = rec.ref.id, count = totals.count
            return Response(status: .ok, headers: headers, body: ResponseBody(contentLength: Int(totals.bytes)) { writer in
                for seq in 0..<count {
                    guard let bytes = try await storage.attachmentChunk(id: id, seq: seq) else {
                        throw IMError.notFound("the attachment's chunk \(seq) went missing while it was sent")
                    }
                    try await writer.write(ByteBuffer(bytes: bytes))
                }
                try await writer.finish(nil)
            })
        }
    }

    /// Moves files a single node kept on disk into the database's chunks (a server that ran on SQLite or kept files
    /// before attachments lived in PostgreSQL), then removes each file; resumable (chunks are written in order and
    /// each committed, so a cut-off import goes on from the first missing chunk). Files with no row are left to
    /// housekeeping's grace period. Returns how many files moved.
    func importFiles(from directory: String) async throws -> Int {
        guard backing == .database, let shards = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return 0 }
        var moved = 0
        var failures: [String] = []
        for shard in shards.sorted() {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/" + shard)) ?? []
            for id in names.sorted() where id.hasPrefix(shard) && !id.hasPrefix(".") {
                let file = Self.path(for: id, in: directory)
                do {
                    guard let rec = try await storage.attachment(id: id) else { continue }
                    var st = stat()
                    guard lstat(file, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, Int64(st.st_size) == rec.ref.size else {
                        throw IMError(.unavailable, "cannot move \(file) into the database: it is not a regular file of \(rec.ref.size) bytes")
                    }
                    let have = try await storage.attachmentChunkTotals(id: id)
                    if have.bytes < rec.ref.size {
                        guard let handle = FileHandle(forReadingAtPath: file) else {
                            throw IMError(.unavailable, "cannot read \(file) to move it into the database")
                        }
                        defer { try? handle.close() }
                        try handle.seek(toOffset: UInt64(have.count * Self.chunkBytes))
                        var seq = have.count
                        while let data = try handle.read(upToCount: Self.chunkBytes), !data.isEmpty {
                            try await storage.putAttachmentChunk(id: id, seq: seq, data: Array(data), createdAt: rec.createdAt)
                            seq += 1
                        }
                    }
                    let now = try await storage.attachmentChunkTotals(id: id)
                    guard now.bytes == rec.ref.size else {
                        throw IMError(.unavailable, "moving \(file) into the database gave \(now.bytes) bytes, not \(rec.ref.size); the file is kept")
                    }
                    unlink(file)
                    moved += 1
                } catch {
                    failures.append("\(error)")
                }
            }
        }
        if !failures.isEmpty {
            throw IMError(.unavailable, "moved \(moved) attachment files into the database; \(failures.count) could not move (they stay on disk): \(failures.prefix(3).joined(separator: "; "))")
        }
        return moved
    }

    /// The size of an attachment's stored bytes when they are all there (nil: the file or some chunks are missing).
    func storedSize(of rec: AttachmentRecord) async throws -> Int64? {
        switch backing {
        case .disk(let directory):
            var st = stat()
            guard lstat(Self.path(for: rec.ref.id, in: directory), &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
            return Int64(st.st_size)
        case .database:
            let totals = try await storage.attachmentChunkTotals(id: rec.ref.id)
            return totals.count > 0 && totals.bytes == rec.ref.size ? totals.bytes : nil
        }
    }

    /// Streams an attachment's bytes through `body`, a chunk at a time (a compliance export copies them this way).
    func read(_ rec: AttachmentRecord, _ body: (Data) throws -> Void) async throws {
        switch backing {
        case .disk(let directory):
            let file = Self.path(for: rec.ref.id, in: directory)
            guard let handle = FileHandle(forReadingAtPath: file) else { throw IMError.notFound("the attachment's file \(file) is missing") }
            defer { try? handle.close() }
            while let chunk = try handle.read(upToCount: Self.chunkBytes), !chunk.isEmpty { try body(chunk) }
        case .database:
            let totals = try await storage.attachmentChunkTotals(id: rec.ref.id)
            for seq in 0..<totals.count {
                guard let bytes = try await storage.attachmentChunk(id: rec.ref.id, seq: seq) else {
                    throw IMError.notFound("the attachment's chunk \(seq) went missing while it was read")
                }
                try body(Data(bytes))
            }
        }
    }

    /// Whether an attachment's bytes are stored (its file, or any chunk of it).
    func bytesPresent(for id: String) async throws -> Bool {
        switch backing {
        case .disk(let directory): FileManager.default.fileExists(atPath: Self.path(for: id, in: directory))
        case .database: try await storage.attachmentChunkTotals(id: id).count > 0
        }
    }

    /// Removes attachments' files (their rows, and chunks in the database, are already gone); a file already
    /// missing is no error.
    func removeFiles(_ ids: [String]) {
        guard case .disk(let directory) = backing else { return }
        for id in ids { unlink(Self.path(for: id, in: directory)) }
    }

    /// Deletes attachments that no message refers to, once they are `graceSeconds` old (an upload is normally
    /// sent within seconds; recalled and never-sent ones are what this finds). Returns how many went.
    func collectGarbage(now: Int64, graceSeconds: Int64 = 24 * 3600) async throws -> Int {
        var removed = 0
        while true {
            let ids = try await storage.unreferencedAttachments(createdBefore: now - graceSeconds * 1000, limit: 500)
            guard !ids.isEmpty else { break }
            try await storage.deleteAttachments(ids: ids)
            removeFiles(ids)
            removed += ids.count
            if ids.count < 500 { break }
        }
        if backing == .database {
            _ = try await storage.deleteOrphanAttachmentChunks(createdBefore: now - graceSeconds * 1000)
        }
        return removed
    }
}
