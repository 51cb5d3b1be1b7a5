import AsyncHTTPClient
import Foundation
import IMCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// An attachment's bytes as downloaded, with the content type the server reported.
/// A compliance export as downloaded: the signed archive (tar.gz) and what the server said of it.
public struct IMComplianceExport: Sendable, Hashable {
    /// The archive's bytes.
    public var archive: Data
    /// Its SHA-256 (hex), as recorded in the audit trail.
    public var sha256: String
    /// The audit trail entry that records the export.
    public var auditID: Int64
    /// Creates an export value.
    public init(archive: Data, sha256: String, auditID: Int64) { self.archive = archive; self.sha256 = sha256; self.auditID = auditID }
}

public struct IMDownloadedAttachment: Sendable, Hashable {
    /// The file's bytes.
    public var data: Data
    /// The `Content-Type` the server sent (`application/octet-stream` when it sent none).
    public var contentType: String

    /// Creates a downloaded attachment value.
    public init(data: Data, contentType: String) {
        self.data = data
        self.contentType = contentType
    }
}

/// The Warbler REST client. Holds the session tokens; every authenticated call that is answered `401`
/// refreshes the tokens once (single-flight across concurrent calls) and is retried.
///
/// All methods throw `IMError`: the server's error body for HTTP errors, `.unavailable` when the server
/// cannot be reached, or `CancellationError` when the calling task is cancelled.
/// Call ``shutdown()`` when done; it closes the HTTP client this object created (an injected one is left open).
public final class IMClient: Sendable {
    /// The configuration this client was made with.
    public let configuration: IMClientConfiguration
    /// The logger used for diagnostics (never logs tokens or passwords).
    public let logger: Logger

    let transport: Transport
    let sessionHolder: SessionHolder
    private let ownsHTTPClient: Bool
    private let isShutDown = NIOLockedValueBox(false)

    /// Creates a client. Without `httpClient` it creates (and owns) one with the configured timeouts.
    /// Throws `IMError(.invalid)` for a malformed base URL or an unreadable CA file.
    public init(configuration: IMClientConfiguration, httpClient: HTTPClient? = nil,
                logger: Logger = Logger(label: "warbler.client")) throws {
        let endpoint = try ServerEndpoint(configuration.baseURL)
        let tls = try TLSSettings(configuration: configuration, endpoint: endpoint)
        let http: HTTPClient
        if let httpClient {
            http = httpClient
            ownsHTTPClient = false
        } else {
            var httpConfiguration = HTTPClient.Configuration(
                tlsConfiguration: tls.rest,
                redirectConfiguration: .disallow,
                timeout: .init(connect: TimeAmount(configuration.connectTimeout))
            )
            httpConfiguration.httpVersion = .automatic
            http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
            ownsHTTPClient = true
        }
        self.configuration = configuration
        self.logger = logger
        self.transport = Transport(http: http, endpoint: endpoint, tls: tls, configuration: configuration, logger: logger)
        self.sessionHolder = SessionHolder(transport: transport)
    }

    /// Convenience: a client for `baseURL` with default settings.
    public convenience init(baseURL: String, trustedCACertificatePath: String? = nil, deviceName: String? = nil) throws {
        try self.init(configuration: IMClientConfiguration(baseURL: baseURL, trustedCACertificatePath: trustedCACertificatePath,
                                                           deviceName: deviceName))
    }

    deinit {
        // Safety net: AsyncHTTPClient traps in debug builds when a client is released without shutdown.
        if ownsHTTPClient, !isShutDown.withLockedValue({ $0 }) {
            transport.http.shutdown { _ in }
        }
    }

    /// Closes the HTTP client if this object created it. Open connections made from this client stop working.
    public func shutdown() async throws {
        let already = isShutDown.withLockedValue { value -> Bool in
            defer { value = true }
            return value
        }
        if ownsHTTPClient, !already {
            try await transport.http.shutdown()
        }
    }

    /// Makes a WebSocket connection for this client's session (see ``IMConnection``).
    public func makeConnection(cursorStore: any CursorStore = InMemoryCursorStore(),
                               configuration: IMConnection.Configuration = .init()) -> IMConnection {
        IMConnection(client: self, cursorStore: cursorStore, configuration: configuration)
    }

    // MARK: Session

