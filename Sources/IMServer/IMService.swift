import Foundation
import IMCore
import IMStorage
import Logging

/// The IM domain rules, shared by the REST API and the WebSocket gateway.
public final class IMService: Sendable {
    let storage: any Storage
    let hub: Hub
    let attachments: Attachments
    let config: ServerConfig
    let logger: Logger

    /// Sends per bot, over all its connections and the REST send together.
    let botSends: RateLimiter
    /// The operator's word list (IMService+Moderation.swift).
    let moderation: ContentModeration
    /// The external moderation service, when `moderation.webhook_url` is set.
    let moderationHook: ModerationHook?
    let metrics: ServerMetrics?

    init(storage: any Storage, hub: Hub, attachments: Attachments, config: ServerConfig, moderationHook: ModerationHook? = nil,
         metrics: ServerMetrics? = nil, logger: Logger) {
        self.storage = storage; self.hub = hub; self.attachments = attachments; self.config = config; self.logger = logger
        self.moderationHook = moderationHook; self.metrics = metrics
        botSends = RateLimiter(perMinute: config.bots.sendsPerMinute, burst: config.bots.sendBurst)
        moderation = ContentModeration(config: config.moderation, logger: logger)
    }

    /// A bot over its own rate is answered `rate_limited` with the wait (a person's sends are limited per connection).
    func checkBotSendRate(_ bot: UserID) throws {
        if let wait = botSends.take("bot:\(bot)") {
            throw RateLimited(message: "this bot sends more than \(config.bots.sendsPerMinute) messages a minute; slow down",
                              retryAfter: (wait * 1000).rounded(.up) / 1000)
        }
    }

    // MARK: Access checks

    /// The caller's role in `conv`; a non-member gets the same answer as a missing conversation.
    func requireMember(_ user: UserID, _ conv: ConversationID) async throws -> MemberRole {
        guard let role = try await hub.members(of: conv)[user] else {
            throw IMError.notFound("no such conversation")
        }
        return role
    }

    func requireGroup(_ conv: ConversationID) async throws -> Conversation {
        guard let c = try await storage.conversation(id: conv) else { throw IMError.notFound("no such conversation") }
        guard c.type == .group else { throw IMError.invalid("this is a direct conversation, not a group") }
        return c
    }

    func isBlocked(between a: UserID, and b: UserID) async throws -> Bool {
        if try await hub.blocked(by: b).contains(a) { return true }
        return try await hub.blocked(by: a).contains(b)
    }

    // MARK: Sends

    /// Validates a send and turns it into a message to store.
    func prepare(_ f: ClientFrame.Send, from user: UserID) async throws -> NewMessage {
        if let e = Validation.clientID(f.cid) { throw e }
        switch f.kind {
        case .text:
            guard let t = f.text, !t.isEmpty else { throw IMError.invalid("a text message needs non-empty text") }
            guard t.utf8.count <= config.limits.textBytes else { throw IMError(.tooLarge, "text is longer than \(config.limits.textBytes) bytes") }
        case .custom:
            guard f.data != nil else { throw IMError.invalid("a custom message needs data") }
        case .attachment:
            guard f.attachment != nil else { throw IMError.invalid("an attachment message needs an attachment id") }
        case .system, .recall, .edit, .reaction:
            throw IMError.invalid("kind '\(f.kind.rawValue)' cannot be sent; use the recall, edit or react frames")
        }
        try await checkNotMuted(user, f.conv, role: try await requireMember(user, f.conv))
        try await checkDirectBlock(conv: f.conv, sender: user)
        var attachment: AttachmentRef?
        if let id = f.attachment {
            guard let rec = try await storage.attachment(id: id), rec.conversation == f.conv else {
                throw IMError.notFound("no such attachment in this conversation")
            }
            attachment = rec.ref
        }
        let text = try await moderated(f.text, from: user, in: f.conv)
        let (mentions, mentionAll) = try await checkMentions(f, from: user)
        if let replyTo = f.replyTo {
            guard let original = try await storage.message(conversation: f.conv, seq: replyTo), MessageKind.content.contains(original.kind),
                  original.recalled != true else {
                throw IMError.notFound("no message \(replyTo) to reply to in this conversation (it may have been recalled)")
            }
        }
        return NewMessage(conversation: f.conv, sender: user, cid: f.cid, kind: f.kind, text: text, data: f.data, attachment: attachment,
                          replyTo: f.replyTo, mentions: mentions, mentionAll: mentionAll)
    }

