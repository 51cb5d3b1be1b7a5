import Foundation
import IMCore

/// The storage contract implemented once in SQL, over any `SQLDriver` (SQLite or PostgreSQL).
public final class SQLStore: Storage {
    public let driver: any SQLDriver
    private let committer: GroupCommitter
    /// SQLite only: the search index is filled from a log after the commits, in a file of its own (migration 14).
    let searchIndex: SearchIndexQueue?

    /// Opens the store over `driver`. Run `Migrations.apply` first. `webhookOutbox` false leaves the webhook
    /// outbox alone, for a store over a schema older than version 5 (the migration tests' old data) only.
    /// `searchIndexDelay`: how long after a commit SQLite's search indexing runs (a search never waits for it);
    /// `searchIndexChunk`: the most log entries one indexing transaction takes.
    /// `commitsInFlight`: group commits running at once (PostgreSQL; SQLite has one writer and always runs one).
    public init(driver: any SQLDriver, maxBatch: Int = 1024, commitsInFlight: Int = 1, webhookOutbox: Bool = true,
                commitTimeout: Duration = .seconds(10), searchIndexDelay: Duration = .milliseconds(50),
                searchIndexChunk: Int = SearchIndexQueue.defaultChunk) {
        self.driver = driver
        let searchIndex = driver.dialect == .sqlite ? SearchIndexQueue(driver: driver, delay: searchIndexDelay, chunk: searchIndexChunk) : nil
        self.searchIndex = searchIndex
        var afterCommit: (@Sendable (Int) -> Void)?
        if let searchIndex {
            afterCommit = { count in searchIndex.committed(count) }
            searchIndex.catchUp()
        }
        self.committer = GroupCommitter(driver: driver, maxBatch: maxBatch,
                                        commitsInFlight: driver.dialect == .sqlite ? 1 : commitsInFlight,
                                        outbox: webhookOutbox, commitTimeout: commitTimeout, afterCommit: afterCommit)
    }

    public func observeCommits(_ observer: @escaping @Sendable (Int, Duration) -> Void) async {
        committer.setCommitObserver(observer)
    }

    public func observeAppends(_ observer: @escaping @Sendable ([Message]) -> Void) async {
        committer.setAppendObserver(observer)
    }

    public func observeStalledCommits(_ observer: @escaping @Sendable (Int, Duration) -> Void) async {
        committer.setStallObserver(observer)
    }

    public func observeDeadlinesPassed(_ observer: @escaping @Sendable (String) -> Void) async {
        driver.observeDeadlinesPassed(observer)
    }

    public func submit(_ message: NewMessage) async -> AppendTicket {
        committer.submit(message)
    }

    // MARK: Users

    static let userColumns = "id, username, display_name, avatar, password_hash, admin, disabled, created_at, token_generation, kind"

    static func userRecord(_ r: SQLRow) throws -> UserRecord {
        UserRecord(
            profile: UserProfile(id: try r.int("id"), username: try r.text("username"), displayName: try r.text("display_name"),
                                 avatar: r.optText("avatar"), admin: r.bool("admin"),
                                 kind: UserKind(rawValue: r.optText("kind") ?? "user") ?? .user),
            passwordHash: try r.text("password_hash"), disabled: r.bool("disabled"), createdAt: try r.int("created_at"),
            tokenGeneration: try r.int("token_generation"))
    }

    public func createUser(username: String, passwordHash: String, displayName: String, admin: Bool, now: Int64) async throws -> UserProfile {
        try await driver.write { db in
            if try await db.first("SELECT id FROM users WHERE username = $1", [.text(username)]) != nil {
                throw IMError(.conflict, "username '\(username)' is taken")
            }
            guard let row = try await db.first(
                "INSERT INTO users (username, display_name, password_hash, admin, disabled, created_at) VALUES ($1, $2, $3, $4, 0, $5) RETURNING id",
                [.text(username), .text(displayName), .text(passwordHash), SQLValue(admin), .int(now)]) else {
                throw StorageError.corrupt("insert returned no id")
            }
            return UserProfile(id: try row.int("id"), username: username, displayName: displayName, avatar: nil, admin: admin)
        }
    }

    public func user(id: UserID) async throws -> UserRecord? {
        try await driver.read { db in
            try await db.first("SELECT \(Self.userColumns) FROM users WHERE id = $1", [.int(id)]).map(Self.userRecord)
        }
    }

    public func user(username: String) async throws -> UserRecord? {
        try await driver.read { db in
            try await db.first("SELECT \(Self.userColumns) FROM users WHERE username = $1", [.text(username)]).map(Self.userRecord)
        }
    }

    public func users(ids: [UserID]) async throws -> [UserProfile] {
        guard !ids.isEmpty else { return [] }
        return try await driver.read { db in
            var out: [UserProfile] = []
            for id in Set(ids).sorted() {
                if let r = try await db.first("SELECT \(Self.userColumns) FROM users WHERE id = $1", [.int(id)]) {
                    out.append(try Self.userRecord(r).profile)
                }
            }
            return out
        }
    }

    public func listUsers(offset: Int, limit: Int) async throws -> [UserRecord] {
        try await driver.read { db in
            try await db.query("SELECT \(Self.userColumns) FROM users ORDER BY id LIMIT $1 OFFSET $2",
                               [.int(Int64(limit)), .int(Int64(offset))]).map(Self.userRecord)
        }
    }

    public func updateProfile(id: UserID, displayName: String?, avatar: String?) async throws -> UserProfile {
        try await driver.write { db in
            if let displayName {
                try await db.query("UPDATE users SET display_name = $1 WHERE id = $2", [.text(displayName), .int(id)])
            }
            if let avatar {
                try await db.query("UPDATE users SET avatar = $1 WHERE id = $2", [avatar.isEmpty ? .null : .text(avatar), .int(id)])
            }
            guard let r = try await db.first("SELECT \(Self.userColumns) FROM users WHERE id = $1", [.int(id)]) else {
                throw IMError.notFound("no such user")
            }
            return try Self.userRecord(r).profile
        }
    }

    public func setPasswordHash(id: UserID, hash: String) async throws {
        try await driver.write { db in
            try await db.query("UPDATE users SET password_hash = $1 WHERE id = $2", [.text(hash), .int(id)])
        }
    }

    public func setDisabled(id: UserID, disabled: Bool) async throws {
        try await driver.write { db in
            try await db.query("UPDATE users SET disabled = $1 WHERE id = $2", [SQLValue(disabled), .int(id)])
        }
    }

    public func setAdmin(id: UserID, admin: Bool) async throws {
        try await driver.write { db in
            try await db.query("UPDATE users SET admin = $1 WHERE id = $2", [SQLValue(admin), .int(id)])
        }
    }

    public func userCount() async throws -> Int64 {
        try await driver.read { db in try await db.first("SELECT COUNT(*) AS n FROM users")?.int("n") ?? 0 }
    }

