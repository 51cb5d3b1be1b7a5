import Foundation
import IMClient
import IMCore
import NIOHTTP1
@testable import IMServer
import Testing

/// A connection's events with the time each arrived.
final class TimedLog: Sendable {
    private let box = Mutexed<[(at: ContinuousClock.Instant, event: IMEvent)]>([])
    let connection: IMConnection
    private let task: Task<Void, Never>

    init(_ connection: IMConnection) {
        self.connection = connection
        let box = self.box
        task = Task { for await e in connection.events { box.withLock { $0.append((ContinuousClock.now, e)) } } }
    }

    static func connect(_ user: TestUser) async throws -> TimedLog {
        let log = TimedLog(user.client.makeConnection(cursorStore: InMemoryCursorStore(), configuration: .init()))
        try await log.connection.connect()
        return log
    }

    var events: [(at: ContinuousClock.Instant, event: IMEvent)] { box.withLock { $0 } }

    /// When the server's `reconnect` ended a socket.
    var serverReconnects: [ContinuousClock.Instant] {
        events.compactMap { e in
            if case .connectionState(.disconnected(let reason)) = e.event, reason.contains("server asked to reconnect") { return e.at }
            return nil
        }
    }

    func texts(in conv: ConversationID) -> [String] {
        events.compactMap { e in
            if case .message(let m) = e.event, m.conversation == conv, m.kind != .system { return m.text }
            return nil
        }
    }

    func seqs(in conv: ConversationID) -> [Int64] {
        events.compactMap { e in
            if case .message(let m) = e.event, m.conversation == conv, m.kind != .system { return m.seq }
            return nil
        }
    }

    var isConnected: Bool {
        events.last { if case .connectionState = $0.event { return true }; return false }.map { $0.event == .connectionState(.connected) } ?? false
    }

    func close() async {
        await connection.close()
        task.cancel()
    }
}

