import Foundation
import IMClient
import IMCore
import IMServer
import IMStorage
import NIOWebSocket
import Testing

/// Typing, receipt and sync frames are throttled per connection, and a user's sockets are capped
/// (issue 9, item 9). Over-limit frames are answered `rate_limited`; only a flood closes the socket.
@Suite(.timeLimit(.minutes(2))) struct GatewayLimitsTests {
    /// Every frame the server sends before the answer to a ping sent now (the writer keeps order, so this is
    /// everything queued for the socket so far). Nil if the socket closed first.
    func drain(_ s: RawSocket) async -> [ServerFrame]? {
        let ref = "drain-\(UInt64.random(in: 0...UInt64.max))"
        s.send(.ping(.init(ref: ref)))
        var out: [ServerFrame] = []
        while let f = await s.next(timeout: .seconds(15)) {
            if case .pong(let p) = f, p.ref == ref { return out }
            out.append(f)
        }
        return nil
    }

    func typingFrames(_ frames: [ServerFrame]?) -> Int {
        (frames ?? []).filter { if case .typing = $0 { return true }; return false }.count
    }

    @Test func typingOverTheLimitIsRefusedAndNotFannedOut() async throws {
        try await withServer(.sqlite, { $0.limits.typingPerSecond = 5 }) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await authed(server, alice)
            let b = try await authed(server, bob)
            for i in 0..<40 { a.send(.typing(.init(conv: conv, active: i % 2 == 0))) }
            let toAlice = try #require(await drain(a))   // refused, not disconnected
            let limited = toAlice.compactMap { if case .error(let e) = $0, e.code == .rateLimited { return e }; return nil }
            #expect(limited.count >= 25, "\(toAlice.count) frames")
            #expect(limited.allSatisfy { ($0.retryAfter ?? 0) > 0 })
            let toBob = typingFrames(await drain(b))
            #expect(toBob <= 12 && toBob >= 5, "\(toBob)")
            // Repeating the same state is coalesced: nothing new reaches bob.
            try await Task.sleep(for: .seconds(3))
            a.send(.typing(.init(conv: conv, active: true)))
            a.send(.typing(.init(conv: conv, active: true)))
            a.send(.typing(.init(conv: conv, active: true)))
            _ = await drain(a)
            #expect(typingFrames(await drain(b)) == 1)
            a.close(); b.close()
        }
    }

    @Test func aTypingFloodClosesTheSocket() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await authed(server, alice)
            let b = try await authed(server, bob)
            for i in 0..<2000 { a.send(.typing(.init(conv: conv, active: i % 2 == 0))) }
            // Told why, then closed (1008; the client may see a reset instead while it is still writing).
            var last: ServerFrame.ErrorFrame?
            while let f = await a.next(timeout: .seconds(15)) { if case .error(let e) = f { last = e } }
            #expect(last?.message.contains("too many refused frames") == true, "\(String(describing: last))")
            let code = await a.closeCode(timeout: .seconds(1))
            #expect(code == nil || code == .policyViolation)
            let toBob = typingFrames(await drain(b))
            #expect(toBob < 30, "\(toBob)")
            b.close()
        }
    }

    @Test func repeatedReceiptsAreCoalesced() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let sender = try await EventLog.connect(bob)
            for i in 1...3 { _ = try await sender.connection.send(conversation: conv, text: "m\(i)") }
            let a = try await authed(server, alice)
            let b = try await authed(server, bob)
            for _ in 0..<30 { a.send(.receipt(.init(conv: conv, kind: .read, seq: 3))) }
            a.send(.receipt(.init(conv: conv, kind: .read, seq: 2)))
            #expect(try #require(await drain(a)).allSatisfy { if case .error = $0 { false } else { true } })
            let receipts = (await drain(b) ?? []).compactMap { if case .receipt(let r) = $0 { return r }; return nil }
            #expect(receipts.map(\.seq) == [3], "\(receipts)")
            a.close(); b.close(); await sender.close()
        }
    }

    @Test func oneSyncAtATimePerConnection() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            _ = try await server.runtime.storage.append((1...400).map {
                NewMessage(conversation: conv, sender: alice.id, cid: "m\($0)", kind: .text, text: "m\($0)")
            })
            let b = try await authed(server, bob)
            for _ in 0..<3 { b.send(.sync(.init(cursors: [:], limit: 1000))) }
            var frames: [ServerFrame] = []
            var synced = 0
            while synced < 3, let f = await b.next(timeout: .seconds(3)) {
                frames.append(f)
                if case .synced = f { synced += 1 }
                if case .error = f { synced += 1 }
            }
            let syncedCount = frames.filter { if case .synced = $0 { return true }; return false }.count
            let busy = frames.filter { if case .error(let e) = $0, e.code == .rateLimited, e.cid == nil { return true }; return false }.count
            let seqs = frames.compactMap { if case .msg(let m) = $0 { return m.seq }; return nil }
            #expect(syncedCount + busy == 3)
            #expect(busy >= 1)
            #expect(seqs == Array(1...400))
            b.close()
        }
    }

    @Test func aUsersSocketsAreCapped() async throws {
        try await withServer(.sqlite, { $0.limits.connectionsPerUser = 2 }) { server in
            let alice = try await server.user("alice")
            let first = try await authed(server, alice)
            let second = try await authed(server, alice)
            let third = RawSocket(url: wsURL(server))
            third.send(.auth(.init(token: try #require(await alice.client.session).accessToken)))
            let refused = await third.next { if case .error(let e) = $0 { return e }; return nil }
            #expect(refused?.code == .rateLimited)
            #expect(await third.closeCode() == WebSocketErrorCode(codeNumber: 4008))
            first.close()
            try await Task.sleep(for: .milliseconds(300))
            let again = try await authed(server, alice)
            again.send(.ping(.init(ref: "x")))
            #expect(await again.next { if case .pong(let p) = $0 { return p.ref }; return nil } == "x")
            second.close(); again.close()
        }
    }
}
