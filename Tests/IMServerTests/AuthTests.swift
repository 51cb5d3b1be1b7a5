import AsyncHTTPClient
import Foundation
import IMClient
import IMCore
import NIOCore
import NIOHTTP1
import IMServer
import Testing

/// Minimal raw HTTP for checks the SDK deliberately hides (status codes, headers, token reuse).
func rawRequest(_ method: HTTPMethod, _ url: String, json: String? = nil, bearer: String? = nil,
                headers: [(String, String)] = []) async throws -> (status: Int, body: String, headers: HTTPHeaders) {
    var req = HTTPClientRequest(url: url)
    req.method = method
    if let json { req.body = .bytes(ByteBuffer(string: json)); req.headers.add(name: "Content-Type", value: "application/json") }
    if let bearer { req.headers.add(name: "Authorization", value: "Bearer \(bearer)") }
    for (k, v) in headers { req.headers.add(name: k, value: v) }
    let resp = try await HTTPClient.shared.execute(req, timeout: .seconds(10))
    let body = try await resp.body.collect(upTo: 1 << 20)
    return (Int(resp.status.code), String(buffer: body), resp.headers)
}

func decode<T: Decodable>(_ t: T.Type, _ s: String) throws -> T { try JSONDecoder().decode(T.self, from: Data(s.utf8)) }