    /// The current session, or nil when logged out (or after the server rejected the refresh token).
    public var session: IMSession? {
        get async { await sessionHolder.session }
    }

    /// The logged-in user as of login/refresh, or nil.
    public var currentUser: UserProfile? {
        get async { await sessionHolder.session?.user }
    }

    /// Installs a previously saved session (or clears it with nil) without calling the server.
    public func setSession(_ session: IMSession?) async {
        await sessionHolder.set(session)
    }

    /// A valid access token, refreshed first when it is about to expire. Used by ``IMConnection``.
    func accessToken() async throws -> String {
        try await sessionHolder.accessToken(margin: configuration.refreshMargin)
    }

    /// Refreshes after the server rejected `stale` (no-op if the session already moved on).
    func refreshAfterRejection(of stale: String) async throws {
        _ = try await sessionHolder.refresh(stale: stale)
    }

    // MARK: Auth

    /// Creates an account and logs in as it (`POST /v1/auth/register`).
    @discardableResult
    public func register(username: String, password: String, displayName: String? = nil) async throws -> UserProfile {
        let auth: API.AuthResponse = try await call(.POST, "/v1/auth/register",
                                                    json: API.Register(username: username, password: password, displayName: displayName),
                                                    authenticated: false)
        await sessionHolder.set(IMSession(auth))
        return auth.user
    }

    /// Logs in and keeps the tokens (`POST /v1/auth/login`); `device` defaults to the configured device name.
    @discardableResult
    public func login(username: String, password: String, device: String? = nil) async throws -> UserProfile {
        let auth: API.AuthResponse = try await call(.POST, "/v1/auth/login",
                                                    json: API.Login(username: username, password: password,
                                                                    device: device ?? configuration.deviceName),
                                                    authenticated: false)
        await sessionHolder.set(IMSession(auth))
        return auth.user
    }

    /// Exchanges the refresh token for a new token pair now (`POST /v1/auth/refresh`; the old refresh token is spent).
    @discardableResult
    public func refresh() async throws -> IMSession {
        try await sessionHolder.refresh(stale: nil)
    }

    /// Revokes the refresh token on the server (`POST /v1/auth/logout`) and forgets the session locally.
    /// The local session is cleared even when the server cannot be reached (then the error is thrown).
    public func logout() async throws {
        guard let session = await sessionHolder.take() else { return }
        do {
            try await callVoid(.POST, "/v1/auth/logout", json: API.Refresh(refreshToken: session.refreshToken), authenticated: false)
        } catch let error as IMError where error.code == .unauthorized {
            // Already revoked or expired: logged out either way.
        }
    }

    /// Changes the logged-in user's password (`POST /v1/auth/password`). The server then revokes every token of
    /// the user, so the client logs in again with the new password (with the configured device name); if that
    /// fails the session is cleared and the error is thrown. A wrong `old` password throws `.unauthorized`.
    public func changePassword(old: String, new: String) async throws {
        // A 401 here means "wrong current password", not an expired token: no refresh-and-retry.
        _ = try await request(.POST, "/v1/auth/password", body: try Transport.encode(API.ChangePassword(oldPassword: old, newPassword: new)),
                              retryAfterRefresh: false)
        guard let username = await sessionHolder.session?.user.username else { return }
        do {
            try await login(username: username, password: new)
        } catch {
            await sessionHolder.set(nil)
            throw error
        }
    }

    // MARK: Profile and users

    /// The logged-in user's profile (`GET /v1/me`).
    public func me() async throws -> UserProfile {
        try await call(.GET, "/v1/me")
    }

    /// Updates display name and/or avatar; nil fields are left unchanged (`PATCH /v1/me`).
    @discardableResult
    public func updateProfile(displayName: String? = nil, avatar: String? = nil) async throws -> UserProfile {
        try await call(.PATCH, "/v1/me", json: API.UpdateProfile(displayName: displayName, avatar: avatar))
    }

    /// A user's profile by id (`GET /v1/users/{id}`).
    public func user(id: UserID) async throws -> UserProfile {
        try await call(.GET, "/v1/users/\(id)")
    }

    /// A user's profile by username (`GET /v1/users/by-name/{username}`).
    public func user(username: String) async throws -> UserProfile {
        try await call(.GET, "/v1/users/by-name/\(Transport.escape(username))")
    }

