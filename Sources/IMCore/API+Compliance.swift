/// Compliance (docs/protocol.md, "Compliance"): admins search every conversation and export a conversation's or a
/// user's messages as a signed archive; each search and export is recorded in an audit trail first.
extension API {
    /// `POST /v1/admin/compliance/exports`: exactly one of `conversation` and `user`, and the time range
    /// `from` ≤ ts < `to` (ms since 1970).
    public struct ComplianceExportRequest: Sendable, Codable, Hashable {
        /// Every message of this conversation in the range.
        public var conversation: ConversationID?
        /// Every message this user sent in the range, in any conversation.
        public var user: UserID?
        public var from: Int64
        public var to: Int64
        enum CodingKeys: String, CodingKey { case conversation = "conv", user, from, to }
        public init(conversation: ConversationID? = nil, user: UserID? = nil, from: Int64, to: Int64) {
            self.conversation = conversation; self.user = user; self.from = from; self.to = to
        }
    }

    /// One entry of the compliance audit trail (`GET /v1/admin/compliance/audit`), newest first.
    public struct ComplianceAuditEntry: Sendable, Codable, Hashable {
        public enum Action: String, Sendable, Codable, Hashable { case search, export }
        public var id: Int64
        /// When (ms since 1970).
        public var at: Int64
        /// Which admin.
        public var admin: UserID
        /// Their username when read back (nil for a deleted account).
        public var adminName: String?
        public var action: Action
        /// A search's words.
        public var query: String?
        /// The conversation searched or exported.
        public var conversation: ConversationID?
        /// The sender filter of a search, or the user whose messages were exported.
        public var user: UserID?
        public var from: Int64?
        public var to: Int64?
        /// A search's `before` cursor (the page asked for).
        public var before: String?
        /// Messages found (a search page's results) or exported.
        public var results: Int64
        /// An export's archive, by its SHA-256 (hex), so a copy handed on can be matched with its entry.
        public var archiveSha256: String?
        enum CodingKeys: String, CodingKey {
            case id, at, admin, adminName, action, query, conversation = "conv", user, from, to, before, results, archiveSha256
        }
        public init(id: Int64 = 0, at: Int64, admin: UserID, adminName: String? = nil, action: Action, query: String? = nil,
                    conversation: ConversationID? = nil, user: UserID? = nil, from: Int64? = nil, to: Int64? = nil,
                    before: String? = nil, results: Int64, archiveSha256: String? = nil) {
            self.id = id; self.at = at; self.admin = admin; self.adminName = adminName; self.action = action; self.query = query
            self.conversation = conversation; self.user = user; self.from = from; self.to = to; self.before = before
            self.results = results; self.archiveSha256 = archiveSha256
        }
    }

    /// `GET /v1/admin/compliance/key`: the Ed25519 public key export archives are signed with.
    public struct ComplianceKey: Sendable, Codable, Hashable {
        /// `ed25519`.
        public var algorithm: String
        /// Base64 of the 32-byte public key; give it to `warbler compliance-verify --public-key`.
        public var publicKey: String
        /// The first 16 hex digits of the key's SHA-256, as the archive's manifest names its signer.
        public var fingerprint: String
        public init(algorithm: String, publicKey: String, fingerprint: String) {
            self.algorithm = algorithm; self.publicKey = publicKey; self.fingerprint = fingerprint
        }
    }

    /// `export.json` inside a compliance archive: what was exported, by whom, when.
    public struct ComplianceExportInfo: Sendable, Codable, Hashable {
        public var format: Int
        public var conversation: ConversationID?
        public var user: UserID?
        public var from: Int64
        public var to: Int64
        public var createdAt: Int64
        public var requestedBy: UserID
        public var requestedByName: String
        public var serverVersion: String
        public var messages: Int64
        public var attachments: Int64
        /// Attachments whose bytes were gone when the export was made (their messages are still in it).
        public var missingAttachments: [String]
        enum CodingKeys: String, CodingKey {
            case format, conversation = "conv", user, from, to, createdAt, requestedBy, requestedByName, serverVersion, messages
            case attachments, missingAttachments
        }
        public init(format: Int = 1, conversation: ConversationID?, user: UserID?, from: Int64, to: Int64, createdAt: Int64,
                    requestedBy: UserID, requestedByName: String, serverVersion: String, messages: Int64, attachments: Int64,
                    missingAttachments: [String]) {
            self.format = format; self.conversation = conversation; self.user = user; self.from = from; self.to = to
            self.createdAt = createdAt; self.requestedBy = requestedBy; self.requestedByName = requestedByName
            self.serverVersion = serverVersion; self.messages = messages; self.attachments = attachments
            self.missingAttachments = missingAttachments
        }
    }
}
