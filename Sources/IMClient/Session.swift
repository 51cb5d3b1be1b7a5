import Foundation
import IMCore
import NIOHTTP1

/// The credentials of a logged-in session. Persist it (it is `Codable`) to resume without logging in again.
public struct IMSession: Sendable, Codable, Hashable {
    /// The logged-in user as returned at login or the last refresh.
    public var user: UserProfile
    /// The short-lived bearer token for REST and the WebSocket.
    public var accessToken: String
    /// The single-use token that obtains a new token pair.
    public var refreshToken: String
    /// When `accessToken` expires, by this device's clock.
    public var accessTokenExpiresAt: Date

    /// Creates a session from its parts.
    public init(user: UserProfile, accessToken: String, refreshToken: String, accessTokenExpiresAt: Date) {
        self.user = user
        self.accessToken = accessToken
        self.refreshToken = refreshToken
        self.accessTokenExpiresAt = accessTokenExpiresAt
    }

    /// Creates a session from an auth response received now.
    public init(_ response: API.AuthResponse, receivedAt: Date = Date()) {
        self.init(user: response.user, accessToken: response.accessToken, refreshToken: response.refreshToken,
                  accessTokenExpiresAt: receivedAt.addingTimeInterval(TimeInterval(response.expiresIn)))
    }
}

/// Holds the session and makes sure only one refresh runs at a time (refresh tokens are single-use).
actor SessionHolder {
    private let transport: Transport
    private(set) var session: IMSession?
    /// Bumped on every change, so a refresh that raced with logout/login does not overwrite the newer state.
    private var version = 0
    private var refreshing: Task<IMSession, any Error>?

    init(transport: Transport) { self.transport = transport }

    func set(_ session: IMSession?) {
        self.session = session
        version += 1
    }

    /// Takes the session out (for logout), so nothing refreshes it afterwards.
    func take() -> IMSession? {
        let s = session
        set(nil)
        return s
    }

    /// A usable access token, refreshed first if it expires within `margin`.
    func accessToken(margin: Duration) async throws -> String {
        guard let s = session else { throw IMError(.unauthorized, "not logged in") }
        let marginSeconds = margin.inSeconds
        if s.accessTokenExpiresAt.timeIntervalSinceNow > marginSeconds { return s.accessToken }
        return try await refresh(stale: s.accessToken).accessToken
    }

    /// Refreshes unless the session has already moved past `stale` (another caller refreshed it).
    /// With `stale == nil` it always refreshes (joining a refresh already running).
    func refresh(stale: String?) async throws -> IMSession {
        guard let s = session else { throw IMError(.unauthorized, "not logged in") }
        if let stale, s.accessToken != stale { return s }
        if let running = refreshing { return try await running.value }
        let refreshToken = s.refreshToken
        let startVersion = version
        let transport = self.transport
        let task = Task<IMSession, any Error> {
            let response = try await transport.perform(.POST, "/v1/auth/refresh",
                                                       body: try Transport.encode(API.Refresh(refreshToken: refreshToken)),
                                                       token: nil)
            guard response.isSuccess else { throw Transport.error(from: response) }
            return IMSession(try Transport.decode(API.AuthResponse.self, from: response))
        }
        refreshing = task
        do {
            let new = try await task.value
            if refreshing == task { refreshing = nil }
            if version == startVersion { set(new) }
            return new
        } catch {
            if refreshing == task { refreshing = nil }
            // A rejected refresh token is spent or revoked: the session is over.
            if let e = error as? IMError, e.code == .unauthorized || e.code == .forbidden, version == startVersion {
                set(nil)
            }
            throw error
        }
    }
}