    /// Online status of the given users (only contacts and fellow members are answered; `GET /v1/presence?users=`).
    public func presence(of users: [UserID]) async throws -> [ServerFrame.Presence] {
        try await call(.GET, "/v1/presence", query: [("users", users.map(String.init).joined(separator: ","))])
    }

    // MARK: Contacts

    /// The contact list with each contact's state (`GET /v1/contacts`).
    public func contacts() async throws -> [Contact] {
        try await call(.GET, "/v1/contacts")
    }

    /// Sends a contact request (`POST /v1/contacts/{userId}/request`).
    public func requestContact(_ user: UserID) async throws {
        try await callVoid(.POST, "/v1/contacts/\(user)/request")
    }

    /// Accepts an incoming contact request (`POST /v1/contacts/{userId}/accept`).
    public func acceptContact(_ user: UserID) async throws {
        try await callVoid(.POST, "/v1/contacts/\(user)/accept")
    }

    /// Declines an incoming contact request (`POST /v1/contacts/{userId}/decline`).
    public func declineContact(_ user: UserID) async throws {
        try await callVoid(.POST, "/v1/contacts/\(user)/decline")
    }

    /// Blocks a user (`POST /v1/contacts/{userId}/block`).
    public func block(_ user: UserID) async throws {
        try await callVoid(.POST, "/v1/contacts/\(user)/block")
    }

    /// Unblocks a user (`DELETE /v1/contacts/{userId}/block`).
    public func unblock(_ user: UserID) async throws {
        try await callVoid(.DELETE, "/v1/contacts/\(user)/block")
    }

    /// Removes a contact or cancels a request (`DELETE /v1/contacts/{userId}`).
    public func removeContact(_ user: UserID) async throws {
        try await callVoid(.DELETE, "/v1/contacts/\(user)")
    }

    // MARK: Conversations

    /// The user's conversations with unread counts (`GET /v1/conversations`).
    public func conversations() async throws -> [ConversationSummary] {
        try await call(.GET, "/v1/conversations")
    }

    /// Opens (or returns the existing) direct conversation with `user` (`POST /v1/conversations/direct`).
    public func createDirectConversation(with user: UserID) async throws -> Conversation {
        try await call(.POST, "/v1/conversations/direct", json: API.NewDirect(userId: user))
    }

    /// Creates a group with the caller as owner (`POST /v1/conversations/group`).
    public func createGroup(name: String, members: [UserID]) async throws -> Conversation {
        try await call(.POST, "/v1/conversations/group", json: API.NewGroup(name: name, members: members))
    }

    /// A conversation with its members (`GET /v1/conversations/{id}`).
    public func conversation(_ id: ConversationID) async throws -> Conversation {
        try await call(.GET, "/v1/conversations/\(id)")
    }

    /// Renames a group (`PATCH /v1/conversations/{id}`).
    @discardableResult
    public func renameConversation(_ id: ConversationID, to name: String) async throws -> Conversation {
        try await call(.PATCH, "/v1/conversations/\(id)", json: API.Rename(name: name))
    }

    /// A page of history, newest first, of messages with seq < `before` (`GET /v1/conversations/{id}/messages`).
    public func history(_ conversation: ConversationID, before: Int64? = nil, limit: Int? = nil) async throws -> API.History {
        var query: [(String, String)] = []
        if let before { query.append(("before", String(before))) }
        if let limit { query.append(("limit", String(limit))) }
        return try await call(.GET, "/v1/conversations/\(conversation)/messages", query: query)
    }

    /// Pins (or unpins) a conversation in your own list: pinned ones come first (`PUT`/`DELETE /v1/conversations/{id}/pin`).
    public func pinConversation(_ conversation: ConversationID, pinned: Bool = true) async throws {
        try await callVoid(pinned ? .PUT : .DELETE, "/v1/conversations/\(conversation)/pin")
    }

    /// Pins (or unpins) message `seq` in a group; owner and admins only (`PUT`/`DELETE /v1/conversations/{id}/pins/{seq}`).
    public func pinMessage(_ seq: Int64, in conversation: ConversationID, pinned: Bool = true) async throws {
        try await callVoid(pinned ? .PUT : .DELETE, "/v1/conversations/\(conversation)/pins/\(seq)")
    }