@Suite(.timeLimit(.minutes(2))) struct AuthTests {
    @Test func registerLoginAndWrongPassword() async throws {
        try await withServer { server in
            _ = try await server.user("alice", password: "correct-horse")
            let c = try IMClient(baseURL: server.baseURL)
            await expectIMError(.unauthorized) { _ = try await c.login(username: "alice", password: "wrong-horse") }
            await expectIMError(.unauthorized) { _ = try await c.login(username: "nobody", password: "whatever1") }
            #expect(try await c.login(username: "ALICE", password: "correct-horse").username == "alice")
            await expectIMError(.conflict) { _ = try await IMClient(baseURL: server.baseURL).register(username: "alice", password: "another-pw") }
            await expectIMError(.invalid) { _ = try await IMClient(baseURL: server.baseURL).register(username: "x", password: "another-pw") }
            await expectIMError(.invalid) { _ = try await IMClient(baseURL: server.baseURL).register(username: "carol", password: "short") }
            try await c.shutdown()
        }
    }

    @Test func refreshTokensRotateAndReuseRevokesTheSession() async throws {
        try await withServer { server in
            _ = try await server.user("alice")
            let login = try await rawRequest(.POST, server.baseURL + "/v1/auth/login", json: #"{"username":"alice","password":"password-123"}"#)
            #expect(login.status == 200)
            let first = try decode(API.AuthResponse.self, login.body)
            let r1 = try await rawRequest(.POST, server.baseURL + "/v1/auth/refresh", json: #"{"refreshToken":"\#(first.refreshToken)"}"#)
            #expect(r1.status == 200)
            let second = try decode(API.AuthResponse.self, r1.body)
            #expect(second.refreshToken != first.refreshToken)
            #expect(try await rawRequest(.GET, server.baseURL + "/v1/me", bearer: second.accessToken).status == 200)

            // Replaying the spent token is theft: it fails, and so does the token rotated from it.
            let replay = try await rawRequest(.POST, server.baseURL + "/v1/auth/refresh", json: #"{"refreshToken":"\#(first.refreshToken)"}"#)
            #expect(replay.status == 401)
            #expect(replay.body.contains("reuse"))
            let victim = try await rawRequest(.POST, server.baseURL + "/v1/auth/refresh", json: #"{"refreshToken":"\#(second.refreshToken)"}"#)
            #expect(victim.status == 401)
        }
    }

    @Test func logoutRevokesAndPasswordChangeRevokesEverything() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let s1 = try #require(await alice.client.session)
            try await alice.client.logout()
            let r = try await rawRequest(.POST, server.baseURL + "/v1/auth/refresh", json: #"{"refreshToken":"\#(s1.refreshToken)"}"#)
            #expect(r.status == 401)

            let phone = try await server.device("alice")
            let laptop = try await server.device("alice")
            let laptopSession = try #require(await laptop.client.session)
            try await phone.client.changePassword(old: "password-123", new: "new-password-456")
            let stale = try await rawRequest(.POST, server.baseURL + "/v1/auth/refresh", json: #"{"refreshToken":"\#(laptopSession.refreshToken)"}"#)
            #expect(stale.status == 401)
            await expectIMError(.unauthorized) { try await laptop.client.changePassword(old: "password-123", new: "whatever-789") }
            _ = try await IMClient(baseURL: server.baseURL).login(username: "alice", password: "new-password-456")
        }
    }

    @Test func tamperedAndMissingTokensAreRejected() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let token = try #require(await alice.client.session).accessToken
            #expect(try await rawRequest(.GET, server.baseURL + "/v1/me").status == 401)
            var parts = token.split(separator: ".").map(String.init)
            parts[1] = parts[1].replacingOccurrences(of: "a", with: "b")
            #expect(try await rawRequest(.GET, server.baseURL + "/v1/me", bearer: parts.joined(separator: ".")).status == 401)
            #expect(try await rawRequest(.GET, server.baseURL + "/v1/me", bearer: "not-a-jwt").status == 401)
        }
    }

    @Test func accessTokensExpire() async throws {
        try await withServer(.sqlite, { $0.auth.accessTtlSeconds = 1 }) { server in
            let alice = try await server.user("alice")
            let token = try #require(await alice.client.session).accessToken
            try await Task.sleep(for: .milliseconds(2100))
            let r = try await rawRequest(.GET, server.baseURL + "/v1/me", bearer: token)
            #expect(r.status == 401 && r.body.contains("expired"))
            // The SDK refreshes by itself.
            #expect(try await alice.client.me().username == "alice")
        }
    }

    @Test func loginAttemptsAreRateLimitedPerAccount() async throws {
        try await withServer(.sqlite, { $0.auth.loginPerMinutePerAccount = 3 }) { server in
            _ = try await server.user("alice")
            var statuses: [Int] = []
            var retryAfter: String?
            for _ in 0..<5 {
                let r = try await rawRequest(.POST, server.baseURL + "/v1/auth/login", json: #"{"username":"alice","password":"bad-password"}"#)
                statuses.append(r.status)
                if r.status == 429 { retryAfter = r.headers.first(name: "Retry-After") }
            }
            #expect(statuses == [401, 401, 401, 429, 429])
            #expect(retryAfter.flatMap(Int.init).map { $0 >= 1 } == true)
            // Another account from the same address is not affected by alice's limit.
            _ = try await server.user("bob")
            #expect(try await rawRequest(.POST, server.baseURL + "/v1/auth/login", json: #"{"username":"bob","password":"password-123"}"#).status == 200)
        }
    }

    @Test func adminOnlyRegistrationAndAdminAPI() async throws {
        try await withServer(.sqlite, { $0.auth.registration = "admin" }) { server in
            await expectIMError(.registrationClosed) { _ = try await IMClient(baseURL: server.baseURL).register(username: "walkin", password: "password-123") }
            let root = try await server.admin()
            let carol = try await root.client.adminCreateUser(username: "carol", password: "password-123", displayName: "Carol")
            let c = try IMClient(baseURL: server.baseURL)
            #expect(try await c.login(username: "carol", password: "password-123").displayName == "Carol")
            await expectIMError(.forbidden) { _ = try await c.adminUsers() }
            #expect(try await root.client.adminUsers().map(\.user.username).sorted() == ["carol", "root"])
            let stats = try await root.client.adminStats()
            #expect(stats.users == 2)

            try await root.client.adminSetDisabled(carol.id, true)
            await expectIMError(.unauthorized) { _ = try await IMClient(baseURL: server.baseURL).login(username: "carol", password: "password-123") }
            try await root.client.adminSetDisabled(carol.id, false)
            try await root.client.adminSetPassword(carol.id, password: "reset-password-1")
            _ = try await IMClient(baseURL: server.baseURL).login(username: "carol", password: "reset-password-1")
        }
    }

    @Test func passwordsAreStoredAsBcrypt() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let rec = try #require(try await server.runtime.storage.user(id: alice.id))
            #expect(rec.passwordHash.hasPrefix("$2"))
            #expect(!rec.passwordHash.contains("password-123"))
        }
    }
}

@Suite(.timeLimit(.minutes(1))) struct ProfileTests {
    @Test func profilesAndLookupByUsername() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let updated = try await alice.client.updateProfile(displayName: "Alice A.", avatar: "https://example.invalid/a.png")
            #expect(updated.displayName == "Alice A." && updated.avatar == "https://example.invalid/a.png")
            let seen = try await bob.client.user(username: "alice")
            #expect(seen.id == alice.id && seen.displayName == "Alice A.")
            #expect(try await bob.client.user(id: alice.id).avatar == updated.avatar)
            await expectIMError(.notFound) { _ = try await bob.client.user(username: "nobody") }
            await expectIMError(.invalid) { _ = try await alice.client.updateProfile(displayName: String(repeating: "x", count: 65)) }
            // Presence is visible to people who share a conversation, not to strangers.
            _ = try await alice.client.createDirectConversation(with: bob.id)
            let carol = try await server.user("carol")
            #expect(try await bob.client.presence(of: [alice.id]).count == 1)
            #expect(try await carol.client.presence(of: [alice.id]).isEmpty)
            let version = try await rawRequest(.GET, server.baseURL + "/v1/version")
            #expect(version.status == 200 && version.body.contains(WarblerVersion.version))
        }
    }
}