    /// Mentions must name members of the conversation; `@all` is for groups, and only their owner and admins.
    func checkMentions(_ f: ClientFrame.Send, from user: UserID) async throws -> ([UserID]?, Bool?) {
        let users = Array(Set(f.mentions ?? [])).sorted()
        guard !users.isEmpty || f.mentionAll == true else { return (nil, nil) }
        let members = try await hub.members(of: f.conv)
        if let stranger = users.first(where: { members[$0] == nil }) {
            throw IMError.invalid("user \(stranger) is not a member of this conversation and cannot be mentioned")
        }
        if f.mentionAll == true {
            guard try await hub.conversationInfo(f.conv).type == .group else {
                throw IMError.invalid("@all is for groups; mention the user instead")
            }
            guard let role = members[user], role >= .admin else {
                throw IMError.forbidden("only the group's owner and admins can mention @all")
            }
        }
        return (users.isEmpty ? nil : users, f.mentionAll == true ? true : nil)
    }

    func checkDirectBlock(conv: ConversationID, sender: UserID) async throws {
        let info = try await hub.conversationInfo(conv)
        guard info.type == .direct, let peer = info.members.keys.first(where: { $0 != sender }) else { return }
        if try await isBlocked(between: sender, and: peer) {
            throw IMError(.blocked, "messages between you and this user are blocked")
        }
    }

    func prepareRecall(_ f: ClientFrame.Recall, from user: UserID) async throws -> NewMessage {
        if let e = Validation.clientID(f.cid) { throw e }
        let role = try await requireMember(user, f.conv)
        guard let target = try await storage.message(conversation: f.conv, seq: f.seq), [.text, .custom, .attachment].contains(target.kind) else {
            throw IMError.notFound("no such message")
        }
        if target.recalled == true { throw IMError(.conflict, "the message was already recalled") }
        if target.sender == user {
            let ageMs = nowMillis() - target.ts
            guard ageMs <= Int64(config.limits.recallSeconds) * 1000 else {
                throw IMError(.recallWindow, "messages can be recalled within \(config.limits.recallSeconds) seconds of sending")
            }
        } else {
            // Group admins and owners may recall others' messages at any time (moderation).
            guard role >= .admin, try await storage.conversation(id: f.conv)?.type == .group else {
                throw IMError.forbidden("you can recall only your own messages")
            }
        }
        return NewMessage(conversation: f.conv, sender: user, cid: f.cid, kind: .recall, target: f.seq)
    }

    func prepareEdit(_ f: ClientFrame.Edit, from user: UserID) async throws -> NewMessage {
        if let e = Validation.clientID(f.cid) { throw e }
        try await checkNotMuted(user, f.conv, role: try await requireMember(user, f.conv))
        guard !f.text.isEmpty, f.text.utf8.count <= config.limits.textBytes else {
            throw IMError.invalid("edited text must be 1 to \(config.limits.textBytes) bytes")
        }
        guard let target = try await storage.message(conversation: f.conv, seq: f.seq), target.kind == .text, target.recalled != true else {
            throw IMError.notFound("no such text message")
        }
        guard target.sender == user else { throw IMError.forbidden("you can edit only your own messages") }
        return NewMessage(conversation: f.conv, sender: user, cid: f.cid, kind: .edit, text: try await moderated(f.text, from: user, in: f.conv),
                          target: f.seq)
    }

    func prepareReaction(_ f: ClientFrame.React, from user: UserID) async throws -> NewMessage {
        if let e = Validation.clientID(f.cid) { throw e }
        if let e = Validation.reactionEmoji(f.emoji) { throw e }
        try await checkNotMuted(user, f.conv, role: try await requireMember(user, f.conv))
        guard let target = try await storage.message(conversation: f.conv, seq: f.seq), MessageKind.content.contains(target.kind),
              target.recalled != true else {
            throw IMError.notFound("no such message to react to")
        }
        if f.remove != true, !(target.reactions ?? []).contains(where: { $0.emoji == f.emoji }),
           (target.reactions ?? []).count >= Validation.maxReactionsPerMessage {
            throw IMError.invalid("a message may carry at most \(Validation.maxReactionsPerMessage) different reactions; add to an existing one")
        }
        return NewMessage(conversation: f.conv, sender: user, cid: f.cid, kind: .reaction, text: f.emoji,
                          data: .object(["op": .string(f.remove == true ? "remove" : "add")]), target: f.seq)
    }