    /// Mutes a conversation's notifications for you alone until `until` (ms since 1970; nil: until you unmute), or
    /// unmutes it (`PUT`/`DELETE /v1/conversations/{id}/mute`). Unread counts and mentions still count.
    public func muteConversation(_ conversation: ConversationID, muted: Bool = true, until: Int64? = nil) async throws {
        if muted { try await callVoid(.PUT, "/v1/conversations/\(conversation)/mute", json: API.Mute(until: until)) }
        else { try await callVoid(.DELETE, "/v1/conversations/\(conversation)/mute") }
    }

    /// Mutes (禁言) a group member below your role until `until` (nil: until unmuted), or unmutes them; owner and
    /// admins only (`PUT`/`DELETE /v1/conversations/{id}/members/{user}/mute`). Their sends are refused with `muted`.
    public func muteMember(_ user: UserID, in conversation: ConversationID, muted: Bool = true, until: Int64? = nil) async throws {
        if muted { try await callVoid(.PUT, "/v1/conversations/\(conversation)/members/\(user)/mute", json: API.Mute(until: until)) }
        else { try await callVoid(.DELETE, "/v1/conversations/\(conversation)/members/\(user)/mute") }
    }

    /// Mutes the whole group (全员禁言: only owner and admins may send) until `until` (nil: until unmuted), or lifts it
    /// (`PUT`/`DELETE /v1/conversations/{id}/mute-all`).
    public func muteGroup(_ conversation: ConversationID, muted: Bool = true, until: Int64? = nil) async throws {
        if muted { try await callVoid(.PUT, "/v1/conversations/\(conversation)/mute-all", json: API.Mute(until: until)) }
        else { try await callVoid(.DELETE, "/v1/conversations/\(conversation)/mute-all") }
    }

    /// Sets a group's announcement (owner and admins; `PUT /v1/conversations/{id}/announcement`), or clears it with
    /// nil (`DELETE`). Returns the conversation, whose `announcement` is the new one.
    @discardableResult
    public func setAnnouncement(_ text: String?, in conversation: ConversationID) async throws -> Conversation {
        if let text { return try await call(.PUT, "/v1/conversations/\(conversation)/announcement", json: API.SetAnnouncement(text: text)) }
        return try await call(.DELETE, "/v1/conversations/\(conversation)/announcement")
    }

    /// Makes an invite link to a group (owner and admins; `POST /v1/conversations/{id}/invites`).
    public func createInvite(to conversation: ConversationID, expiresInSeconds: Int64? = nil, maxUses: Int64? = nil,
                             approval: Bool = false) async throws -> GroupInvite {
        try await call(.POST, "/v1/conversations/\(conversation)/invites",
                       json: API.NewInvite(expiresInSeconds: expiresInSeconds, maxUses: maxUses, approval: approval ? true : nil))
    }

    /// A group's invite links, newest first (owner and admins).
    public func invites(of conversation: ConversationID) async throws -> [GroupInvite] {
        try await call(.GET, "/v1/conversations/\(conversation)/invites")
    }

    /// Revokes an invite link (owner and admins).
    public func revokeInvite(_ code: String, in conversation: ConversationID) async throws {
        try await callVoid(.DELETE, "/v1/conversations/\(conversation)/invites/\(code)")
    }

    /// What an invite link leads to (`GET /v1/invites/{code}`).
    public func previewInvite(_ code: String) async throws -> API.InvitePreview {
        try await call(.GET, "/v1/invites/\(code)")
    }

    /// Joins a group through an invite link, or asks to when it needs approval (`POST /v1/invites/{code}/join`).
    public func joinInvite(_ code: String) async throws -> API.JoinResult {
        try await call(.POST, "/v1/invites/\(code)/join", json: [String: String]())
    }

    /// A group's pending join requests, oldest first (owner and admins).
    public func joinRequests(of conversation: ConversationID) async throws -> [JoinRequest] {
        try await call(.GET, "/v1/conversations/\(conversation)/join-requests")
    }

    /// Accepts (the requester joins) or declines a pending join request (owner and admins).
    public func resolveJoinRequest(from user: UserID, in conversation: ConversationID, accept: Bool) async throws {
        try await callVoid(.POST, "/v1/conversations/\(conversation)/join-requests/\(user)/\(accept ? "accept" : "decline")")
    }

    /// Your own join requests, pending and declined, newest first (`GET /v1/me/join-requests`).
    public func myJoinRequests() async throws -> [JoinRequest] {
        try await call(.GET, "/v1/me/join-requests")
    }

