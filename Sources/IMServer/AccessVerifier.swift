import IMCore
import IMStorage

/// Decides whether an access token is still honoured, for REST and the gateway alike: a valid signature and
/// expiry, an enabled account, a token generation not below the user's (revoking all tokens raises it), and a
/// login session (`sid`) that has not been ended (logout, refresh-token reuse).
struct AccessVerifier: Sendable {
    let tokens: TokenService
    let storage: any Storage

    func verify(_ token: String, now: Int64 = nowMillis()) async throws -> (claims: AccessClaims, user: UserRecord) {
        if BotTokens.isBotToken(token) { return try await verifyBot(token, now: now) }
        let claims = try tokens.verifyAccess(token, now: now).get()
        guard let user = try await storage.user(id: claims.sub), !user.disabled else {
            throw IMError(.unauthorized, "this account is disabled")
        }
        try await stillValid(claims, user: user, now: now)
        return (claims, user)
    }

    /// The revocation checks alone, for a token already verified (the gateway repeats them after registering
    /// a socket, so a revocation that raced the handshake still ends it).
    func stillValid(_ claims: AccessClaims, user: UserRecord? = nil, now: Int64 = nowMillis()) async throws {
        var user = user
        if user == nil { user = try await storage.user(id: claims.sub) }
        guard let user, !user.disabled else {
            throw IMError(.unauthorized, "this account is disabled")
        }
        if let tokenID = BotTokens.tokenID(sessionID: claims.sid) {
            guard user.profile.kind == .bot, try await storage.isBotTokenLive(id: tokenID) else {
                throw IMError(.unauthorized, "this bot token was revoked or replaced; use the bot's current token")
            }
            return
        }
        guard (claims.gen ?? 0) >= user.tokenGeneration, try await storage.isSessionLive(family: claims.sid, now: now) else {
            throw IMError(.unauthorized, "this session has ended (signed out, or the password was changed); log in again")
        }
    }

    /// A bot token (`wbot_ID.SECRET`): looked up by its hash; its claims last as long as the token is not revoked.
    private func verifyBot(_ token: String, now: Int64) async throws -> (claims: AccessClaims, user: UserRecord) {
        guard let rec = try await storage.botToken(hash: TokenService.hashRefreshToken(token)), rec.revokedAt == nil else {
            throw IMError(.unauthorized, "unknown or revoked bot token; ask an administrator for the bot's current token")
        }
        guard let user = try await storage.user(id: rec.bot), user.profile.kind == .bot, !user.disabled else {
            throw IMError(.unauthorized, "this bot is disabled")
        }
        let claims = AccessClaims(sub: rec.bot, adm: false, sid: BotTokens.sessionID(tokenID: rec.id), iat: now / 1000,
                                  exp: now / 1000 + BotTokens.connectionLifetimeSeconds, iss: TokenService.issuer, gen: nil,
                                  scopes: rec.scopes)
        return (claims, user)
    }
}
