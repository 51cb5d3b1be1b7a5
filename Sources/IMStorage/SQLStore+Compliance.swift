import IMCore

/// Compliance exports and the audit trail of compliance searches and exports (docs/protocol.md, "Compliance").
extension SQLStore {
    public func complianceMessages(conversation: ConversationID, sender: UserID?, from: Int64, to: Int64, afterSeq: Int64,
                                   limit: Int) async throws -> [Message] {
        var binds: [SQLValue] = [.int(conversation), .int(afterSeq), .int(from), .int(to)]
        var sql = "SELECT \(Self.messageColumns) FROM messages WHERE conv_id = $1 AND seq > $2 AND ts >= $3 AND ts < $4"
        if let sender {
            binds.append(.int(sender))
            sql += " AND sender = $\(binds.count)"
        }
        binds.append(.int(Int64(max(1, limit))))
        sql += " ORDER BY seq LIMIT $\(binds.count)"
        let values = binds, query = sql
        return try await driver.read { db in try await Self.messages(db, try await db.query(query, values)) }
    }

    public func complianceConversations(sender: UserID, from: Int64, to: Int64) async throws -> [ConversationID] {
        try await driver.read { db in
            try await db.query("SELECT DISTINCT conv_id FROM messages WHERE sender = $1 AND ts >= $2 AND ts < $3 ORDER BY conv_id",
                               [.int(sender), .int(from), .int(to)]).map { try $0.int("conv_id") }
        }
    }

    @discardableResult
    public func recordComplianceAudit(_ e: API.ComplianceAuditEntry) async throws -> Int64 {
        try await driver.write { db in
            guard let row = try await db.first("""
                INSERT INTO compliance_audit (at, admin_id, action, query, conv_id, user_id, from_ts, to_ts, before_cursor, results, archive_sha256)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id
                """, [.int(e.at), .int(e.admin), .text(e.action.rawValue), SQLValue(e.query), SQLValue(e.conversation), SQLValue(e.user),
                      SQLValue(e.from), SQLValue(e.to), SQLValue(e.before), .int(e.results), SQLValue(e.archiveSha256)]) else {
                throw StorageError.corrupt("the compliance audit insert returned no id")
            }
            return try row.int("id")
        }
    }

    public func complianceAudit(before: Int64?, limit: Int) async throws -> [API.ComplianceAuditEntry] {
        try await driver.read { db in
            try await db.query("""
                SELECT a.id, a.at, a.admin_id, u.username, a.action, a.query, a.conv_id, a.user_id, a.from_ts, a.to_ts, a.before_cursor,
                       a.results, a.archive_sha256
                FROM compliance_audit a LEFT JOIN users u ON u.id = a.admin_id
                WHERE a.id < $1 ORDER BY a.id DESC LIMIT $2
                """, [.int(before ?? Int64.max), .int(Int64(max(1, limit)))]).map { r in
                API.ComplianceAuditEntry(
                    id: try r.int("id"), at: try r.int("at"), admin: try r.int("admin_id"), adminName: r.optText("username"),
                    action: API.ComplianceAuditEntry.Action(rawValue: try r.text("action")) ?? .search, query: r.optText("query"),
                    conversation: r.optInt("conv_id"), user: r.optInt("user_id"), from: r.optInt("from_ts"), to: r.optInt("to_ts"),
                    before: r.optText("before_cursor"), results: try r.int("results"), archiveSha256: r.optText("archive_sha256"))
            }
        }
    }
}