    /// Saves the message you are writing in a conversation, for your other devices (`PUT /v1/conversations/{id}/draft`);
    /// an empty text (or `clearDraft`) deletes it. Returns the saved draft, nil when deleted.
    @discardableResult
    public func saveDraft(_ text: String, replyTo: Int64? = nil, in conversation: ConversationID) async throws -> Draft? {
        guard !text.isEmpty else { try await clearDraft(in: conversation); return nil }
        let draft: Draft = try await call(.PUT, "/v1/conversations/\(conversation)/draft", json: API.SaveDraft(text: text, replyTo: replyTo))
        return draft
    }

    /// Deletes your draft in a conversation (`DELETE /v1/conversations/{id}/draft`).
    public func clearDraft(in conversation: ConversationID) async throws {
        try await callVoid(.DELETE, "/v1/conversations/\(conversation)/draft")
    }

    /// Your drafts, latest first (`GET /v1/drafts`); each conversation's also shows in `conversations()`.
    public func drafts() async throws -> [Draft] {
        try await call(.GET, "/v1/drafts")
    }

    /// The content-moderation word list in force (admins; `GET /v1/admin/moderation`).
    public func moderationStatus() async throws -> API.ModerationStatus {
        try await call(.GET, "/v1/admin/moderation")
    }

    /// Reads the word list file again now (admins; `POST /v1/admin/moderation/reload`).
    @discardableResult
    public func reloadModeration() async throws -> API.ModerationStatus {
        try await call(.POST, "/v1/admin/moderation/reload", json: [String: String]())
    }

    /// The latest sends the word list refused, newest first (admins; `GET /v1/admin/moderation/blocks`).
    public func moderationBlocks(limit: Int? = nil) async throws -> [API.ModerationBlock] {
        try await call(.GET, "/v1/admin/moderation/blocks", query: limit.map { [("limit", String($0))] } ?? [])
    }

    /// Forwards messages `seqs` of conversation `from` (which you must be able to read) to `conversation`, in order,
    /// attachments included without uploading them again (`POST /v1/conversations/{id}/forward`). Retry with the same
    /// `cid` after a failure: copies already stored are answered `duplicate`, never stored twice.
    @discardableResult
    public func forward(_ seqs: [Int64], from: ConversationID, to conversation: ConversationID,
                        cid: String = ClientIDs.next()) async throws -> [ServerFrame.Ack] {
        let r: API.Forwarded = try await call(.POST, "/v1/conversations/\(conversation)/forward", json: API.Forward(cid: cid, from: from, seqs: seqs))
        return r.acks
    }

    /// A conversation's pinned messages, latest pin first (`GET /v1/conversations/{id}/pins`).
    public func pinnedMessages(_ conversation: ConversationID) async throws -> [PinnedMessage] {
        try await call(.GET, "/v1/conversations/\(conversation)/pins")
    }

    /// Searches the messages you can read (`GET /v1/search`): every word of `query` must occur in the text (ignoring
    /// case; Chinese works without spaces). Newest first, `limit` (1–50, default 20) a page; pass the page's `next`
    /// as `before` for the following one.
    public func search(_ query: String, conversation: ConversationID? = nil, sender: UserID? = nil, from: Int64? = nil,
                       to: Int64? = nil, before: String? = nil, limit: Int? = nil) async throws -> API.SearchPage {
        try await call(.GET, "/v1/search", query: Self.searchQuery(query, conversation, sender, from, to, before, limit))
    }

    /// The query string of a search (the user's and the admins' compliance search take the same one).
    static func searchQuery(_ query: String, _ conversation: ConversationID?, _ sender: UserID?, _ from: Int64?, _ to: Int64?,
                            _ before: String?, _ limit: Int?) -> [(String, String)] {
        var q: [(String, String)] = [("q", query)]
        if let conversation { q.append(("conv", String(conversation))) }
        if let sender { q.append(("sender", String(sender))) }
        if let from { q.append(("from", String(from))) }
        if let to { q.append(("to", String(to))) }
        if let before { q.append(("before", before)) }
        if let limit { q.append(("limit", String(limit))) }
        return q
    }

    /// Adds members to a group (`POST /v1/conversations/{id}/members`).
    @discardableResult
    public func addMembers(_ users: [UserID], to conversation: ConversationID) async throws -> Conversation {
        try await call(.POST, "/v1/conversations/\(conversation)/members", json: API.AddMembers(users: users))
    }