    /// Stores a server-written event in a conversation's stream.
    func systemEvent(_ conv: ConversationID, by user: UserID, _ event: String, _ fields: [String: JSONValue] = [:]) async throws {
        var data = fields
        data["event"] = .string(event)
        data["by"] = .number(Double(user))
        let m = NewMessage(conversation: conv, sender: user, cid: "sys-" + TokenService.randomToken(bytes: 12), kind: .system, data: .object(data))
        _ = try await storage.append([m])
    }

    // MARK: Conversations

    func direct(_ user: UserID, with peer: UserID) async throws -> Conversation {
        guard peer != user else { throw IMError.invalid("a direct conversation needs another user") }
        guard let other = try await storage.user(id: peer), !other.disabled else { throw IMError.notFound("no such user") }
        if try await isBlocked(between: user, and: peer) { throw IMError(.blocked, "you and this user are blocked") }
        let c = try await storage.directConversation(between: user, and: peer)
        hub.invalidate(c.id)
        return c
    }

    func createGroup(_ user: UserID, name: String, members: [UserID]) async throws -> Conversation {
        if let e = Validation.groupName(name) { throw e }
        let unique = Set(members).subtracting([user])
        guard unique.count + 1 <= config.limits.groupSize else {
            throw IMError(.groupFull, "a group may have at most \(config.limits.groupSize) members")
        }
        let found = try await storage.users(ids: Array(unique))
        guard found.count == unique.count else { throw IMError.notFound("one or more users do not exist") }
        try await refuseBlockers(of: user, among: unique)
        let c = try await storage.createGroup(name: name, owner: user, members: Array(unique))
        try await systemEvent(c.id, by: user, "created", ["name": .string(name)])
        return try await storage.conversation(id: c.id) ?? c
    }

    /// Nobody is put into a group by someone they blocked. The answer is the one for a missing user, so an inviter
    /// cannot learn who blocked them.
    func refuseBlockers(of inviter: UserID, among users: Set<UserID>) async throws {
        for u in users where u != inviter {
            if try await hub.blocked(by: u).contains(inviter) { throw IMError.notFound("one or more users do not exist") }
        }
    }

    func conversation(_ user: UserID, _ conv: ConversationID) async throws -> Conversation {
        _ = try await requireMember(user, conv)
        guard let c = try await storage.conversation(id: conv) else { throw IMError.notFound("no such conversation") }
        return c
    }

    func addMembers(_ user: UserID, _ conv: ConversationID, _ users: [UserID]) async throws -> Conversation {
        let role = try await requireMember(user, conv)
        _ = try await requireGroup(conv)
        guard role >= .admin else { throw IMError.forbidden("only the owner and admins can invite") }
        let found = try await storage.users(ids: users)
        guard found.count == Set(users).count else { throw IMError.notFound("one or more users do not exist") }
        try await refuseBlockers(of: user, among: Set(users))
        try await storage.addMembers(conversation: conv, users: users, limit: config.limits.groupSize)
        hub.invalidate(conv)
        try await systemEvent(conv, by: user, "members_added", ["users": .array(users.map { .number(Double($0)) })])
        return try await conversation(user, conv)
    }

    func removeMember(_ user: UserID, _ conv: ConversationID, _ target: UserID) async throws {
        let role = try await requireMember(user, conv)
        _ = try await requireGroup(conv)
        guard let targetRole = try await hub.members(of: conv)[target] else { throw IMError.notFound("not a member") }
        guard target != user else { throw IMError.invalid("use leave to leave a group") }
        guard role >= .admin, role > targetRole else { throw IMError.forbidden("you may remove only members below your role") }
        // The event goes out while the member is still in, so their devices learn of it too.
        try await systemEvent(conv, by: user, "member_removed", ["user": .number(Double(target))])
        try await storage.removeMember(conversation: conv, user: target)
        hub.invalidate(conv)
    }

    func leave(_ user: UserID, _ conv: ConversationID) async throws {
        let role = try await requireMember(user, conv)
        _ = try await requireGroup(conv)
        guard role != .owner else { throw IMError.forbidden("transfer ownership or dissolve the group before leaving") }
        try await systemEvent(conv, by: user, "member_left", ["user": .number(Double(user))])
        try await storage.removeMember(conversation: conv, user: user)
        hub.invalidate(conv)
    }

    func setRole(_ user: UserID, _ conv: ConversationID, _ target: UserID, _ newRole: MemberRole) async throws {
        let role = try await requireMember(user, conv)
        _ = try await requireGroup(conv)
        guard role == .owner else { throw IMError.forbidden("only the owner can change roles") }
        guard newRole != .owner else { throw IMError.invalid("use the owner transfer to make someone owner") }
        guard target != user, try await hub.members(of: conv)[target] != nil else { throw IMError.notFound("not a member") }
        try await storage.setRole(conversation: conv, user: target, role: newRole)
        hub.invalidate(conv)
        try await systemEvent(conv, by: user, "role_changed", ["user": .number(Double(target)), "role": .string(newRole.rawValue)])
    }

