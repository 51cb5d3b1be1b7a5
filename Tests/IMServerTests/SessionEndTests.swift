import Foundation
import IMClient
import IMCore
import IMServer
import NIOWebSocket
import Testing

/// Sessions end when they should (issue 9, item 12): a password change or reset, a logout and refresh-token
/// reuse end the access tokens and the open sockets they cover; a socket ends with its access token unless the
/// client sends a fresh one on it.
@Suite(.timeLimit(.minutes(2))) struct SessionEndTests {
    func wsURL(_ server: TestServer) -> String { "ws://127.0.0.1:\(server.port)/v1/ws" }

    func socket(_ server: TestServer, token: String) async -> (RawSocket, ServerFrame.Ready?) {
        let s = RawSocket(url: wsURL(server))
        s.send(.auth(.init(token: token)))
        let ready = await s.next { if case .ready(let r) = $0 { return r }; return nil }
        return (s, ready)
    }

    func login(_ server: TestServer, _ name: String, password: String = "password-123") async throws -> API.AuthResponse {
        let r = try await rawRequest(.POST, server.baseURL + "/v1/auth/login", json: #"{"username":"\#(name)","password":"\#(password)"}"#)
        #expect(r.status == 200)
        return try decode(API.AuthResponse.self, r.body)
    }

    func stillOpen(_ s: RawSocket) async -> Bool {
        s.send(.ping(.init(ref: "alive?")))
        return await s.next { if case .pong(let p) = $0, p.ref == "alive?" { return true }; return nil } == true
    }

    @Test func aPasswordChangeEndsOldAccessTokensAndSockets() async throws {
        try await withServer { server in
            _ = try await server.user("alice")
            let phone = try await login(server, "alice")
            let laptop = try await login(server, "alice")
            let (phoneSocket, r1) = await socket(server, token: phone.accessToken)
            let (laptopSocket, r2) = await socket(server, token: laptop.accessToken)
            #expect(r1 != nil && r2 != nil)

            let change = try await rawRequest(.POST, server.baseURL + "/v1/auth/password",
                                              json: #"{"oldPassword":"password-123","newPassword":"new-password-456"}"#, bearer: phone.accessToken)
            #expect(change.status == 204)
            for token in [phone.accessToken, laptop.accessToken] {
                let me = try await rawRequest(.GET, server.baseURL + "/v1/me", bearer: token)
                #expect(me.status == 401, "\(me.body)")
            }
            #expect(await phoneSocket.closeCode() == WebSocketErrorCode(codeNumber: 4001))
            #expect(await laptopSocket.closeCode() == WebSocketErrorCode(codeNumber: 4001))
            // An old token cannot open a new socket either; the new password's can.
            let (_, refused) = await socket(server, token: laptop.accessToken)
            #expect(refused == nil)
            let fresh = try await login(server, "alice", password: "new-password-456")
            #expect(try await rawRequest(.GET, server.baseURL + "/v1/me", bearer: fresh.accessToken).status == 200)
            let (s, ready) = await socket(server, token: fresh.accessToken)
            #expect(ready != nil)
            #expect(await stillOpen(s))
            s.close()
        }
    }

    @Test func anAdminPasswordResetEndsTheUsersSockets() async throws {
        try await withServer { server in
            let admin = try await server.admin()
            let alice = try await server.user("alice")
            let session = try await login(server, "alice")
            let (s, _) = await socket(server, token: session.accessToken)
            let adminToken = try #require(await admin.client.session).accessToken
            let reset = try await rawRequest(.POST, server.baseURL + "/v1/admin/users/\(alice.id)/password",
                                             json: #"{"password":"reset-password-1"}"#, bearer: adminToken)
            #expect(reset.status == 204)
            #expect(try await rawRequest(.GET, server.baseURL + "/v1/me", bearer: session.accessToken).status == 401)
            #expect(await s.closeCode() == WebSocketErrorCode(codeNumber: 4001))
        }
    }

    @Test func logoutAndRefreshReuseEndOnlyThatLoginSession() async throws {
        try await withServer { server in
            _ = try await server.user("alice")
            let phone = try await login(server, "alice")
            let laptop = try await login(server, "alice")
            let tablet = try await login(server, "alice")
            let (phoneSocket, _) = await socket(server, token: phone.accessToken)
            let (laptopSocket, _) = await socket(server, token: laptop.accessToken)
            let (tabletSocket, _) = await socket(server, token: tablet.accessToken)

            let out = try await rawRequest(.POST, server.baseURL + "/v1/auth/logout", json: #"{"refreshToken":"\#(phone.refreshToken)"}"#)
            #expect(out.status == 204)
            #expect(try await rawRequest(.GET, server.baseURL + "/v1/me", bearer: phone.accessToken).status == 401)
            #expect(await phoneSocket.closeCode() == WebSocketErrorCode(codeNumber: 4001))

            // A stolen refresh token used twice ends the whole login session, its access tokens and sockets too.
            let rotated = try await rawRequest(.POST, server.baseURL + "/v1/auth/refresh", json: #"{"refreshToken":"\#(laptop.refreshToken)"}"#)
            #expect(rotated.status == 200)
            let newer = try decode(API.AuthResponse.self, rotated.body)
            let replay = try await rawRequest(.POST, server.baseURL + "/v1/auth/refresh", json: #"{"refreshToken":"\#(laptop.refreshToken)"}"#)
            #expect(replay.status == 401)
            for token in [laptop.accessToken, newer.accessToken] {
                #expect(try await rawRequest(.GET, server.baseURL + "/v1/me", bearer: token).status == 401)
            }
            #expect(await laptopSocket.closeCode() == WebSocketErrorCode(codeNumber: 4001))

            // The other login session is untouched.
            #expect(try await rawRequest(.GET, server.baseURL + "/v1/me", bearer: tablet.accessToken).status == 200)
            #expect(await stillOpen(tabletSocket))
            tabletSocket.close()
        }
    }

    @Test func aSocketEndsWithItsAccessTokenUnlessAFreshOneIsSentOnIt() async throws {
        try await withServer(.sqlite, { $0.auth.accessTtlSeconds = 5 }) { server in
            _ = try await server.user("alice")
            let first = try await login(server, "alice")
            let (lapsing, r1) = await socket(server, token: first.accessToken)
            let (renewed, r2) = await socket(server, token: first.accessToken)
            #expect(r1?.exp != nil && r1?.exp == r2?.exp)
            try await Task.sleep(for: .milliseconds(1100))   // a later second: a later `exp`
            let second = try await login(server, "alice")
            renewed.send(.auth(.init(token: second.accessToken)))
            let again = await renewed.next { if case .ready(let r) = $0 { return r }; return nil }
            #expect(again?.session == r2?.session)
            #expect((again?.exp ?? 0) > (r2?.exp ?? .max))

            // The one that was not renewed is told why and closed with 4002.
            let told = await lapsing.next(timeout: .seconds(8)) { if case .error(let e) = $0 { return e }; return nil }
            #expect(told?.code == .unauthorized)
            #expect(await lapsing.closeCode() == WebSocketErrorCode(codeNumber: 4002))
            #expect(await stillOpen(renewed))
            // Another user's token is refused on it, and it stays open.
            _ = try await server.user("bob")
            let bob = try await login(server, "bob")
            renewed.send(.auth(.init(token: bob.accessToken)))
            let refused = await renewed.next { if case .error(let e) = $0 { return e }; return nil }
            #expect(refused?.code == .invalid)
            #expect(await renewed.closeCode(timeout: .seconds(10)) == WebSocketErrorCode(codeNumber: 4002))
        }
    }

    @Test func theSDKKeepsItsSocketAcrossTokenExpiry() async throws {
        // Lifetimes long enough that a renewal due on a loaded machine is not late (3 s failed under the full suite).
        try await withServer(.sqlite, { $0.auth.accessTtlSeconds = 8 }) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            let b = try await EventLog.connect(bob)
            let before = a.events.count
            try await Task.sleep(for: .seconds(17))
            // Two token lifetimes later the same socket is still up: no reconnect (not even a quiet one) happened.
            let changes = a.events.dropFirst(before).filter { if case .connectionState = $0 { return true }; return false }
            #expect(changes.isEmpty, "\(changes)")
            _ = try await a.connection.send(conversation: conv, text: "still here")
            #expect(await b.waitForMessages(1, in: conv))
            await a.close(); await b.close()
        }
    }

    @Test func theSDKStopsWhenItsSessionIsEnded() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let a = try await EventLog.connect(alice)
            let other = try await server.device("alice")
            try await other.client.changePassword(old: "password-123", new: "new-password-456")
            #expect(await a.wait { $0.contains { if case .connectionState(.disconnected) = $0 { return true }; return false } })
            try await Task.sleep(for: .seconds(2))
            // Not reconnecting in a loop: the refresh was refused, so the run ended.
            let states = a.events.compactMap { if case .connectionState(let s) = $0 { return s }; return nil }
            #expect(states.last.map { if case .disconnected = $0 { true } else { false } } == true, "\(states)")
            await a.close()
        }
    }
}
