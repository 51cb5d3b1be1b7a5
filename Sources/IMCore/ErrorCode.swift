/// Machine-readable error codes, shared by REST error bodies and WebSocket `error` frames.
public enum ErrorCode: String, Sendable, Codable, Hashable {
    /// The frame or body is not valid JSON or lacks a required field.
    case badFrame = "bad_frame"
    /// The frame's `type` is not one this server knows.
    case unknownType = "unknown_type"
    /// The frame or body is larger than the configured limit.
    case tooLarge = "too_large"
    /// Too many requests; slow down and retry after `retryAfter` seconds.
    case rateLimited = "rate_limited"
    /// Missing, expired or invalid credentials.
    case unauthorized
    /// Authenticated but not allowed (for example not an admin, or role too low).
    case forbidden
    /// No such thing, or you are not a member (the two are not told apart).
    case notFound = "not_found"
    /// A field has an invalid value.
    case invalid
    /// The thing already exists (username taken, …).
    case conflict
    /// The recipient has blocked you, or you blocked them.
    case blocked
    /// The group has reached its size limit.
    case groupFull = "group_full"
    /// An owner or admin muted you in this group, or muted the whole group; the message says until when.
    case muted
    /// Recall is only possible within the configured window.
    case recallWindow = "recall_window"
    /// The connection must authenticate first.
    case notAuthenticated = "not_authenticated"
    /// Registration is closed; an admin must create the account.
    case registrationClosed = "registration_closed"
    /// The server is shutting down or storage is unavailable; retry.
    case unavailable
    /// An unexpected server fault; the request may be retried.
    case `internal`
}

/// An error with a code and a human-readable message, as sent to clients.
public struct IMError: Error, Sendable, Codable, Hashable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String
    public init(_ code: ErrorCode, _ message: String) { self.code = code; self.message = message }
    public var description: String { "\(code.rawValue): \(message)" }

    public static func notFound(_ what: String = "not found") -> IMError { IMError(.notFound, what) }
    public static func invalid(_ why: String) -> IMError { IMError(.invalid, why) }
    public static func forbidden(_ why: String) -> IMError { IMError(.forbidden, why) }
}
