import DurableFiles
import Foundation
import Hummingbird
import IMCore
import IMStorage
import NIOCore

/// Attachment bytes on disk under `<data_dir>/attachments`, metadata in storage.
struct Attachments: Sendable {
    let directory: String
    let storage: any Storage
    let maxBytes: Int
    let allowedTypes: [String]

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
        let rawName = request.uri.queryParameters.get("name") ?? "file"
        let name = String(rawName.replacingOccurrences(of: "/", with: "_").prefix(200))
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: maxBytes) } catch {
            throw IMError(.tooLarge, "attachments may be at most \(maxBytes) bytes")
        }
        guard buffer.readableBytes > 0 else { throw IMError.invalid("the attachment is empty") }
        let id = TokenService.randomToken(bytes: 18)
        let final = path(for: id)
        let dir = (final as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // Write, fsync, rename: a crash leaves either no file or the whole file, never half of one.
        let data = Data(buffer: buffer)
        do { try AtomicFile.write(data, to: final, mode: 0o600) } catch {
            throw IMError(.unavailable, "cannot store the attachment (disk full?); nothing was saved")
        }
        let ref = AttachmentRef(id: id, name: name, contentType: type, size: Int64(data.count))
        do {
            try await storage.insertAttachment(AttachmentRecord(ref: ref, conversation: conversation, uploader: uploader, createdAt: nowMillis()))
        } catch {
            unlink(final)
            throw error
        }
        return ref
    }

    func response(for rec: AttachmentRecord) async throws -> Response {
        guard let data = FileManager.default.contents(atPath: path(for: rec.ref.id)) else {
            throw IMError.notFound("the attachment's file is missing")
        }
        var headers: HTTPFields = [.contentType: rec.ref.contentType]
        headers[.contentDisposition] = "attachment; filename=\"\(rec.ref.name.replacingOccurrences(of: "\"", with: "_"))\""
        headers[.xContentTypeOptions] = "nosniff"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(data: data)))
    }
}