    func transferOwner(_ user: UserID, _ conv: ConversationID, to target: UserID) async throws {
        let role = try await requireMember(user, conv)
        _ = try await requireGroup(conv)
        guard role == .owner else { throw IMError.forbidden("only the owner can transfer ownership") }
        guard target != user, try await hub.members(of: conv)[target] != nil else { throw IMError.notFound("not a member") }
        try await storage.setRole(conversation: conv, user: target, role: .owner)
        try await storage.setRole(conversation: conv, user: user, role: .admin)
        hub.invalidate(conv)
        try await systemEvent(conv, by: user, "owner_changed", ["user": .number(Double(target))])
    }

    func rename(_ user: UserID, _ conv: ConversationID, _ name: String) async throws -> Conversation {
        let role = try await requireMember(user, conv)
        _ = try await requireGroup(conv)
        if let e = Validation.groupName(name) { throw e }
        guard role >= .admin else { throw IMError.forbidden("only the owner and admins can rename") }
        try await storage.renameGroup(conversation: conv, name: name)
        try await systemEvent(conv, by: user, "renamed", ["name": .string(name)])
        return try await conversation(user, conv)
    }

    func dissolve(_ user: UserID, _ conv: ConversationID) async throws {
        let role = try await requireMember(user, conv)
        _ = try await requireGroup(conv)
        guard role == .owner else { throw IMError.forbidden("only the owner can dissolve the group") }
        try await systemEvent(conv, by: user, "dissolved")
        let files = try await storage.dissolve(conversation: conv)
        hub.invalidate(conv)
        attachments.removeFiles(files)
    }

    func history(_ user: UserID, _ conv: ConversationID, before: Int64?, limit: Int) async throws -> API.History {
        _ = try await requireMember(user, conv)
        let n = max(1, min(limit, 200))
        let msgs = try await storage.messages(conversation: conv, before: before ?? Int64.max, limit: n + 1)
        return API.History(messages: Array(msgs.prefix(n)), hasMore: msgs.count > n)
    }

    // MARK: Pins

    /// Pins or unpins a conversation in the caller's own list (any member; nobody else sees it).
    func pinConversation(_ user: UserID, _ conv: ConversationID, pinned: Bool) async throws {
        _ = try await requireMember(user, conv)
        try await storage.setConversationPinned(user: user, conversation: conv, pinnedAt: pinned ? nowMillis() : nil)
    }

    /// Pins or unpins a message of a group (owner and admins). Members learn of it from a `message_pinned` or
    /// `message_unpinned` system event in the conversation, live and on sync.
    func pinMessage(_ user: UserID, _ conv: ConversationID, seq: Int64, pinned: Bool) async throws {
        let role = try await requireMember(user, conv)
        _ = try await requireGroup(conv)
        guard role >= .admin else { throw IMError.forbidden("only the group's owner and admins can pin messages") }
        if pinned, try await storage.pinnedMessages(conversation: conv).count >= Self.maxPinnedMessages {
            throw IMError.invalid("a group may have at most \(Self.maxPinnedMessages) pinned messages; unpin one first")
        }
        if try await storage.setMessagePinned(conversation: conv, seq: seq, by: user, pinnedAt: pinned ? nowMillis() : nil) {
            try await systemEvent(conv, by: user, pinned ? "message_pinned" : "message_unpinned", ["seq": .number(Double(seq))])
        }
    }

    static let maxPinnedMessages = 50

    func pinnedMessages(_ user: UserID, _ conv: ConversationID) async throws -> [PinnedMessage] {
        _ = try await requireMember(user, conv)
        return try await storage.pinnedMessages(conversation: conv)
    }

    // MARK: Search

    /// Searches the messages `user` can read: the storage query is always scoped to their conversations, and a
    /// `conversation` filter they are not a member of is answered like a missing conversation.
    func search(_ user: UserID, query: String, conversation: ConversationID?, sender: UserID?, from: Int64?, to: Int64?,
                before: String?, limit: Int) async throws -> API.SearchPage {
        if let conversation { _ = try await requireMember(user, conversation) }
        return try await searchPage(user, query: query, conversation: conversation, sender: sender, from: from, to: to, before: before, limit: limit)
    }