    /// Removes a member from a group (`DELETE /v1/conversations/{id}/members/{userId}`).
    public func removeMember(_ user: UserID, from conversation: ConversationID) async throws {
        try await callVoid(.DELETE, "/v1/conversations/\(conversation)/members/\(user)")
    }

    /// Leaves a group (`POST /v1/conversations/{id}/leave`).
    public func leaveConversation(_ conversation: ConversationID) async throws {
        try await callVoid(.POST, "/v1/conversations/\(conversation)/leave")
    }

    /// Sets a member's role (`PUT /v1/conversations/{id}/members/{userId}/role`).
    public func setRole(_ role: MemberRole, for user: UserID, in conversation: ConversationID) async throws {
        try await callVoid(.PUT, "/v1/conversations/\(conversation)/members/\(user)/role", json: API.SetRole(role: role))
    }

    /// Hands group ownership to another member (`POST /v1/conversations/{id}/owner`).
    public func transferOwnership(of conversation: ConversationID, to user: UserID) async throws {
        try await callVoid(.POST, "/v1/conversations/\(conversation)/owner", json: API.TransferOwner(userId: user))
    }

    /// Dissolves a group (`DELETE /v1/conversations/{id}`).
    public func dissolveConversation(_ conversation: ConversationID) async throws {
        try await callVoid(.DELETE, "/v1/conversations/\(conversation)")
    }

    // MARK: Attachments

    /// Uploads a file into a conversation (`POST /v1/conversations/{id}/attachments?name=`); send the returned
    /// reference with ``IMConnection/send(conversation:attachment:caption:cid:)``.
    public func uploadAttachment(to conversation: ConversationID, name: String, contentType: String,
                                 data: Data) async throws -> AttachmentRef {
        let response = try await request(.POST, "/v1/conversations/\(conversation)/attachments", query: [("name", name)],
                                         body: ByteBuffer(bytes: data), contentType: contentType,
                                         timeout: configuration.transferTimeout)
        return try Transport.decode(AttachmentRef.self, from: response)
    }

    /// Downloads an attachment's bytes (`GET /v1/attachments/{id}`).
    public func downloadAttachment(_ id: String) async throws -> IMDownloadedAttachment {
        let response = try await request(.GET, "/v1/attachments/\(Transport.escape(id))", timeout: configuration.transferTimeout)
        return IMDownloadedAttachment(data: response.data,
                                      contentType: response.headers.first(name: "Content-Type") ?? "application/octet-stream")
    }

    // MARK: Admin

    /// Creates an account (admin only; `POST /v1/admin/users`).
    @discardableResult
    public func adminCreateUser(username: String, password: String, displayName: String? = nil,
                                admin: Bool? = nil) async throws -> UserProfile {
        try await call(.POST, "/v1/admin/users",
                       json: API.AdminCreateUser(username: username, password: password, displayName: displayName, admin: admin))
    }

    /// Lists accounts (admin only; `GET /v1/admin/users?offset=&limit=`).
    public func adminUsers(offset: Int? = nil, limit: Int? = nil) async throws -> [API.AdminUser] {
        var query: [(String, String)] = []
        if let offset { query.append(("offset", String(offset))) }
        if let limit { query.append(("limit", String(limit))) }
        return try await call(.GET, "/v1/admin/users", query: query)
    }

    /// Disables or re-enables an account (admin only; `POST /v1/admin/users/{id}/disabled`).
    public func adminSetDisabled(_ user: UserID, _ disabled: Bool) async throws {
        try await callVoid(.POST, "/v1/admin/users/\(user)/disabled", json: API.SetFlag(value: disabled))
    }

    /// Grants or revokes admin rights (admin only; `POST /v1/admin/users/{id}/admin`).
    public func adminSetAdmin(_ user: UserID, _ admin: Bool) async throws {
        try await callVoid(.POST, "/v1/admin/users/\(user)/admin", json: API.SetFlag(value: admin))
    }

    /// Sets an account's password (admin only; `POST /v1/admin/users/{id}/password`).
    public func adminSetPassword(_ user: UserID, password: String) async throws {
        try await callVoid(.POST, "/v1/admin/users/\(user)/password", json: API.SetPassword(password: password))
    }

