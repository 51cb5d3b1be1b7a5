import Crypto
import Foundation
import IMCore
import IMStorage

/// Bot tokens: `wbot_` + a public id (16 hex digits) + `.` + 32 random bytes (base64url). Only the SHA-256 of the
/// whole token is stored. A connection authenticated by one has the session id `bot:ID`, so revoking the token ends
/// exactly its connections (on every node, through the hub's session-end notice).
enum BotTokens {
    static let prefix = "wbot_"
    /// A bot token does not expire; its connections are re-checked against revocation instead. This is the `exp`
    /// they are given (a year), far beyond any connection's life.
    static let connectionLifetimeSeconds: Int64 = 365 * 24 * 3600

    static func isBotToken(_ token: String) -> Bool { token.hasPrefix(prefix) }

    /// A new token for `bot` with `scopes`, and the record to store (with its hash, never the token).
    static func make(bot: UserID, scopes: [BotScope], now: Int64) -> (token: String, record: BotTokenRecord) {
        var g = SystemRandomNumberGenerator()
        let id = (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
        let token = prefix + id + "." + TokenService.randomToken(bytes: 32)
        return (token, BotTokenRecord(id: id, bot: bot, hash: TokenService.hashRefreshToken(token), scopes: scopes, createdAt: now))
    }

    static func sessionID(tokenID: String) -> String { "bot:" + tokenID }

    static func tokenID(sessionID: String) -> String? {
        sessionID.hasPrefix("bot:") ? String(sessionID.dropFirst(4)) : nil
    }
}
