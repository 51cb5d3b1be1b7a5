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

/// A member's read and delivered cursors in one conversation.
public struct MemberCursor: Sendable, Hashable {
    public var conversation: ConversationID
    public var user: UserID
    public var read: Int64
    public var delivered: Int64
    public init(conversation: ConversationID, user: UserID, read: Int64, delivered: Int64) {
        self.conversation = conversation; self.user = user; self.read = read; self.delivered = delivered
    }
}

/// Presence across nodes: `presence` holds (node, user) while the user has a socket on the node, `cluster_nodes`
/// when each node last said it was alive. A user is online while a row of theirs belongs to a live node.
extension SQLStore {
    /// The non-zero cursors of every member of every conversation any of `users` is in (a node re-sends them
    /// after its listener lost notices).
    public func memberCursors(ofConversationsOf users: [UserID]) async throws -> [MemberCursor] {
        guard !users.isEmpty else { return [] }
        let ids = Array(Set(users)).sorted()
        return try await driver.read { db in
            var out: Set<MemberCursor> = []
            for start in stride(from: 0, to: ids.count, by: 500) {
                let chunk = ids[start..<min(start + 500, ids.count)]
                let marks = (1...chunk.count).map { "$\($0)" }.joined(separator: ", ")
                let rows = try await db.query("""
                    SELECT m.conv_id, m.user_id, m.read_seq, m.delivered_seq FROM members m
                    WHERE m.conv_id IN (SELECT x.conv_id FROM members x WHERE x.user_id IN (\(marks)))
                      AND (m.read_seq > 0 OR m.delivered_seq > 0)
                    """, chunk.map { SQLValue.int($0) })
                for r in rows {
                    out.insert(MemberCursor(conversation: try r.int("conv_id"), user: try r.int("user_id"),
                                            read: try r.int("read_seq"), delivered: try r.int("delivered_seq")))
                }
            }
            return out.sorted { ($0.conversation, $0.user) < ($1.conversation, $1.user) }
        }
    }

    /// Records that `node` is alive at `now` (ms).
    public func nodeAlive(_ node: String, now: Int64) async throws {
        try await driver.write { db in
            try await db.query("""
                INSERT INTO cluster_nodes (node, seen_at) VALUES ($1, $2)
                ON CONFLICT (node) DO UPDATE SET seen_at = excluded.seen_at
                """, [.text(node), .int(now)])
        }
    }

    /// Forgets `node` (it is shutting down; its `presence` rows must be cleared first).
    public func forgetNode(_ node: String) async throws {
        try await driver.write { db in try await db.query("DELETE FROM cluster_nodes WHERE node = $1", [.text(node)]) }
    }

    /// `user` has a socket on `node` (`present`), or no longer has one.
    public func setPresent(node: String, user: UserID, present: Bool) async throws {
        try await driver.write { db in
            if present {
                try await db.query("INSERT INTO presence (node, user_id) VALUES ($1, $2) ON CONFLICT (node, user_id) DO NOTHING",
                                   [.text(node), .int(user)])
            } else {
                try await db.query("DELETE FROM presence WHERE node = $1 AND user_id = $2", [.text(node), .int(user)])
            }
        }
    }

    /// Removes every `presence` row of `node`; returns their users.
    public func clearPresence(node: String) async throws -> [UserID] {
        try await driver.write { db in
            try await db.query("DELETE FROM presence WHERE node = $1 RETURNING user_id", [.text(node)]).map { try $0.int("user_id") }.sorted()
        }
    }

    /// Those of `users` with a socket on a node other than `node` that was alive at or after `heardSince` (ms).
    public func onlineElsewhere(_ users: [UserID], except node: String, heardSince: Int64) async throws -> Set<UserID> {
        guard !users.isEmpty else { return [] }
        let ids = Array(Set(users)).sorted()
        return try await driver.read { db in
            var out = Set<UserID>()
            for start in stride(from: 0, to: ids.count, by: 500) {
                let chunk = ids[start..<min(start + 500, ids.count)]
                let marks = (1...chunk.count).map { "$\($0 + 2)" }.joined(separator: ", ")
                let rows = try await db.query("""
                    SELECT DISTINCT p.user_id FROM presence p JOIN cluster_nodes n ON n.node = p.node
                    WHERE p.node <> $1 AND n.seen_at >= $2 AND p.user_id IN (\(marks))
                    """, [.text(node), .int(heardSince)] + chunk.map { SQLValue.int($0) })
                for r in rows { out.insert(try r.int("user_id")) }
            }
            return out
        }
    }

    /// Retires every node not alive since `silentSince` (ms) with its `presence` rows; returns the users those
    /// rows held. Of nodes doing this at once, each row is deleted, and so returned, by one of them.
    public func expireNodes(silentSince: Int64) async throws -> [UserID] {
        try await driver.write { db in
            let nodes = try await db.query("DELETE FROM cluster_nodes WHERE seen_at < $1 RETURNING node", [.int(silentSince)])
                .map { try $0.text("node") }
            var users = Set<UserID>()
            for n in nodes {
                for r in try await db.query("DELETE FROM presence WHERE node = $1 RETURNING user_id", [.text(n)]) {
                    users.insert(try r.int("user_id"))
                }
            }
            return users.sorted()
        }
    }
}