    /// Server statistics (admin only; `GET /v1/admin/stats`).
    public func adminStats() async throws -> API.Stats {
        try await call(.GET, "/v1/admin/stats")
    }

    // MARK: Compliance (admins; every search and export is recorded in the audit trail)

    /// Searches every conversation (`GET /v1/admin/compliance/search`), with the same query, filters and paging as
    /// ``search(_:conversation:sender:from:to:before:limit:)``; the search is recorded in the audit trail.
    public func adminComplianceSearch(_ query: String, conversation: ConversationID? = nil, sender: UserID? = nil, from: Int64? = nil,
                                      to: Int64? = nil, before: String? = nil, limit: Int? = nil) async throws -> API.SearchPage {
        try await call(.GET, "/v1/admin/compliance/search", query: Self.searchQuery(query, conversation, sender, from, to, before, limit))
    }

    /// Exports a conversation's messages, or everything one user sent, in a time range as a signed archive
    /// (`POST /v1/admin/compliance/exports`); the export is recorded in the audit trail.
    public func adminComplianceExport(_ request: API.ComplianceExportRequest) async throws -> IMComplianceExport {
        let response = try await self.request(.POST, "/v1/admin/compliance/exports", body: try Transport.encode(request),
                                              timeout: configuration.transferTimeout)
        return IMComplianceExport(archive: response.data, sha256: response.headers.first(name: "X-Warbler-Export-Sha256") ?? "",
                                  auditID: response.headers.first(name: "X-Warbler-Audit-Id").flatMap { Int64($0) } ?? 0)
    }

    /// The compliance audit trail, newest first (`GET /v1/admin/compliance/audit`); pass the last entry's id as
    /// `before` for older ones.
    public func adminComplianceAudit(before: Int64? = nil, limit: Int? = nil) async throws -> [API.ComplianceAuditEntry] {
        var q: [(String, String)] = []
        if let before { q.append(("before", String(before))) }
        if let limit { q.append(("limit", String(limit))) }
        return try await call(.GET, "/v1/admin/compliance/audit", query: q)
    }

    /// The public key export archives are signed with (`GET /v1/admin/compliance/key`).
    public func adminComplianceKey() async throws -> API.ComplianceKey {
        try await call(.GET, "/v1/admin/compliance/key")
    }

    // MARK: Bots

    /// Uses a bot token (`wbot_…`) as this client's credentials: checks it with `GET /v1/me` and keeps it. A bot
    /// token does not expire and is never refreshed; the WebSocket (``makeConnection``) authenticates with it too.
    @discardableResult
    public func useBotToken(_ token: String) async throws -> UserProfile {
        let response = try await transport.perform(.GET, "/v1/me", token: token)
        guard response.isSuccess else { throw Transport.error(from: response) }
        let me = try Transport.decode(UserProfile.self, from: response)
        await sessionHolder.set(IMSession(user: me, accessToken: token, refreshToken: "", accessTokenExpiresAt: .distantFuture))
        return me
    }

    /// Sends as the bot over REST (`POST /v1/bot/messages`); a repeated `cid` answers with the stored message
    /// (`duplicate: true`), as over the WebSocket.
    public func botSend(_ send: ClientFrame.Send) async throws -> ServerFrame.Ack {
        try await call(.POST, "/v1/bot/messages", json: send)
    }

    /// Creates a bot (admin only; `POST /v1/admin/bots`); the answer holds its token, shown only this once.
    public func adminCreateBot(_ body: API.AdminCreateBot) async throws -> API.BotCredentials {
        try await call(.POST, "/v1/admin/bots", json: body)
    }

    /// Lists bots (admin only; `GET /v1/admin/bots`).
    public func adminBots() async throws -> [API.AdminBot] {
        try await call(.GET, "/v1/admin/bots")
    }

    /// Issues a bot a new token and revokes the old one (admin only; `POST /v1/admin/bots/{id}/token`).
    public func adminRotateBotToken(_ bot: UserID, scopes: [BotScope]? = nil) async throws -> API.BotCredentials {
        try await call(.POST, "/v1/admin/bots/\(bot)/token", json: API.AdminRotateBotToken(scopes: scopes))
    }

    /// Revokes a bot's token (admin only; `DELETE /v1/admin/bots/{id}/token`).
    @discardableResult
    public func adminRevokeBotToken(_ bot: UserID) async throws -> API.AdminBot {
        try await call(.DELETE, "/v1/admin/bots/\(bot)/token")
    }

