import Foundation
import IMClient
import IMCore
import IMServer
import Logging
import Testing


@Suite(.timeLimit(.minutes(2))) struct ProtocolTests {
    @Test func firstFrameMustAuthenticate() async throws {
        try await withServer { server in
            let s = RawSocket(url: wsURL(server))
            s.send(.ping(.init(ref: "x")))
            let f = await s.next()
            guard case .error(let e)? = f else { Issue.record("got \(String(describing: f))"); return }
            #expect(e.code == .notAuthenticated)
            #expect(await s.next(timeout: .seconds(5)) == nil)   // closed

            let bad = RawSocket(url: wsURL(server))
            bad.send(.auth(.init(token: "forged.token.here")))
            guard case .error(let e2)? = await bad.next() else { Issue.record("no error"); return }
            #expect(e2.code == .unauthorized)
        }
    }

    @Test func malformedAndUnknownFramesGetErrorsAndTheConnectionLives() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let s = try await authed(server, alice)
            for (text, code) in [("not json", ErrorCode.badFrame), (#"{"type":"teleport"}"#, .unknownType),
                                 (#"{"type":"send","conv":1,"kind":"text","text":"x"}"#, .badFrame),
                                 (#"{"type":"send","cid":"c","conv":1,"kind":"system","text":"x"}"#, .invalid),
                                 (#"{"type":"send","cid":"","conv":1,"kind":"text","text":"x"}"#, .invalid)] {
                s.send(text)
                let e = await s.next { if case .error(let e) = $0 { return e }; return nil }
                #expect(e?.code == code, "\(text)")
            }
            s.send(.ping(.init(ref: "still-alive")))
            let pong = await s.next { if case .pong(let p) = $0 { return p }; return nil }
            #expect(pong?.ref == "still-alive")
            s.close()
        }
    }

    @Test func oversizedFramesAreAnsweredThenHugeOnesClose() async throws {
        try await withServer(.sqlite, { $0.limits.frameBytes = 2048 }) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let s = try await authed(server, alice)
            s.send(.send(.init(cid: "big", conv: conv, text: String(repeating: "x", count: 4000))))
            let e = await s.next { if case .error(let e) = $0 { return e }; return nil }
            #expect(e?.code == .tooLarge)
            s.send(.send(.init(cid: "ok", conv: conv, text: "small")))
            let ack = await s.next { if case .ack(let a) = $0 { return a }; return nil }
            #expect(ack?.cid == "ok")
            // Far beyond the limit the socket is closed (1009) instead of buffering it.
            s.send(String(repeating: "y", count: 2048 * 5))
            #expect(await s.next(timeout: .seconds(5)) { _ in nil as Int? } == nil)
            #expect(try await server.runtime.storage.messageCount() == 1)
        }
    }

    @Test func sendsPerSecondAreLimitedPerConnection() async throws {
        try await withServer(.sqlite, { $0.limits.sendsPerSecond = 2; $0.limits.sendBurst = 3 }) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let s = try await authed(server, alice)
            for i in 0..<6 { s.send(.send(.init(cid: "r\(i)", conv: conv, text: "burst \(i)"))) }
            var acks = 0, limited: [ServerFrame.ErrorFrame] = []
            while acks + limited.count < 6 {
                guard let f = await s.next() else { break }
                if case .ack = f { acks += 1 }
                if case .error(let e) = f, e.code == .rateLimited { limited.append(e) }
            }
            #expect(acks == 3)
            #expect(limited.count == 3)
            #expect(limited.allSatisfy { ($0.retryAfter ?? 0) > 0 && $0.cid != nil })
            s.close()
        }
    }

    @Test func resumeAfterReconnectOverRawFrames() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            for i in 1...10 { _ = try await a.connection.send(conversation: conv, text: "r\(i)") }
            let s = try await authed(server, bob)
            s.send(.sync(.init(cursors: [conv: 4], limit: 3)))
            var seqs: [Int64] = []
            var synced: ServerFrame.Synced?
            while synced == nil, let f = await s.next() {
                if case .msg(let m) = f { seqs.append(m.seq) }
                if case .synced(let sy) = f { synced = sy }
            }
            #expect(seqs == [5, 6, 7])
            #expect(synced?.more == [conv])
            s.send(.sync(.init(cursors: [conv: 7])))
            seqs = []; synced = nil
            while synced == nil, let f = await s.next() {
                if case .msg(let m) = f { seqs.append(m.seq) }
                if case .synced(let sy) = f { synced = sy }
            }
            #expect(seqs == [8, 9, 10])
            #expect(synced?.more == [])
            // Live messages continue in order after the sync.
            _ = try await a.connection.send(conversation: conv, text: "live")
            let live = await s.next { if case .msg(let m) = $0 { return m }; return nil }
            #expect(live?.seq == 11)
            s.close(); await a.close()
        }
    }

    @Test(arguments: Backend.allCases) func aConnectionSeesEachMessageOnceInOrderWhenSyncingMidStream(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            let total: Int64 = 400
            let sending = Task { for i in 1...total { _ = try await a.connection.send(conversation: conv, text: "x\(i)") } }
            // Bob authenticates while messages are flowing, waits a little (live ones are held), then syncs from 0.
            let s = try await authed(server, bob)
            try await Task.sleep(for: .milliseconds(30))
            s.send(.sync(.init(cursors: [:], limit: 1000)))
            var seqs: [Int64] = []
            while seqs.last != total, let f = await s.next(timeout: .seconds(20)) {
                if case .msg(let m) = f { seqs.append(m.seq) }
            }
            try await sending.value
            // The server, not the SDK, guarantees this: strictly increasing, no gaps, no repeats.
            #expect(seqs == Array(1...total))
            s.close(); await a.close()
        }
    }

    @Test func foreignOriginsCannotOpenTheSocket() async throws {
        try await withServer { server in
            let r = try await rawRequest(.GET, "http://127.0.0.1:\(server.port)/v1/ws",
                                         headers: [("Origin", "https://evil.example"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                   ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")])
            #expect(r.status != 101)
        }
    }
}

@Suite(.timeLimit(.minutes(2))) struct OperationsTests {
    @Test func healthReadinessAndMetrics() async throws {
        try await withServer { server in
            #expect(try await rawRequest(.GET, server.baseURL + "/healthz").status == 200)
            #expect(try await rawRequest(.GET, server.baseURL + "/readyz").status == 200)
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            let b = try await EventLog.connect(bob)
            for i in 1...5 { _ = try await a.connection.send(conversation: conv, text: "m\(i)") }
            #expect(await b.waitForMessages(5, in: conv))
            let metrics = try await rawRequest(.GET, server.metricsURL)
            #expect(metrics.status == 200)
            for name in ["warbler_connections 2", "warbler_sends_total 5", "warbler_send_to_ack_seconds_bucket",
                         "warbler_send_to_deliver_seconds_count", "warbler_storage_commit_seconds_count", "warbler_storage_batch_size_bucket",
                         "warbler_deliveries_total"] {
                #expect(metrics.body.contains(name), "\(name)")
            }
            // Metrics are not on the public port.
            #expect(try await rawRequest(.GET, server.baseURL + "/metrics").status == 404)
            #expect(server.runtime.metrics.messagesLastMinute() == 5)
            await a.close(); await b.close()
        }
    }

    @Test func shutdownTellsClientsToReconnectAndKeepsEveryAckedMessage() async throws {
        let server = try await TestServer()
        let alice = try await server.user("alice")
        let bob = try await server.user("bob")
        let conv = try await alice.client.createDirectConversation(with: bob.id).id
        let a = try await EventLog.connect(alice, configuration: .init(initialReconnectDelay: .seconds(30), serverReconnectDelay: .seconds(30)))
        var acked = 0
        for i in 1...20 { _ = try await a.connection.send(conversation: conv, text: "s\(i)"); acked += 1 }
        let started = ContinuousClock.now
        await server.stop(remove: false)
        #expect(started.duration(to: .now) < .seconds(5))
        #expect(await a.wait { $0.contains { if case .connectionState(.disconnected) = $0 { return true }; return false } })
        // Reopen the same data: everything acknowledged is there.
        let again = try await TestServer(.sqlite, directory: server.directory)
        #expect(try await again.runtime.storage.messages(conversation: conv, after: 0, limit: 100).count == acked)
        await a.close()
        await again.stop()
    }

    @Test func aTakenPortIsReportedClearly() async throws {
        try await withServer { first in
            let dir = NSTemporaryDirectory() + "warbler-port-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let runtime = try await ServerRuntime.open(config: TestServer.makeConfig(directory: dir) { $0.server.port = first.port }, logger: { var l = Logger(label: "t"); l.logLevel = .critical; return l }())
            await #expect(throws: (any Error).self) { try await runtime.run(handleSignals: false) }
            try? await runtime.storage.close()
        }
    }
}
