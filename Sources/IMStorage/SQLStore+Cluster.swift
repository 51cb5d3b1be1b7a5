import IMCore

extension SQLStore {
    /// The `last_seq` of every conversation any of `users` is a member of (the cluster's catch-up compares them
    /// with what its node delivered).
    public func lastSeqs(ofConversationsOf users: [UserID]) async throws -> [ConversationID: Int64] {
        guard !users.isEmpty else { return [:] }
        let ids = Array(Set(users)).sorted()
        return try await driver.read { db in
            var out: [ConversationID: Int64] = [:]
            for start in stride(from: 0, to: ids.count, by: 500) {
                let chunk = ids[start..<min(start + 500, ids.count)]
                let marks = (1...chunk.count).map { "$\($0)" }.joined(separator: ", ")
                let rows = try await db.query("""
                    SELECT c.id, c.last_seq FROM conversations c
                    WHERE c.id IN (SELECT m.conv_id FROM members m WHERE m.user_id IN (\(marks)))
                    """, chunk.map { SQLValue.int($0) })
                for r in rows { out[try r.int("id")] = try r.int("last_seq") }
            }
            return out
        }
    }
}