    // MARK: Refresh tokens

    public func insertRefreshToken(_ t: RefreshTokenRecord) async throws {
        try await driver.write { db in
            try await db.query(
                "INSERT INTO refresh_tokens (hash, user_id, family, device, expires_at, used_at, revoked) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [.text(t.hash), .int(t.user), .text(t.family), .text(t.device), .int(t.expiresAt), SQLValue(t.usedAt), SQLValue(t.revoked)])
        }
    }

    public func refreshToken(hash: String) async throws -> RefreshTokenRecord? {
        try await driver.read { db in
            guard let r = try await db.first(
                "SELECT hash, user_id, family, device, expires_at, used_at, revoked FROM refresh_tokens WHERE hash = $1", [.text(hash)]) else {
                return nil
            }
            return RefreshTokenRecord(hash: try r.text("hash"), user: try r.int("user_id"), family: try r.text("family"),
                                      device: try r.text("device"), expiresAt: try r.int("expires_at"),
                                      usedAt: r.optInt("used_at"), revoked: r.bool("revoked"))
        }
    }

    public func spendRefreshToken(hash: String, now: Int64) async throws -> Bool {
        try await driver.write { db in
            // Compare-and-set: only one exchange of a token can win.
            let rows = try await db.query(
                "UPDATE refresh_tokens SET used_at = $1 WHERE hash = $2 AND used_at IS NULL AND revoked = 0 RETURNING hash",
                [.int(now), .text(hash)])
            return !rows.isEmpty
        }
    }

    public func revokeTokenFamily(_ family: String) async throws {
        try await driver.write { db in
            try await db.query("UPDATE refresh_tokens SET revoked = 1 WHERE family = $1", [.text(family)])
        }
    }

    public func revokeAllTokens(user: UserID) async throws {
        try await driver.write { db in
            try await db.query("UPDATE refresh_tokens SET revoked = 1 WHERE user_id = $1", [.int(user)])
            // Access tokens issued before this carry an older generation and are refused from now on.
            try await db.query("UPDATE users SET token_generation = token_generation + 1 WHERE id = $1", [.int(user)])
        }
    }

    public func purgeExpiredRefreshTokens(now: Int64) async throws -> Int {
        try await driver.write { db in
            try await db.query("DELETE FROM refresh_tokens WHERE expires_at < $1 RETURNING hash", [.int(now)]).count
        }
    }

    // MARK: Contacts

    public func contactState(owner: UserID, other: UserID) async throws -> ContactState? {
        try await driver.read { db in
            try await db.first("SELECT state FROM contacts WHERE owner = $1 AND other = $2", [.int(owner), .int(other)])
                .flatMap { $0.optText("state") }.flatMap(ContactState.init(rawValue:))
        }
    }

    public func setContactState(owner: UserID, other: UserID, state: ContactState?) async throws {
        try await driver.write { db in
            try await db.query("DELETE FROM contacts WHERE owner = $1 AND other = $2", [.int(owner), .int(other)])
            if let state {
                try await db.query("INSERT INTO contacts (owner, other, state) VALUES ($1, $2, $3)",
                                   [.int(owner), .int(other), .text(state.rawValue)])
            }
        }
    }

    public func contacts(owner: UserID) async throws -> [Contact] {
        try await driver.read { db in
            try await db.query(
                "SELECT c.state, \(Self.userColumns.split(separator: ",").map { "u." + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", ")) FROM contacts c JOIN users u ON u.id = c.other WHERE c.owner = $1 ORDER BY u.username",
                [.int(owner)]
            ).compactMap { r in
                guard let state = ContactState(rawValue: try r.text("state")) else { return nil }
                return Contact(user: try Self.userRecord(r).profile, state: state)
            }
        }
    }

    // MARK: Conversations

    static func members(_ db: any SQLExecutor, _ conv: ConversationID) async throws -> [Member] {
        let now = nowMillis()
        return try await db.query("SELECT user_id, role, read_seq, delivered_seq, send_muted_until FROM members WHERE conv_id = $1 ORDER BY user_id",
                                  [.int(conv)]).map { r in
            let mute = Mute.wire(r.optInt("send_muted_until"), now: now)
            return Member(user: try r.int("user_id"), role: MemberRole(rawValue: try r.text("role")) ?? .member,
                          readSeq: try r.int("read_seq"), deliveredSeq: try r.int("delivered_seq"), muted: mute.muted, mutedUntil: mute.until)
        }
    }

    static func loadConversation(_ db: any SQLExecutor, _ id: ConversationID) async throws -> Conversation? {
        guard let r = try await db.first(
            "SELECT id, type, name, last_seq, send_muted_until, announcement, announcement_by, announcement_at FROM conversations WHERE id = $1",
            [.int(id)]) else { return nil }
        let mute = Mute.wire(r.optInt("send_muted_until"), now: nowMillis())
        var announcement: Announcement?
        if let text = r.optText("announcement"), let by = r.optInt("announcement_by"), let at = r.optInt("announcement_at") {
            announcement = Announcement(text: text, by: by, at: at)
        }
        return Conversation(id: try r.int("id"), type: ConversationType(rawValue: try r.text("type")) ?? .group,
                            name: r.optText("name"), lastSeq: try r.int("last_seq"), members: try await members(db, id),
                            allMuted: mute.muted, allMutedUntil: mute.until, announcement: announcement)
    }

    static func nowMillis() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    public func directConversation(between a: UserID, and b: UserID) async throws -> Conversation {
        let key = "\(min(a, b)):\(max(a, b))"
        return try await driver.write { db in
            if let r = try await db.first("SELECT id FROM conversations WHERE direct_key = $1", [.text(key)]),
               let c = try await Self.loadConversation(db, try r.int("id")) {
                return c
            }
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            guard let r = try await db.first(
                "INSERT INTO conversations (type, name, last_seq, direct_key, created_at) VALUES ('direct', NULL, 0, $1, $2) RETURNING id",
                [.text(key), .int(now)]) else { throw StorageError.corrupt("insert returned no id") }
            let id = try r.int("id")
            for u in Set([a, b]) {
                try await db.query("INSERT INTO members (conv_id, user_id, role) VALUES ($1, $2, 'member')", [.int(id), .int(u)])
            }
            guard let c = try await Self.loadConversation(db, id) else { throw StorageError.corrupt("conversation vanished") }
            return c
        }
    }

    public func createGroup(name: String, owner: UserID, members: [UserID]) async throws -> Conversation {
        try await driver.write { db in
            let now = Int64(Date().timeIntervalSince1970 * 1000)
            guard let r = try await db.first(
                "INSERT INTO conversations (type, name, last_seq, direct_key, created_at) VALUES ('group', $1, 0, NULL, $2) RETURNING id",
                [.text(name), .int(now)]) else { throw StorageError.corrupt("insert returned no id") }
            let id = try r.int("id")
            try await db.query("INSERT INTO members (conv_id, user_id, role) VALUES ($1, $2, 'owner')", [.int(id), .int(owner)])
            for u in Set(members).subtracting([owner]).sorted() {
                try await db.query("INSERT INTO members (conv_id, user_id, role) VALUES ($1, $2, 'member')", [.int(id), .int(u)])
            }
            guard let c = try await Self.loadConversation(db, id) else { throw StorageError.corrupt("conversation vanished") }
            return c
        }
    }

    public func conversation(id: ConversationID) async throws -> Conversation? {
        try await driver.read { db in try await Self.loadConversation(db, id) }
    }

    public func addMembers(conversation: ConversationID, users: [UserID], limit: Int) async throws {
        try await driver.write { db in
            let count = try await db.first("SELECT COUNT(*) AS n FROM members WHERE conv_id = $1", [.int(conversation)])?.int("n") ?? 0
            var existing = Set<UserID>()
            for r in try await db.query("SELECT user_id FROM members WHERE conv_id = $1", [.int(conversation)]) {
                existing.insert(try r.int("user_id"))
            }
            let new = Set(users).subtracting(existing).sorted()
            if Int(count) + new.count > limit {
                throw IMError(.groupFull, "the group would have \(Int(count) + new.count) members; the limit is \(limit)")
            }
            // Members join with their cursors at the current end: history is theirs to page, not to be counted unread.
            let last = try await db.first("SELECT last_seq FROM conversations WHERE id = $1", [.int(conversation)])?.int("last_seq") ?? 0
            for u in new {
                try await db.query("INSERT INTO members (conv_id, user_id, role, read_seq, delivered_seq) VALUES ($1, $2, 'member', $3, $3)",
                                   [.int(conversation), .int(u), .int(last)])
            }
        }
    }

    public func removeMember(conversation: ConversationID, user: UserID) async throws {
        try await driver.write { db in
            try await db.query("DELETE FROM members WHERE conv_id = $1 AND user_id = $2", [.int(conversation), .int(user)])
            try await db.query("DELETE FROM conversation_pins WHERE conv_id = $1 AND user_id = $2", [.int(conversation), .int(user)])
            try await db.query("DELETE FROM drafts WHERE conv_id = $1 AND user_id = $2", [.int(conversation), .int(user)])
        }
    }

    public func setRole(conversation: ConversationID, user: UserID, role: MemberRole) async throws {
        try await driver.write { db in
            try await db.query("UPDATE members SET role = $1 WHERE conv_id = $2 AND user_id = $3",
                               [.text(role.rawValue), .int(conversation), .int(user)])
        }
    }

    public func renameGroup(conversation: ConversationID, name: String) async throws {
        try await driver.write { db in
            try await db.query("UPDATE conversations SET name = $1 WHERE id = $2", [.text(name), .int(conversation)])
        }
    }

    @discardableResult
    public func dissolve(conversation: ConversationID) async throws -> [String] {
        try await driver.write { db in
            try await db.query("DELETE FROM attachment_chunks WHERE attachment_id IN (SELECT id FROM attachments WHERE conv_id = $1)", [.int(conversation)])
            let files = try await db.query("DELETE FROM attachments WHERE conv_id = $1 RETURNING id", [.int(conversation)]).map { try $0.text("id") }
            try await db.query("DELETE FROM messages WHERE conv_id = $1", [.int(conversation)])
            try await db.query("DELETE FROM message_mentions WHERE conv_id = $1", [.int(conversation)])
            try await db.query("DELETE FROM reactions WHERE conv_id = $1", [.int(conversation)])
            try await db.query("DELETE FROM conversation_pins WHERE conv_id = $1", [.int(conversation)])
            try await db.query("DELETE FROM pinned_messages WHERE conv_id = $1", [.int(conversation)])
            try await db.query("DELETE FROM group_invites WHERE conv_id = $1", [.int(conversation)])
            try await db.query("DELETE FROM drafts WHERE conv_id = $1", [.int(conversation)])
            try await db.query("DELETE FROM join_requests WHERE conv_id = $1", [.int(conversation)])
            try await db.query("DELETE FROM members WHERE conv_id = $1", [.int(conversation)])
            try await db.query("DELETE FROM conversations WHERE id = $1", [.int(conversation)])
            return files
        }
    }

    public func conversationIDs(for user: UserID) async throws -> [ConversationID] {
        try await driver.read { db in
            try await db.query("SELECT conv_id FROM members WHERE user_id = $1 ORDER BY conv_id", [.int(user)]).map { try $0.int("conv_id") }
        }
    }

    public func listGroups(offset: Int, limit: Int) async throws -> [API.AdminGroup] {
        try await driver.read { db in
            try await db.query("""
                SELECT c.id, c.name, c.last_seq, c.created_at,
                  (SELECT COUNT(*) FROM members m WHERE m.conv_id = c.id) AS n,
                  (SELECT o.user_id FROM members o WHERE o.conv_id = c.id AND o.role = 'owner' LIMIT 1) AS owner
                FROM conversations c WHERE c.type = 'group' ORDER BY c.id LIMIT $1 OFFSET $2
                """, [.int(Int64(limit)), .int(Int64(offset))]).map {
                API.AdminGroup(id: try $0.int("id"), name: $0.optText("name"), members: try $0.int("n"), owner: $0.optInt("owner"),
                               lastSeq: try $0.int("last_seq"), createdAt: try $0.int("created_at"))
            }
        }
    }

    public func summaries(for user: UserID) async throws -> [ConversationSummary] {
        try await driver.read { db in
            let rows = try await db.query("""
                SELECT c.id, c.type, c.name, c.last_seq, m.read_seq,
                  (SELECT COUNT(*) FROM messages x WHERE x.conv_id = c.id AND x.seq > m.read_seq AND x.sender <> m.user_id
                     AND x.kind IN ('text', 'custom', 'attachment') AND x.recalled = 0) AS unread,
                  (SELECT COUNT(DISTINCT mm.seq) FROM message_mentions mm JOIN messages x ON x.conv_id = mm.conv_id AND x.seq = mm.seq
                     WHERE mm.conv_id = c.id AND mm.user_id IN (0, m.user_id) AND mm.seq > m.read_seq AND x.sender <> m.user_id
                     AND x.recalled = 0) AS unread_mentions,
                  (SELECT o.user_id FROM members o WHERE o.conv_id = c.id AND o.user_id <> m.user_id ORDER BY o.user_id LIMIT 1) AS peer,
                  (SELECT p.pinned_at FROM conversation_pins p WHERE p.user_id = m.user_id AND p.conv_id = c.id) AS pinned_at,
                  m.muted_until, d.text AS draft_text, d.reply_to AS draft_reply_to, d.updated_at AS draft_at
                FROM members m JOIN conversations c ON c.id = m.conv_id
                  LEFT JOIN drafts d ON d.user_id = m.user_id AND d.conv_id = m.conv_id
                WHERE m.user_id = $1
                """, [.int(user)])
            var out: [ConversationSummary] = []
            let now = Self.nowMillis()
            for r in rows {
                let id = try r.int("id")
                let last = try await Self.messages(db, try await db.query(
                    "SELECT \(Self.messageColumns) FROM messages WHERE conv_id = $1 AND kind IN ('text', 'custom', 'attachment', 'system') ORDER BY seq DESC LIMIT 1",
                    [.int(id)])).first
                let type = ConversationType(rawValue: try r.text("type")) ?? .group
                out.append(ConversationSummary(id: id, type: type, name: r.optText("name"), lastSeq: try r.int("last_seq"),
                                               readSeq: try r.int("read_seq"), unread: try r.int("unread"),
                                               unreadMentions: try r.int("unread_mentions"), lastMessage: last,
                                               peer: type == .direct ? (r.optInt("peer") ?? user) : nil, pinnedAt: r.optInt("pinned_at"),
                                               muted: Mute.wire(r.optInt("muted_until"), now: now).muted,
                                               mutedUntil: Mute.wire(r.optInt("muted_until"), now: now).until,
                                               draft: try r.optText("draft_text").map {
                                                   Draft(conversation: id, text: $0, replyTo: r.optInt("draft_reply_to"), updatedAt: try r.int("draft_at"))
                                               }))
            }
            // Pinned first (latest pin first), then the most recently active.
            return out.sorted { ($0.pinnedAt ?? -1, $0.lastMessage?.ts ?? 0, $0.id) > ($1.pinnedAt ?? -1, $1.lastMessage?.ts ?? 0, $1.id) }
        }
    }

    public func setConversationPinned(user: UserID, conversation: ConversationID, pinnedAt: Int64?) async throws {
        try await driver.write { db in
            try await db.query("DELETE FROM conversation_pins WHERE user_id = $1 AND conv_id = $2", [.int(user), .int(conversation)])
            if let pinnedAt {
                try await db.query("INSERT INTO conversation_pins (user_id, conv_id, pinned_at) VALUES ($1, $2, $3)",
                                   [.int(user), .int(conversation), .int(pinnedAt)])
            }
        }
    }

    public func setMessagePinned(conversation: ConversationID, seq: Int64, by user: UserID, pinnedAt: Int64?) async throws -> Bool {
        try await driver.write { db in
            guard let pinnedAt else {
                return !(try await db.query("DELETE FROM pinned_messages WHERE conv_id = $1 AND seq = $2 RETURNING seq",
                                            [.int(conversation), .int(seq)])).isEmpty
            }
            guard try await db.first(
                "SELECT seq FROM messages WHERE conv_id = $1 AND seq = $2 AND recalled = 0 AND kind IN ('text', 'custom', 'attachment')",
                [.int(conversation), .int(seq)]) != nil else { throw IMError.notFound("no such message to pin") }
            return !(try await db.query("""
                INSERT INTO pinned_messages (conv_id, seq, pinned_by, pinned_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING seq
                """, [.int(conversation), .int(seq), .int(user), .int(pinnedAt)])).isEmpty
        }
    }

    public func pinnedMessages(conversation: ConversationID) async throws -> [PinnedMessage] {
        try await driver.read { db in
            let pins = try await db.query("SELECT seq, pinned_by, pinned_at FROM pinned_messages WHERE conv_id = $1 ORDER BY pinned_at DESC, seq DESC",
                                          [.int(conversation)])
            var out: [PinnedMessage] = []
            for p in pins {
                let rows = try await db.query("SELECT \(Self.messageColumns) FROM messages WHERE conv_id = $1 AND seq = $2",
                                              [.int(conversation), .int(try p.int("seq"))])
                guard let m = try await Self.messages(db, rows).first else { continue }
                out.append(PinnedMessage(message: m, pinnedBy: try p.int("pinned_by"), pinnedAt: try p.int("pinned_at")))
            }
            return out
        }
    }

    // MARK: Messages

    static let messageColumns = "conv_id, seq, sender, cid, kind, text, data, attachment, target, ts, edited_at, recalled, reply_to, mentions, mention_all, forwarded"

    static func message(_ r: SQLRow) throws -> Message {
        let decoder = JSONDecoder()
        let data = try r.optText("data").map { try decoder.decode(JSONValue.self, from: Data($0.utf8)) }
        let attachment = try r.optText("attachment").map { try decoder.decode(AttachmentRef.self, from: Data($0.utf8)) }
        let mentions = try r.optText("mentions").map { try decoder.decode([UserID].self, from: Data($0.utf8)) }
        let forwarded = try r.optText("forwarded").map { try decoder.decode(ForwardedFrom.self, from: Data($0.utf8)) }
        return Message(conversation: try r.int("conv_id"), seq: try r.int("seq"), sender: try r.int("sender"), cid: try r.text("cid"),
                       kind: MessageKind(rawValue: try r.text("kind")) ?? .custom, text: r.optText("text"), data: data,
                       attachment: attachment, target: r.optInt("target"), ts: try r.int("ts"), editedAt: r.optInt("edited_at"),
                       recalled: r.bool("recalled") ? true : nil, replyTo: r.optInt("reply_to"), mentions: mentions,
                       mentionAll: r.bool("mention_all") ? true : nil, forwardedFrom: forwarded)
    }

    /// Messages read from rows of one conversation, with each one's current reactions (one range query).
    static func messages(_ db: any SQLExecutor, _ rows: [SQLRow]) async throws -> [Message] {
        var out = try rows.map(message)
        guard let conv = out.first?.conversation, let lo = out.map(\.seq).min(), let hi = out.map(\.seq).max() else { return out }
        let reactions = try await db.query(
            "SELECT seq, emoji, user_id FROM reactions WHERE conv_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq, reaction_seq",
            [.int(conv), .int(lo), .int(hi)])
        guard !reactions.isEmpty else { return out }
        var bySeq: [Int64: [Reaction]] = [:]
        for r in reactions {
            let seq = try r.int("seq"), emoji = try r.text("emoji"), user = try r.int("user_id")
            var list = bySeq[seq] ?? []
            if let i = list.firstIndex(where: { $0.emoji == emoji }) { list[i].users.append(user) } else { list.append(Reaction(emoji: emoji, users: [user])) }
            bySeq[seq] = list
        }
        for i in out.indices where out[i].conversation == conv {
            if let r = bySeq[out[i].seq] { out[i].reactions = Reaction.ordered(r) }
        }
        return out
    }

    static func json<T: Encodable>(_ v: T?) -> SQLValue {
        guard let v, let d = try? JSONEncoder().encode(v) else { return .null }
        return .text(String(decoding: d, as: UTF8.self))
    }

    /// Appends a batch inside an open transaction with a handful of statements per batch rather than per message:
    /// one dedupe lookup, one seq reservation per conversation, multi-row inserts, one cursor update per sender.
    /// Domain failures are returned, not thrown, so they don't abort the batch they are part of.
    /// `reserved`, if given, is called once the batch holds its conversations' seqs (their rows locked until the
    /// commit): a transaction begun after it that appends to one of them waits for this one's commit, so it gets
    /// later seqs (how the committer overlaps PostgreSQL commits).
    static func appendMany(_ db: any SQLExecutor, _ batch: [NewMessage], now: Int64, outbox: Bool = true,
                           dialect: SQLDialect = .sqlite,
                           reserved: (@Sendable () -> Void)? = nil) async throws -> [Result<AppendResult, IMError>] {
        var out = [Result<AppendResult, IMError>?](repeating: nil, count: batch.count)

        // 1. Duplicates of stored messages, and repeats within the batch.
        var stored: [String: Message] = [:]
        func key(_ sender: UserID, _ cid: String) -> String { "\(sender):\(cid)" }
        for chunk in stride(from: 0, to: batch.count, by: BatchSQL.dedupe.chunk).map({ Array(batch[$0..<min($0 + BatchSQL.dedupe.chunk, batch.count)]) }) {
            var binds: [SQLValue] = []
            binds.reserveCapacity(chunk.count * 2)
            for m in chunk { binds += [.int(m.sender), .text(m.cid)] }
            let rows = try await db.query(BatchSQL.dedupe.text(chunk.count), binds)
            for r in rows { let m = try message(r); stored[key(m.sender, m.cid)] = m }
        }
        var firstInBatch: [String: Int] = [:]
        var fresh: [Int] = []
        for (i, m) in batch.enumerated() {
            let k = key(m.sender, m.cid)
            if let s = stored[k] {
                out[i] = .success(AppendResult(message: s, duplicate: true))
            } else if firstInBatch[k] != nil {
                continue   // answered below, once the first copy has its seq
            } else {
                firstInBatch[k] = i
                fresh.append(i)
            }
        }

        // 2. Recalls, edits and reactions change their target first; a missing target fails just that message.
        var valid: [Int] = []
        for i in fresh {
            let m = batch[i]
            if let target = m.target, m.kind == .reaction {
                guard try await db.first(
                    "SELECT seq FROM messages WHERE conv_id = $1 AND seq = $2 AND recalled = 0 AND kind IN ('text', 'custom', 'attachment')",
                    [.int(m.conversation), .int(target)]) != nil, let emoji = m.text else {
                    out[i] = .failure(.notFound("no such message to react to")); continue
                }
                _ = emoji   // applied in step 4, once the reaction has its own seq
                valid.append(i)
                continue
            }
            if let target = m.target, m.kind == .recall || m.kind == .edit {
                let sql = m.kind == .recall
                    ? "UPDATE messages SET recalled = 1, text = NULL, data = NULL, attachment = NULL, mentions = NULL, mention_all = 0, forwarded = NULL WHERE conv_id = $1 AND seq = $2 RETURNING seq"
                    // A recall may commit between the edit's checks and this batch: never write text back into it.
                    // An edit with `data` (only the server writes one: the assistant's streaming state) replaces the
                    // target's data too; a person's edit has none and leaves it.
                    : "UPDATE messages SET text = $3, edited_at = $4, data = COALESCE($5, data) WHERE conv_id = $1 AND seq = $2 AND recalled = 0 RETURNING seq"
                let binds: [SQLValue] = m.kind == .recall ? [.int(m.conversation), .int(target)]
                    : [.int(m.conversation), .int(target), SQLValue(m.text), .int(now), json(m.data)]
                if try await db.query(sql, binds).isEmpty { out[i] = .failure(.notFound("no such message")); continue }
                if m.kind == .recall {
                    // A recalled message keeps no reactions and mentions no one.
                    try await db.query("DELETE FROM reactions WHERE conv_id = $1 AND seq = $2", [.int(m.conversation), .int(target)])
                    try await db.query("DELETE FROM message_mentions WHERE conv_id = $1 AND seq = $2", [.int(m.conversation), .int(target)])
                    try await db.query("DELETE FROM pinned_messages WHERE conv_id = $1 AND seq = $2", [.int(m.conversation), .int(target)])
                }
            }
            valid.append(i)
        }

        // 3. Reserve a block of seqs per conversation, in batch order.
        var byConversation: [ConversationID: [Int]] = [:]
        var order: [ConversationID] = []
        for i in valid {
            let c = batch[i].conversation
            if byConversation[c] == nil { order.append(c) }
            byConversation[c, default: []].append(i)
        }
        // One statement for all of the batch's conversations: every statement is a round trip to the database's
        // thread (or server), and a batch spans up to max_batch conversations.
        var reservedSeqs: [ConversationID: Int64] = [:]
        for chunk in stride(from: 0, to: order.count, by: BatchSQL.reserve.chunk).map({ Array(order[$0..<min($0 + BatchSQL.reserve.chunk, order.count)]) }) {
            var binds: [SQLValue] = []
            binds.reserveCapacity(chunk.count * 2)
            for c in chunk { binds += [.int(c), .int(Int64(byConversation[c]!.count))] }
            for r in try await db.query(BatchSQL.reserve.text(chunk.count), binds) { reservedSeqs[try r.int("id")] = try r.int("last_seq") }
        }
        reserved?()
        var rows: [(Int, Message)] = []
        for c in order {
            let items = byConversation[c]!
            guard let last = reservedSeqs[c] else {
                for i in items { out[i] = .failure(.notFound("no such conversation")) }
                continue
            }
            var seq = last - Int64(items.count)
            for i in items {
                seq += 1
                let m = batch[i]
                rows.append((i, Message(conversation: c, seq: seq, sender: m.sender, cid: m.cid, kind: m.kind, text: m.text,
                                        data: m.data, attachment: m.attachment, target: m.target, ts: now, replyTo: m.replyTo,
                                        mentions: m.mentions, mentionAll: m.mentionAll == true ? true : nil, forwardedFrom: m.forwardedFrom)))
            }
        }

        // A sender has read everything up to what they send (step 5).
        var newest: [String: (ConversationID, UserID, Int64)] = [:]
        for (_, m) in rows { newest[key(m.conversation, String(m.sender))] = (m.conversation, m.sender, m.seq) }
        let cursors = Array(newest.values)
        func insertBinds(_ chunk: ArraySlice<(Int, Message)>) -> [SQLValue] {
            var binds: [SQLValue] = []
            binds.reserveCapacity(chunk.count * 14)
            for (_, m) in chunk {
                binds += [.int(m.conversation), .int(m.seq), .int(m.sender), .text(m.cid), .text(m.kind.rawValue), SQLValue(m.text),
                          json(m.data), json(m.attachment), SQLValue(m.target), .int(now),
                          SQLValue(m.replyTo), json(m.mentions), SQLValue(m.mentionAll == true), json(m.forwardedFrom)]
            }
            return binds
        }
        // 4. Insert in multi-row statements. On PostgreSQL, where every statement is a round trip to the server, a
        // batch that fits one statement inserts, moves the cursors and reads the webhook subscriptions in one.
        var subscriptions: [SQLRow]?
        if dialect == .postgres, outbox, (1...BatchSQL.insert.chunk).contains(rows.count) {
            var binds = insertBinds(rows[...])
            for (c, u, seq) in cursors { binds += [.int(c), .int(u), .int(seq)] }
            subscriptions = try await db.query(BatchSQL.insertWithCursors(rows: rows.count, cursors: cursors.count), binds)
        } else {
            for start in stride(from: 0, to: rows.count, by: BatchSQL.insert.chunk) {
                let chunk = rows[start..<min(start + BatchSQL.insert.chunk, rows.count)]
                try await db.query(BatchSQL.insert.text(chunk.count), insertBinds(chunk))
            }
        }
        // One mention row per mentioned user (0 for @all), for the unread-mention counts.
        let mentionRows = rows.flatMap { _, m in
            Set((m.mentions ?? []) + (m.mentionAll == true ? [0] : [])).sorted().map { (m.conversation, $0, m.seq) }
        }
        for chunk in stride(from: 0, to: mentionRows.count, by: BatchSQL.mentions.chunk).map({ Array(mentionRows[$0..<min($0 + BatchSQL.mentions.chunk, mentionRows.count)]) }) {
            var binds: [SQLValue] = []
            binds.reserveCapacity(chunk.count * 3)
            for (c, u, seq) in chunk { binds += [.int(c), .int(u), .int(seq)] }
            try await db.query(BatchSQL.mentions.text(chunk.count), binds)
        }
        // Reactions change their target's state in seq order. A recall earlier in this batch has already run, so a
        // reaction checked before it finds the target recalled here and changes nothing.
        for (_, m) in rows where m.kind == .reaction {
            guard let target = m.target, let emoji = m.text else { continue }
            let binds: [SQLValue] = [.int(m.conversation), .int(target), .text(emoji), .int(m.sender)]
            if Reaction.isRemoval(m.data) {
                try await db.query("DELETE FROM reactions WHERE conv_id = $1 AND seq = $2 AND emoji = $3 AND user_id = $4", binds)
            } else {
                try await db.query("""
                    INSERT INTO reactions (conv_id, seq, emoji, user_id, reaction_seq)
                    SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM messages WHERE conv_id = $1 AND seq = $2 AND recalled = 0)
                    ON CONFLICT DO NOTHING
                    """, binds + [.int(m.seq)])
            }
        }
        for (i, m) in rows { out[i] = .success(AppendResult(message: m, duplicate: false)) }

        // 5. The senders' cursors, unless step 4 moved them.
        for chunk in stride(from: 0, to: subscriptions == nil ? cursors.count : 0, by: BatchSQL.cursor.chunk).map({ Array(cursors[$0..<min($0 + BatchSQL.cursor.chunk, cursors.count)]) }) {
            var binds: [SQLValue] = []
            binds.reserveCapacity(chunk.count * 3)
            for (c, u, seq) in chunk { binds += [.int(c), .int(u), .int(seq)] }
            try await db.query(BatchSQL.cursor.text(chunk.count), binds)
        }

        // Webhooks for these messages commit with them, or not at all.
        if outbox { try await WebhookOutbox.record(db, rows.map(\.1), now: now, subscriptions: subscriptions) }

        // Repeats within the batch get the first copy's answer.
        for (i, m) in batch.enumerated() where out[i] == nil {
            guard let first = firstInBatch[key(m.sender, m.cid)], let r = out[first] else { continue }
            out[i] = r.map { AppendResult(message: $0.message, duplicate: true) }
        }
        return out.map { $0 ?? .failure(IMError(.internal, "message was not processed")) }
    }

    public func append(_ messages: [NewMessage]) async throws -> [Result<AppendResult, IMError>] {
        var tickets: [AppendTicket] = []
        for m in messages { tickets.append(committer.submit(m)) }
        var out: [Result<AppendResult, IMError>] = []
        for t in tickets { out.append(try await t.result()) }
        return out
    }

    /// Appends `messages` in one transaction; if that fails as a whole (a constraint race, say), each is retried
    /// in its own transaction so one bad message cannot sink the others.
    /// `beforeRetry` runs before those retries (the committer lets later overlapping commits end first).
    static func appendBatch(_ driver: any SQLDriver, _ messages: [NewMessage], now: Int64, outbox: Bool = true,
                            reserved: (@Sendable () -> Void)? = nil,
                            beforeRetry: (@Sendable () async -> Void)? = nil) async throws -> [Result<AppendResult, IMError>] {
        do {
            return try await driver.write { db in
                try await appendMany(db, messages, now: now, outbox: outbox, dialect: driver.dialect, reserved: reserved)
            }
        } catch let e as StorageError {
            throw e
        } catch where messages.count > 1 || isConstraintRace(error) {
            await beforeRetry?()
            var out: [Result<AppendResult, IMError>] = []
            for m in messages {
                do {
                    out.append(try await driver.write { db in
                        try await appendMany(db, [m], now: now, outbox: outbox, dialect: driver.dialect)
                    }[0])
                } catch {
                    // A concurrent identical send won the unique index: answer with the stored original.
                    if let row = try? await driver.read({ db in
                        try await db.first("SELECT \(messageColumns) FROM messages WHERE sender = $1 AND cid = $2", [.int(m.sender), .text(m.cid)])
                    }) {
                        out.append(.success(AppendResult(message: try message(row), duplicate: true)))
                    } else {
                        throw error
                    }
                }
            }
            return out
        }
    }

    static func isConstraintRace(_ error: any Error) -> Bool {
        let text = String(describing: error).lowercased()
        return text.contains("unique") || text.contains("constraint") || text.contains("23505")
    }

    public func messages(conversation: ConversationID, after: Int64, limit: Int) async throws -> [Message] {
        try await driver.read { db in
            try await Self.messages(db, try await db.query("SELECT \(Self.messageColumns) FROM messages WHERE conv_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                                                          [.int(conversation), .int(after), .int(Int64(limit))]))
        }
    }

    public func messages(conversation: ConversationID, before: Int64, limit: Int) async throws -> [Message] {
        try await driver.read { db in
            try await Self.messages(db, try await db.query("SELECT \(Self.messageColumns) FROM messages WHERE conv_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
                                                          [.int(conversation), .int(before), .int(Int64(limit))]))
        }
    }

    public func message(conversation: ConversationID, seq: Int64) async throws -> Message? {
        try await driver.read { db in
            try await Self.messages(db, try await db.query("SELECT \(Self.messageColumns) FROM messages WHERE conv_id = $1 AND seq = $2",
                                                          [.int(conversation), .int(seq)])).first
        }
    }

    public func advanceCursor(conversation: ConversationID, user: UserID, kind: ReceiptKind, seq: Int64) async throws -> Int64 {
        try await driver.write { db in
            guard let last = try await db.first("SELECT last_seq FROM conversations WHERE id = $1", [.int(conversation)])?.int("last_seq") else {
                throw IMError.notFound()
            }
            let target = min(seq, last)
            if kind == .read {
                try await db.query("UPDATE members SET read_seq = $3 WHERE conv_id = $1 AND user_id = $2 AND read_seq < $3",
                                   [.int(conversation), .int(user), .int(target)])
            }
            // Read implies delivered.
            try await db.query("UPDATE members SET delivered_seq = $3 WHERE conv_id = $1 AND user_id = $2 AND delivered_seq < $3",
                               [.int(conversation), .int(user), .int(target)])
            guard let r = try await db.first("SELECT read_seq, delivered_seq FROM members WHERE conv_id = $1 AND user_id = $2",
                                             [.int(conversation), .int(user)]) else { throw IMError.notFound() }
            return try r.int(kind == .read ? "read_seq" : "delivered_seq")
        }
    }

    public func search(_ q: MessageSearch) async throws -> [Message] {
        guard !q.terms.isEmpty else { return [] }
        var binds: [SQLValue] = []
        func bind(_ v: SQLValue) -> String { binds.append(v); return "$\(binds.count)" }
        func likePattern(_ term: String) -> SQLValue {
            var escaped = ""
            for c in term { if c == "%" || c == "_" || c == "\\" { escaped.append("\\") }; escaped.append(c) }
            return .text("%" + escaped + "%")
        }
        var conditions = ["m.recalled = 0", "m.kind IN ('text', 'attachment')", "m.text IS NOT NULL"]
        // Without a user: every conversation (the compliance search).
        if let u = q.user { conditions.insert("EXISTS (SELECT 1 FROM members w WHERE w.conv_id = m.conv_id AND w.user_id = \(bind(.int(u))))", at: 0) }
        if let c = q.conversation { conditions.append("m.conv_id = \(bind(.int(c)))") }
        if let s = q.sender { conditions.append("m.sender = \(bind(.int(s)))") }
        if let f = q.from { conditions.append("m.ts >= \(bind(.int(f)))") }
        if let t = q.to { conditions.append("m.ts < \(bind(.int(t)))") }
        if let b = q.before {
            let ts = bind(.int(b.ts)), c = bind(.int(b.conversation)), s = bind(.int(b.seq))
            conditions.append("(m.ts < \(ts) OR (m.ts = \(ts) AND (m.conv_id < \(c) OR (m.conv_id = \(c) AND m.seq < \(s)))))")
        }
        var from = "messages m"
        switch driver.dialect {
        case .sqlite:
            // What the commits logged since the last indexing is indexed first (migration 14).
            try await searchIndex?.indexQueued()
            let table = try await searchIndex?.usesIndexFile() == true ? SearchIndexQueue.indexTable : "message_fts"
            // Terms of 3+ characters go to the trigram index, which then drives the query; shorter ones (a
            // two-character Chinese word, say) are checked with LIKE on the candidates, or on every readable
            // message when no term is long enough.
            let long = q.terms.filter { $0.unicodeScalars.count >= 3 }
            if !long.isEmpty {
                let match = long.map { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }.joined(separator: " AND ")
                from = "\(table) f JOIN messages m ON m.conv_id = f.rowid / 4294967296 AND m.seq = f.rowid % 4294967296"
                conditions.insert("f.text MATCH \(bind(.text(match)))", at: 0)
            }
            for t in q.terms where t.unicodeScalars.count < 3 { conditions.append("m.text LIKE \(bind(likePattern(t))) ESCAPE '\\'") }
        case .postgres:
            for t in q.terms { conditions.append("m.text ILIKE \(bind(likePattern(t))) ESCAPE '\\'") }
        }
        let sql = "SELECT \(Self.messageColumns.split(separator: ",").map { "m." + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", ")) FROM \(from) WHERE "
            + conditions.joined(separator: " AND ") + " ORDER BY m.ts DESC, m.conv_id DESC, m.seq DESC LIMIT \(bind(.int(Int64(max(1, q.limit)))))"
        let values = binds
        return try await driver.read { db in try await db.query(sql, values).map(Self.message) }
    }

    public func messageCount() async throws -> Int64 {
        try await driver.read { db in try await db.first("SELECT COUNT(*) AS n FROM messages")?.int("n") ?? 0 }
    }

    // MARK: Attachments

    public func insertAttachment(_ a: AttachmentRecord) async throws {
        try await driver.write { db in
            try await db.query(
                "INSERT INTO attachments (id, conv_id, uploader, name, content_type, size, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [.text(a.ref.id), .int(a.conversation), .int(a.uploader), .text(a.ref.name), .text(a.ref.contentType),
                 .int(a.ref.size), .int(a.createdAt)])
        }
    }

    public func attachment(id: String) async throws -> AttachmentRecord? {
        try await driver.read { db in
            guard let r = try await db.first(
                "SELECT id, conv_id, uploader, name, content_type, size, created_at FROM attachments WHERE id = $1", [.text(id)]) else { return nil }
            return AttachmentRecord(ref: AttachmentRef(id: try r.text("id"), name: try r.text("name"), contentType: try r.text("content_type"),
                                                       size: try r.int("size")),
                                    conversation: try r.int("conv_id"), uploader: try r.int("uploader"), createdAt: try r.int("created_at"))
        }
    }

    public func attachmentBytes(uploader: UserID) async throws -> Int64 {
        try await driver.read { db in
            try await db.first("SELECT COALESCE(SUM(size), 0) AS n FROM attachments WHERE uploader = $1", [.int(uploader)])?.int("n") ?? 0
        }
    }

    public func unreferencedAttachments(createdBefore: Int64, limit: Int) async throws -> [String] {
        // A message refers to its attachment by the JSON of the reference, which holds `"id":"…"`.
        try await driver.read { db in
            try await db.query("""
                SELECT a.id FROM attachments a WHERE a.created_at < $1 AND NOT EXISTS (
                  SELECT 1 FROM messages m WHERE m.conv_id = a.conv_id AND m.attachment IS NOT NULL
                    AND m.attachment LIKE '%"id":"' || a.id || '"%')
                ORDER BY a.created_at LIMIT $2
                """, [.int(createdBefore), .int(Int64(limit))]).map { try $0.text("id") }
        }
    }

    public func deleteAttachments(ids: [String]) async throws {
        guard !ids.isEmpty else { return }
        try await driver.write { db in
            for id in ids {
                try await db.query("DELETE FROM attachments WHERE id = $1", [.text(id)])
                try await db.query("DELETE FROM attachment_chunks WHERE attachment_id = $1", [.text(id)])
            }
        }
    }

    public func putAttachmentChunk(id: String, seq: Int, data: [UInt8], createdAt: Int64) async throws {
        try await driver.write { db in
            try await db.query("INSERT INTO attachment_chunks (attachment_id, seq, data, created_at) VALUES ($1, $2, $3, $4)",
                               [.text(id), .int(Int64(seq)), .bytes(data), .int(createdAt)])
        }
    }

    public func attachmentChunk(id: String, seq: Int) async throws -> [UInt8]? {
        try await driver.read { db in
            try await db.first("SELECT data FROM attachment_chunks WHERE attachment_id = $1 AND seq = $2",
                               [.text(id), .int(Int64(seq))])?.bytes("data")
        }
    }

    public func attachmentChunkTotals(id: String) async throws -> (count: Int, bytes: Int64) {
        try await driver.read { db in
            let r = try await db.first("SELECT COUNT(*) AS n, COALESCE(SUM(LENGTH(data)), 0) AS b FROM attachment_chunks WHERE attachment_id = $1",
                                       [.text(id)])
            return (Int(r?.optInt("n") ?? 0), r?.optInt("b") ?? 0)
        }
    }

    public func copyAttachmentChunks(from: String, to: String, createdAt: Int64) async throws -> (count: Int, bytes: Int64) {
        try await driver.write { db in
            try await db.query("INSERT INTO attachment_chunks (attachment_id, seq, data, created_at) SELECT $2, seq, data, $3 FROM attachment_chunks WHERE attachment_id = $1",
                               [.text(from), .text(to), .int(createdAt)])
        }
        return try await attachmentChunkTotals(id: to)
    }

    public func deleteOrphanAttachmentChunks(createdBefore: Int64) async throws -> Int {
        try await driver.write { db in
            try await db.query("""
                DELETE FROM attachment_chunks WHERE created_at < $1
                  AND NOT EXISTS (SELECT 1 FROM attachments a WHERE a.id = attachment_chunks.attachment_id)
                  RETURNING seq
                """, [.int(createdBefore)]).count
        }
    }

    // MARK: Health

    public func ping() async throws {
        _ = try await driver.read { db in try await db.query("SELECT 1 AS one") }
    }

    public func sizeInBytes() async throws -> Int64 { try await driver.sizeInBytes() }

    public func close() async throws {
        await committer.drain()
        try await driver.close()
    }
}

/// The SQL text of a group commit's multi-row statements, by how many rows they carry. The text is built once per
/// row count (for small counts and for a full chunk, the counts that repeat) and kept: building it for every commit
/// was a share of the SQLite writer's CPU, and the same text lets the writer find its prepared statement.
/// Binds are `$1`, `$2`, … row after row, in the order the callers append them.
enum BatchSQL: Int, CaseIterable {
    case dedupe, reserve, insert, mentions, cursor

    /// The most rows one statement carries.
    var chunk: Int {
        switch self {
        case .dedupe, .insert: 200
        case .reserve: 500
        case .mentions, .cursor: 300
        }
    }

    private static let kept = LockedBox<[Int: String]>([:])

    /// PostgreSQL only: the insert of `rows` messages, the move of `cursors` senders' cursors (`.cursor`'s update,
    /// its binds after the insert's) and the read of the enabled webhook subscriptions, as one statement (data-
    /// modifying CTEs run once, whatever the outer query reads). Kept for the small batches that repeat.
    static func insertWithCursors(rows: Int, cursors: Int) -> String {
        let keep = rows <= 64
        let key = Int.max - (rows << 16 | cursors)
        if keep, let s = kept.withLock({ $0[key] }) { return s }
        let base = rows * 14
        let tuples = (0..<cursors).map { r in "($\(base + 3 * r + 1), $\(base + 3 * r + 2), $\(base + 3 * r + 3))" }
        let s = """
            WITH v (conv_id, user_id, seq) AS (VALUES \(tuples.joined(separator: ", "))),
            moved AS (UPDATE members SET read_seq = v.seq, delivered_seq = v.seq FROM v
                      WHERE members.conv_id = v.conv_id AND members.user_id = v.user_id AND members.read_seq < v.seq),
            inserted AS (\(BatchSQL.insert.text(rows)))
            SELECT id, owner_bot, events, conv_id FROM webhook_subscriptions WHERE enabled = 1
            """
        if keep { kept.withLock { $0[key] = s } }
        return s
    }

    func text(_ rows: Int) -> String {
        let keep = rows <= 64 || rows == chunk
        let key = rawValue << 32 | rows
        if keep, let s = Self.kept.withLock({ $0[key] }) { return s }
        let s = build(rows)
        if keep { Self.kept.withLock { $0[key] = s } }
        return s
    }

    private func build(_ n: Int) -> String {
        func tuples(_ width: Int) -> String {
            (0..<n).map { r in "(" + (1...width).map { "$\(r * width + $0)" }.joined(separator: ", ") + ")" }.joined(separator: ", ")
        }
        switch self {
        case .dedupe:
            return "SELECT \(SQLStore.messageColumns) FROM messages WHERE (sender, cid) IN (VALUES \(tuples(2)))"
        case .reserve:
            let cases = (0..<n).map { "WHEN $\(2 * $0 + 1) THEN $\(2 * $0 + 2)" }.joined(separator: " ")
            let ids = (0..<n).map { "$\(2 * $0 + 1)" }.joined(separator: ", ")
            return "UPDATE conversations SET last_seq = last_seq + CASE id \(cases) END WHERE id IN (\(ids)) RETURNING id, last_seq"
        case .insert:
            // 14 binds a row; edited_at and recalled are NULL and 0.
            let rows = (0..<n).map { r in
                let b = r * 14
                return "(" + (1...10).map { "$\(b + $0)" }.joined(separator: ", ") + ", NULL, 0, "
                    + (11...14).map { "$\(b + $0)" }.joined(separator: ", ") + ")"
            }
            return "INSERT INTO messages (\(SQLStore.messageColumns)) VALUES \(rows.joined(separator: ", "))"
        case .mentions:
            return "INSERT INTO message_mentions (conv_id, user_id, seq) VALUES \(tuples(3))"
        case .cursor:
            return """
                WITH v (conv_id, user_id, seq) AS (VALUES \(tuples(3)))
                UPDATE members SET read_seq = v.seq, delivered_seq = v.seq FROM v
                WHERE members.conv_id = v.conv_id AND members.user_id = v.user_id AND members.read_seq < v.seq
                """
        }
    }
}
