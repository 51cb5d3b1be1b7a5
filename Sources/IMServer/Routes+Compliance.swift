import Foundation
import Hummingbird
import IMCore
import IMStorage
import NIOCore

/// Compliance (docs/protocol.md, "Compliance"): admins search every conversation and export a conversation's or a
/// user's messages as a signed archive. Each search and export is recorded in the audit trail before anything found
/// is answered: when the entry cannot be stored, nothing is shown.
extension Routes {
    func addCompliance(to router: Router<AppContext>) {
        router.get("/v1/admin/compliance/search") { req, _ -> Response in
            let admin = try await requireAdmin(req).sub
            let p = req.uri.queryParameters
            func int(_ name: String) throws -> Int64? {
                guard let v = p.get(name) else { return nil }
                guard let n = Int64(v) else { throw IMError.invalid("'\(name)' must be an integer") }
                return n
            }
            let query = p.get("q") ?? "", conv = try int("conv"), sender = try int("sender"), from = try int("from"), to = try int("to")
            let before = p.get("before")
            let page = try await service.searchPage(nil, query: query, conversation: conv, sender: sender, from: from, to: to,
                                                    before: before, limit: Int(try int("limit") ?? 20))
            try await storage.recordComplianceAudit(API.ComplianceAuditEntry(
                at: nowMillis(), admin: admin, action: .search, query: query, conversation: conv, user: sender, from: from, to: to,
                before: before, results: Int64(page.results.count)))
            runtime.logger.notice("compliance search", metadata: ["im.admin": "\(admin)", "im.results": "\(page.results.count)"])
            return json(page)
        }
        router.post("/v1/admin/compliance/exports") { req, _ -> Response in
            let admin = try await requireAdmin(req).sub
            let body = try await req.decodeJSON(API.ComplianceExportRequest.self, limit: limit)
            guard let record = try await storage.user(id: admin) else { throw IMError(.unauthorized, "the account is gone") }
            let built = try await runtime.compliance.build(body, by: record, now: nowMillis())
            // Open before unlinking: the bytes stay readable to this response alone, and nothing is left behind
            // whether or not the client reads it all.
            guard let handle = FileHandle(forReadingAtPath: built.path) else {
                unlink(built.path)
                throw IMError(.unavailable, "cannot read the export \(built.path) back")
            }
            unlink(built.path)
            let audit: Int64
            do {
                audit = try await storage.recordComplianceAudit(API.ComplianceAuditEntry(
                    at: built.info.createdAt, admin: admin, action: .export, conversation: body.conversation, user: body.user,
                    from: body.from, to: body.to, results: built.info.messages, archiveSha256: built.sha256))
            } catch {
                try? handle.close()
                throw error
            }
            runtime.logger.notice("compliance export", metadata: [
                "im.admin": "\(admin)", "im.audit": "\(audit)", "im.messages": "\(built.info.messages)", "im.sha256": "\(built.sha256)"])
            let scope = body.conversation.map { "conv-\($0)" } ?? "user-\(body.user ?? 0)"
            let headers: HTTPFields = [
                .contentType: "application/gzip",
                .contentDisposition: "attachment; filename=\"warbler-export-\(scope)-\(audit).tar.gz\"",
                .contentLength: String(built.size),
                .init("X-Warbler-Export-Sha256")!: built.sha256,
                .init("X-Warbler-Audit-Id")!: String(audit),
            ]
            let chunk = Attachments.chunkBytes
            return Response(status: .ok, headers: headers, body: ResponseBody(contentLength: Int(built.size)) { writer in
                defer { try? handle.close() }
                while let data = try handle.read(upToCount: chunk), !data.isEmpty {
                    try await writer.write(ByteBuffer(data: data))
                }
                try await writer.finish(nil)
            })
        }
        router.get("/v1/admin/compliance/audit") { req, _ -> Response in
            _ = try await requireAdmin(req)
            let p = req.uri.queryParameters
            let n = min(max(p.get("limit").flatMap { Int($0) } ?? 100, 1), 1000)
            var before: Int64?
            if let b = p.get("before") {
                guard let v = Int64(b) else { throw IMError.invalid("'before' must be an audit entry id") }
                before = v
            }
            return json(try await storage.complianceAudit(before: before, limit: n))
        }
        router.get("/v1/admin/compliance/key") { req, _ -> Response in
            _ = try await requireAdmin(req)
            return json(runtime.compliance.publicKey)
        }
    }
}