    /// A page of search results in `user`'s conversations, or with nil in every conversation (compliance search).
    func searchPage(_ user: UserID?, query: String, conversation: ConversationID?, sender: UserID?, from: Int64?, to: Int64?,
                    before: String?, limit: Int) async throws -> API.SearchPage {
        let terms = try Search.terms(query)
        if let from, let to, from >= to { throw IMError.invalid("'from' must be before 'to'") }
        let n = max(1, min(limit, 50))
        let cursor = try before.map { token throws(IMError) in try Search.Cursor(token: token) }
        let found = try await storage.search(MessageSearch(user: user, terms: terms, conversation: conversation, sender: sender,
                                                           from: from, to: to, before: cursor, limit: n + 1))
        let page = Array(found.prefix(n))
        return API.SearchPage(results: page.map { API.SearchHit(message: $0, highlight: Search.highlight($0.text ?? "", terms: terms)) },
                              next: found.count > n ? page.last.map { Search.Cursor(after: $0).token } : nil)
    }

    // MARK: Receipts and typing

    func receipt(_ user: UserID, _ r: ClientFrame.ReceiptUpdate) async throws {
        let members = try await hub.members(of: r.conv)
        guard members[user] != nil else { throw IMError.notFound("no such conversation") }
        let seq = try await storage.advanceCursor(conversation: r.conv, user: user, kind: r.kind, seq: r.seq)
        hub.publishReceipt(.init(conv: r.conv, user: user, kind: r.kind, seq: seq), to: members.keys)
    }

    func typing(_ user: UserID, _ t: ClientFrame.TypingUpdate) async throws {
        let members = try await hub.members(of: t.conv)
        guard members[user] != nil else { throw IMError.notFound("no such conversation") }
        hub.publishTyping(.init(conv: t.conv, user: user, active: t.active), to: members.keys)
    }

    // MARK: Contacts

    func requestContact(_ user: UserID, _ other: UserID) async throws {
        guard other != user else { throw IMError.invalid("you cannot add yourself") }
        guard try await storage.user(id: other) != nil else { throw IMError.notFound("no such user") }
        let mine = try await storage.contactState(owner: user, other: other)
        let theirs = try await storage.contactState(owner: other, other: user)
        if mine == .blocked || theirs == .blocked { throw IMError(.blocked, "you and this user are blocked") }
        if mine == .accepted { return }
        if theirs == .outgoing {
            // They asked first: requesting back accepts.
            try await storage.setContactState(owner: user, other: other, state: .accepted)
            try await storage.setContactState(owner: other, other: user, state: .accepted)
            return
        }
        try await storage.setContactState(owner: user, other: other, state: .outgoing)
        try await storage.setContactState(owner: other, other: user, state: .incoming)
    }

    func acceptContact(_ user: UserID, _ other: UserID) async throws {
        guard try await storage.contactState(owner: user, other: other) == .incoming else { throw IMError.notFound("no pending request from this user") }
        try await storage.setContactState(owner: user, other: other, state: .accepted)
        try await storage.setContactState(owner: other, other: user, state: .accepted)
    }

    func declineContact(_ user: UserID, _ other: UserID) async throws {
        guard try await storage.contactState(owner: user, other: other) == .incoming else { throw IMError.notFound("no pending request from this user") }
        try await storage.setContactState(owner: user, other: other, state: nil)
        try await storage.setContactState(owner: other, other: user, state: nil)
    }

    func removeContact(_ user: UserID, _ other: UserID) async throws {
        let mine = try await storage.contactState(owner: user, other: other)
        guard mine != nil, mine != .blocked else { throw IMError.notFound("not a contact") }
        try await storage.setContactState(owner: user, other: other, state: nil)
        if try await storage.contactState(owner: other, other: user) != .blocked {
            try await storage.setContactState(owner: other, other: user, state: nil)
        }
    }

    func block(_ user: UserID, _ other: UserID) async throws {
        guard other != user else { throw IMError.invalid("you cannot block yourself") }
        guard try await storage.user(id: other) != nil else { throw IMError.notFound("no such user") }
        try await storage.setContactState(owner: user, other: other, state: .blocked)
        if try await storage.contactState(owner: other, other: user) != .blocked {
            try await storage.setContactState(owner: other, other: user, state: nil)
        }
        hub.invalidateBlocks(user, other)
    }

    func unblock(_ user: UserID, _ other: UserID) async throws {
        guard try await storage.contactState(owner: user, other: other) == .blocked else { throw IMError.notFound("this user is not blocked") }
        try await storage.setContactState(owner: user, other: other, state: nil)
        hub.invalidateBlocks(user, other)
    }
}
