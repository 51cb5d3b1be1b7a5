import Foundation
import IMClient
import IMCore
import IMServer
import IMStorage
import NIOWebSocket
import Testing

/// Bot accounts (issue 13): made by an admin, logged in with a hashed, rotatable, revocable token carrying scopes,
/// over the same WebSocket protocol and `POST /v1/bot/messages`, limited per bot, and never shown a conversation
/// they are not in.
@Suite(.timeLimit(.minutes(2))) struct BotTests {
    /// A bot made through the admin API, with a client that uses its token.
    struct TestBot {
        let credentials: API.BotCredentials
        let client: IMClient
        var id: UserID { credentials.bot.user.id }
        var token: String { credentials.token }
    }

    func bot(_ server: TestServer, admin: TestUser, _ name: String, scopes: [BotScope]? = nil) async throws -> TestBot {
        let creds = try await admin.client.adminCreateBot(.init(username: name, description: "test bot \(name)", scopes: scopes))
        let client = try IMClient(baseURL: server.baseURL, deviceName: "bot")
        try await client.useBotToken(creds.token)
        return TestBot(credentials: creds, client: client)
    }

    func stillOpen(_ s: RawSocket) async -> Bool {
        s.send(.ping(.init(ref: "alive?")))
        return await s.next { if case .pong(let p) = $0, p.ref == "alive?" { return true }; return nil } == true
    }

    @Test(arguments: Backend.allCases) func botTokenLifecycleCreateUseRotateRevoke(backend: Backend) async throws {
        try await withServer(backend) { server in
            let admin = try await server.admin()
            let alice = try await server.user("alice")
            let helper = try await bot(server, admin: admin, "helper")
            #expect(helper.token.hasPrefix("wbot_"))
            #expect(helper.credentials.bot.scopes == [.profile, .read, .send])
            #expect(helper.credentials.bot.user.kind == .bot)
            // Clients see a bot as a bot; lists show the token's id, never the token.
            #expect(try await alice.client.user(id: helper.id).kind == .bot)
            #expect(try await alice.client.me().kind == .user)
            let listed = try await admin.client.adminBots()
            #expect(listed.map(\.user.username) == ["helper"])
            #expect(listed.first?.tokenId.map { helper.token.hasPrefix("wbot_" + $0 + ".") } == true)
            // Stored hashed: the database holds a SHA-256 and never the token's text.
            let store = try #require(server.runtime.storage as? SQLStore)
            let rows = try await store.driver.read { db in try await db.query("SELECT hash, scopes FROM bot_tokens") }
            #expect(rows.count == 1)
            #expect(rows.allSatisfy { $0["hash"].text?.count == 64 && $0["hash"].text != helper.token && !($0["hash"].text ?? "").contains("wbot_") })

            // A 1:1 with a bot works like one with a user, over the WebSocket both ways and REST for the bot.
            let conv = try await alice.client.createDirectConversation(with: helper.id)
            let a = try await EventLog.connect(alice)
            let b = try await EventLog.connect(TestUser(client: helper.client, profile: helper.credentials.bot.user))
            _ = try await a.connection.send(conversation: conv.id, text: "hello bot")
            #expect(await b.waitForMessages(1, in: conv.id))
            let wsAck = try await b.connection.send(conversation: conv.id, text: "hello alice")
            let restAck = try await helper.client.botSend(.init(cid: "bot-1", conv: conv.id, text: "over REST"))
            #expect(restAck.seq == wsAck.seq + 1 && !restAck.duplicate)
            // The same cid again is the same message, not a new one.
            let again = try await helper.client.botSend(.init(cid: "bot-1", conv: conv.id, text: "over REST"))
            #expect(again.duplicate && again.seq == restAck.seq)
            #expect(await a.waitForMessages(3, in: conv.id))
            #expect(a.userMessages(in: conv.id).map(\.text) == ["hello bot", "hello alice", "over REST"])
            #expect(a.userMessages(in: conv.id).last?.sender == helper.id)

            // Rotation: the old token stops at once (REST and its open socket), the new one works.
            let raw = RawSocket(url: wsURL(server))
            raw.send(.auth(.init(token: helper.token)))
            #expect(await raw.next { if case .ready(let r) = $0 { return r }; return nil }?.user == helper.id)
            let rotated = try await admin.client.adminRotateBotToken(helper.id)
            #expect(rotated.token != helper.token && rotated.bot.tokenId != helper.credentials.bot.tokenId)
            #expect(try await rawRequest(.GET, server.baseURL + "/v1/me", bearer: helper.token).status == 401)
            #expect(await raw.closeCode() == WebSocketErrorCode(codeNumber: 4001))
            #expect(try await rawRequest(.GET, server.baseURL + "/v1/me", bearer: rotated.token).status == 200)

            // Revocation: nothing works any more until an admin rotates again.
            let revoked = try await admin.client.adminRevokeBotToken(helper.id)
            #expect(revoked.tokenId == nil)
            #expect(try await rawRequest(.GET, server.baseURL + "/v1/me", bearer: rotated.token).status == 401)
            let refused = RawSocket(url: wsURL(server))
            refused.send(.auth(.init(token: rotated.token)))
            #expect(await refused.next { if case .ready(let r) = $0 { return r }; return nil } == nil)
            await a.close(); await b.close()
        }
    }

    @Test func scopesAreEnforcedAndBotsCannotActAsPeople() async throws {
        try await withServer { server in
            let admin = try await server.admin()
            let alice = try await server.user("alice")
            let sender = try await bot(server, admin: admin, "sender", scopes: [.send])
            let reader = try await bot(server, admin: admin, "reader", scopes: [.read])
            let conv = try await alice.client.createGroup(name: "ops", members: [sender.id, reader.id])

            // A send-only token: REST send yes; the WebSocket, history and profile changes no.
            let ack = try await sender.client.botSend(.init(cid: "s1", conv: conv.id, text: "deploy done"))
            #expect(ack.seq > 0)
            await expectIMError(.forbidden) { _ = try await sender.client.history(conv.id) }
            await expectIMError(.forbidden) { _ = try await sender.client.updateProfile(displayName: "Sender") }
            let ws = RawSocket(url: wsURL(server))
            ws.send(.auth(.init(token: sender.token)))
            let err = await ws.next { if case .error(let e) = $0 { return e }; return nil }
            #expect(err?.code == .forbidden)

            // A read-only token: history and the socket yes; sends no (either way).
            #expect(try await reader.client.history(conv.id).messages.contains { $0.text == "deploy done" })
            await expectIMError(.forbidden) { _ = try await reader.client.botSend(.init(cid: "r1", conv: conv.id, text: "x")) }
            let r = try await EventLog.connect(TestUser(client: reader.client, profile: reader.credentials.bot.user))
            await expectIMError(.forbidden) { _ = try await r.connection.send(conversation: conv.id, text: "nope") }
            await r.close()

            // Endpoints for people refuse bot tokens, whatever the scopes; a bot has no password and is never an admin.
            await expectIMError(.forbidden) { _ = try await reader.client.createGroup(name: "x", members: [alice.id]) }
            await expectIMError(.forbidden) { _ = try await reader.client.createDirectConversation(with: alice.id) }
            await expectIMError(.forbidden) { _ = try await alice.client.botSend(.init(cid: "p1", conv: conv.id, text: "x")) }
            let login = try await rawRequest(.POST, server.baseURL + "/v1/auth/login", json: #"{"username":"reader","password":""}"#)
            #expect(login.status == 401 && login.body.contains("bot token"))
            await expectIMError(.invalid) { try await admin.client.adminSetAdmin(reader.id, true) }
            await expectIMError(.invalid) { try await admin.client.adminSetPassword(reader.id, password: "password-123456") }
            // Only admins manage bots.
            await expectIMError(.forbidden) { _ = try await alice.client.adminBots() }
        }
    }

    @Test(arguments: Backend.allCases) func aBotNeverSeesAConversationItIsNotIn(backend: Backend) async throws {
        try await withServer(backend) { server in
            let admin = try await server.admin()
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let helper = try await bot(server, admin: admin, "helper")
            let withBot = try await alice.client.createGroup(name: "with bot", members: [helper.id])
            let private_ = try await alice.client.createDirectConversation(with: bob.id)

            let b = try await EventLog.connect(TestUser(client: helper.client, profile: helper.credentials.bot.user))
            let a = try await EventLog.connect(alice)
            _ = try await a.connection.send(conversation: private_.id, text: "secret")
            _ = try await a.connection.send(conversation: withBot.id, text: "for the bot")
            #expect(await b.waitForMessages(1, in: withBot.id))
            try await Task.sleep(for: .milliseconds(200))
            #expect(b.messages(in: private_.id).isEmpty)
            #expect(try await helper.client.conversations().map(\.id) == [withBot.id])
            await expectIMError(.notFound) { _ = try await helper.client.history(private_.id) }
            await expectIMError(.notFound) { _ = try await helper.client.botSend(.init(cid: "x1", conv: private_.id, text: "hi")) }
            await expectIMError(.notFound) { _ = try await b.connection.send(conversation: private_.id, text: "hi") }
            await a.close(); await b.close()
        }
    }

    @Test func sendsAreLimitedPerBotAcrossRESTAndTheSocket() async throws {
        try await withServer(.sqlite, { $0.bots.sendsPerMinute = 1; $0.bots.sendBurst = 3 }) { server in
            let admin = try await server.admin()
            let alice = try await server.user("alice")
            let helper = try await bot(server, admin: admin, "helper")
            let conv = try await alice.client.createDirectConversation(with: helper.id)
            for i in 1...2 { _ = try await helper.client.botSend(.init(cid: "c\(i)", conv: conv.id, text: "m\(i)")) }
            // The socket shares the bot's budget (a raw socket: the SDK would wait out the limit and retry).
            let raw = RawSocket(url: wsURL(server))
            raw.send(.auth(.init(token: helper.token)))
            #expect(await raw.next { if case .ready(let r) = $0 { return r }; return nil } != nil)
            raw.send(.send(.init(cid: "c3", conv: conv.id, text: "m3")))
            #expect(await raw.next { if case .ack(let a) = $0 { return a }; return nil }?.cid == "c3")
            raw.send(.send(.init(cid: "c4", conv: conv.id, text: "m4")))
            let refused = await raw.next { if case .error(let e) = $0 { return e }; return nil }
            #expect(refused?.code == .rateLimited && refused?.cid == "c4" && (refused?.retryAfter ?? 0) > 1)
            let over = try await rawRequest(.POST, server.baseURL + "/v1/bot/messages",
                                            json: #"{"cid":"c5","conv":\#(conv.id),"kind":"text","text":"m5"}"#, bearer: helper.token)
            #expect(over.status == 429 && over.headers.first(name: "Retry-After") != nil)
            // People are not limited by the bot's budget.
            _ = try await alice.client.createDirectConversation(with: helper.id)
            let a = try await EventLog.connect(alice)
            _ = try await a.connection.send(conversation: conv.id, text: "still fine")
            await a.close(); raw.close()
        }
    }

    @Test func aTokenRevokedOutsideTheServerEndsItsSocketsWithinTheCheckPeriod() async throws {
        try await withServer(.sqlite, { $0.bots.revocationCheckSeconds = 0.2 }) { server in
            let admin = try await server.admin()
            let helper = try await bot(server, admin: admin, "helper")
            let raw = RawSocket(url: wsURL(server))
            raw.send(.auth(.init(token: helper.token)))
            #expect(await raw.next { if case .ready(let r) = $0 { return r }; return nil } != nil)
            #expect(await stillOpen(raw))
            // What `warbler bots revoke` does: the database only, no word to the running server.
            _ = try await server.runtime.storage.revokeBotTokens(bot: helper.id, now: Int64(Date().timeIntervalSince1970 * 1000))
            #expect(await raw.closeCode(timeout: .seconds(5)) == WebSocketErrorCode(codeNumber: 4001))
        }
    }

    @Test func botSettingsAreValidated() throws {
        var c = ServerConfig()
        c.bots.sendsPerMinute = 0
        #expect(throws: ConfigError.self) { try c.validate() }
        c = ServerConfig()
        c.bots.revocationCheckSeconds = 0
        #expect(throws: ConfigError.self) { try c.validate() }
        #expect(BotScope.parse("read, send") == .success([.read, .send]))
        if case .failure(let e) = BotScope.parse("write") { #expect(e.message.contains("read, send and/or profile")) } else { Issue.record("write parsed") }
    }
}