    // MARK: Webhooks

    /// Subscribes a URL to events (`POST /v1/webhooks`; admins, or a bot for its own conversations). The answer
    /// holds the signing secret, shown only this once.
    public func createWebhook(_ body: API.NewWebhook) async throws -> API.WebhookCreated {
        try await call(.POST, "/v1/webhooks", json: body)
    }

    /// The subscriptions the caller may see (`GET /v1/webhooks`).
    public func webhooks() async throws -> [API.Webhook] {
        try await call(.GET, "/v1/webhooks")
    }

    /// Deletes a subscription and its pending deliveries (`DELETE /v1/webhooks/{id}`).
    public func deleteWebhook(_ id: Int64) async throws {
        try await callVoid(.DELETE, "/v1/webhooks/\(id)")
    }

    /// Turns a subscription on or off (`POST /v1/webhooks/{id}/enabled`).
    @discardableResult
    public func setWebhookEnabled(_ id: Int64, _ enabled: Bool) async throws -> API.Webhook {
        try await call(.POST, "/v1/webhooks/\(id)/enabled", json: API.SetFlag(value: enabled))
    }

    /// A subscription's delivery log, newest first (`GET /v1/webhooks/{id}/deliveries`).
    public func webhookDeliveries(_ id: Int64, limit: Int? = nil) async throws -> [API.WebhookDelivery] {
        try await call(.GET, "/v1/webhooks/\(id)/deliveries", query: limit.map { [("limit", String($0))] } ?? [])
    }

    /// Queues a delivery again (`POST /v1/webhooks/{id}/deliveries/{delivery}/redeliver`).
    public func redeliverWebhook(_ id: Int64, delivery: String) async throws {
        try await callVoid(.POST, "/v1/webhooks/\(id)/deliveries/\(Transport.escape(delivery))/redeliver")
    }

    // MARK: Plumbing

    private struct NoBody: Encodable {}

    private func call<Response: Decodable>(_ method: HTTPMethod, _ path: String, query: [(String, String)] = [],
                                           authenticated: Bool = true) async throws -> Response {
        let response = try await request(method, path, query: query, body: nil, authenticated: authenticated)
        return try Transport.decode(Response.self, from: response)
    }

    private func call<Body: Encodable, Response: Decodable>(_ method: HTTPMethod, _ path: String, json: Body,
                                                            authenticated: Bool = true) async throws -> Response {
        let response = try await request(method, path, body: try Transport.encode(json), authenticated: authenticated)
        return try Transport.decode(Response.self, from: response)
    }

    private func callVoid(_ method: HTTPMethod, _ path: String, authenticated: Bool = true) async throws {
        _ = try await request(method, path, body: nil, authenticated: authenticated)
    }

    private func callVoid<Body: Encodable>(_ method: HTTPMethod, _ path: String, json: Body,
                                           authenticated: Bool = true) async throws {
        _ = try await request(method, path, body: try Transport.encode(json), authenticated: authenticated)
    }

    /// Sends a request, adding the bearer token and handling one refresh-and-retry on `401`. Returns only 2xx responses.
    private func request(_ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: ByteBuffer? = nil,
                         contentType: String = "application/json", authenticated: Bool = true,
                         retryAfterRefresh: Bool = true, timeout: Duration? = nil) async throws -> Transport.Response {
        guard authenticated else {
            let response = try await transport.perform(method, path, query: query, body: body, contentType: contentType,
                                                       token: nil, timeout: timeout)
            guard response.isSuccess else { throw Transport.error(from: response) }
            return response
        }
        let token = try await accessToken()
        var response = try await transport.perform(method, path, query: query, body: body, contentType: contentType,
                                                   token: token, timeout: timeout)
        if response.status == .unauthorized, retryAfterRefresh {
            let rejected = Transport.error(from: response)
            let fresh: IMSession
            do {
                fresh = try await sessionHolder.refresh(stale: token)
            } catch let error as IMError where error.code == .unauthorized || error.code == .forbidden {
                throw rejected
            }
            response = try await transport.perform(method, path, query: query, body: body, contentType: contentType,
                                                   token: fresh.accessToken, timeout: timeout)
        }
        guard response.isSuccess else { throw Transport.error(from: response) }
        return response
    }
}