@Suite(.timeLimit(.minutes(3))) struct ClusterReconnectTests {
    @Test func theScheduleSpreadsTheClosesEvenlyOverTheWindow() {
        var random = SystemRandomNumberGenerator()
        let offsets = ReconnectSchedule.offsets(count: 10, window: .seconds(5), using: &random)
        #expect(offsets.count == 10)
        // One per half-second slot, in order, all inside the window.
        for (i, o) in offsets.enumerated() {
            #expect(o >= .milliseconds(500 * i) && o < .milliseconds(500 * (i + 1)))
        }
        #expect(ReconnectSchedule.offsets(count: 0, window: .seconds(5), using: &random).isEmpty)
        #expect(ReconnectSchedule.offsets(count: 3, window: .zero, using: &random) == [.zero, .zero, .zero])
    }

    @Test func onlyASignedOrderForThisNodeAndOperationIsObeyed() throws {
        let key = TokenService.Key()
        let now = Date(timeIntervalSince1970: 1_796_500_000)
        let token = try ClusterOperationToken(op: .reconnect, node: "n1", now: now).signed(with: key)
        #expect(try ClusterOperationToken.verify(token, key: key.publicKey, op: .reconnect, node: "n1", now: now).node == "n1")
        #expect(throws: ClusterOperationToken.Refusal.self) { try ClusterOperationToken.verify(token, key: key.publicKey, op: .sessions, node: "n1", now: now) }
        #expect(throws: ClusterOperationToken.Refusal.self) { try ClusterOperationToken.verify(token, key: key.publicKey, op: .reconnect, node: "n2", now: now) }
        #expect(throws: ClusterOperationToken.Refusal.self) {
            try ClusterOperationToken.verify(token, key: key.publicKey, op: .reconnect, node: "n1", now: now.addingTimeInterval(61))
        }
        #expect(throws: ClusterOperationToken.Refusal.self) { try ClusterOperationToken.verify(token, key: TokenService.Key().publicKey, op: .reconnect, node: "n1", now: now) }
        // An access token signed with the same key is not an order, and an order is not an access token.
        let tokens = TokenService(key: key, accessTTL: 600, refreshTTL: 600)
        let access = tokens.issueAccess(user: 1, admin: true, session: "s", now: Int64(now.timeIntervalSince1970 * 1000))
        #expect(throws: ClusterOperationToken.Refusal.self) { try ClusterOperationToken.verify(access, key: key.publicKey, op: .reconnect, node: "n1", now: now) }
        guard case .failure = tokens.verifyAccess(token, now: Int64(now.timeIntervalSince1970 * 1000)) else {
            Issue.record("an order passed as an access token"); return
        }
    }

    @Test func clientsAreToldToReconnectOverTheWindowAndResumeWithNothingLostOrDuplicated() async throws {
        try await withServer(.sqlite, { $0.cluster.nodeId = "n1" }) { server in
            let key = try ClusterOperationToken.key(fromFile: String(contentsOfFile: server.directory + "/jwt.key", encoding: .utf8))
            func order(_ op: ClusterOperationToken.Operation, node: String = "n1") throws -> String {
                try ClusterOperationToken(op: op, node: node).signed(with: key)
            }
            let alice = try await server.user("alice")
            var receivers: [TestUser] = []
            for i in 1...6 { receivers.append(try await server.user("reader\(i)")) }
            let conv = try await alice.client.createGroup(name: "upgrade", members: receivers.map(\.id)).id
            let sender = try await TimedLog.connect(alice)
            var logs: [TimedLog] = []
            for r in receivers { logs.append(try await TimedLog.connect(r)) }
            let everyone = [sender] + logs

            // Without a valid order: refused.
            let url = server.baseURL + "/v1/cluster/reconnect"
            #expect(try await rawRequest(.POST, url, json: "{}").status == 401)
            let aliceToken = try #require(await alice.client.session?.accessToken)
            #expect(try await rawRequest(.POST, url, json: "{}", bearer: aliceToken).status == 401)
            #expect(try await rawRequest(.POST, url, json: "{}", bearer: try order(.sessions)).status == 401)
            #expect(try await rawRequest(.POST, url, json: "{}", bearer: try order(.reconnect, node: "n2")).status == 401)
            #expect(try await rawRequest(.POST, url, json: #"{"window_seconds":301}"#, bearer: try order(.reconnect)).status == 400)
            let before = try await rawRequest(.GET, server.baseURL + "/v1/cluster/sessions", bearer: try order(.sessions))
            #expect(before.status == 200)
            #expect(try decode(API.ClusterSessions.self, before.body).sessions == 7)
            #expect(everyone.allSatisfy { $0.serverReconnects.isEmpty })

            // Messages keep flowing while every socket is moved.
            let total = 80
            let sending = Task {
                for i in 1...total {
                    _ = try await sender.connection.send(conversation: conv, text: "m\(i)")
                    try await Task.sleep(for: .milliseconds(40))
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            let asked = ContinuousClock.now
            let answer = try await rawRequest(.POST, url, json: #"{"window_seconds":3}"#, bearer: try order(.reconnect))
            #expect(answer.status == 202)
            #expect(try decode(API.ClusterSessions.self, answer.body) == .init(sessions: 7, windowSeconds: 3))
            try await sending.value

            let deadline = ContinuousClock.now + .seconds(30)
            while ContinuousClock.now < deadline, !logs.allSatisfy({ $0.texts(in: conv).count >= total }) || !everyone.allSatisfy({ $0.isConnected }) {
                try await Task.sleep(for: .milliseconds(50))
            }
            try await Task.sleep(for: .milliseconds(300))
            let expected = (1...total).map { "m\($0)" }
            for log in logs {
                // Every message exactly once, in order, across the reconnect.
                #expect(log.texts(in: conv) == expected)
                // (seq 1 is the group's creation notice)
                #expect(log.seqs(in: conv) == Array(2...Int64(total + 1)))
            }
            // Every client was told once, and came back.
            let closes = everyone.map(\.serverReconnects)
            #expect(closes.allSatisfy { $0.count == 1 })
            #expect(everyone.allSatisfy { $0.isConnected })
            // Spread over the window, not all at once: 7 slots of 3/7 s, so the first and last are at least
            // 5/7 × 3 s apart, and none comes after the window.
            let times = closes.compactMap(\.first).sorted()
            if let first = times.first, let last = times.last {
                #expect(last - first >= .milliseconds(1800), "closes at \(times.map { $0 - asked })")
                #expect(last - asked < .seconds(4), "closes at \(times.map { $0 - asked })")
            }
            let after = try await rawRequest(.GET, server.baseURL + "/v1/cluster/sessions", bearer: try order(.sessions))
            #expect(try decode(API.ClusterSessions.self, after.body).sessions == 7)
            for log in everyone { await log.close() }
        }
    }
}
