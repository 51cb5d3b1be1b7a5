import Foundation
import IMClient
import IMCore
@testable import IMServer
import IMStorage
import IMStoragePostgres
import LoadGen
import NIOWebSocket
import Testing

/// Two cluster nodes in this process on one fresh PostgreSQL database, with one signing key (a token from one node
/// is good on the other); `routeB` gives the database node b reaches (a relay in front of it, say). Both stop after.
func withTwoClusterNodes(catchUp: Double = 60, configure: @escaping (inout ServerConfig) -> Void = { _ in },
                         routeB: (TestServer.SharedDatabase) throws -> TestServer.SharedDatabase = { $0 },
                         _ body: (TestServer, TestServer) async throws -> Void) async throws {
    let database = try await TestServer.SharedDatabase.fresh()
    let keyDir = NSTemporaryDirectory() + "warbler-cluster-key-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: keyDir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: keyDir) }
    func node(_ id: String) -> (inout ServerConfig) -> Void {
        { c in
            c.cluster.enabled = true
            c.cluster.nodeId = id
            c.cluster.catchUpSeconds = catchUp
            c.auth.jwtKeyFile = keyDir + "/jwt.key"
            c.limits.sendsPerSecond = 10_000
            c.limits.sendBurst = 10_000
            configure(&c)
        }
    }
    let a = try await TestServer(.postgres, node("node-a"), joining: database)
    let b: TestServer
    do { b = try await TestServer(.postgres, node("node-b"), joining: try routeB(database)) } catch { await a.stop(); throw error }
    do {
        try await body(a, b)
    } catch {
        await a.stop(); await b.stop()
        throw error
    }
    await a.stop(); await b.stop()
}

/// Two real servers in this process, on port 0, sharing one fresh PostgreSQL database: a message committed on
/// one node reaches the other node's sessions exactly once and in order; membership, block and session changes
/// made on one node hold on the other at once (docs/architecture.md, "Cross-node delivery").
@Suite(.timeLimit(.minutes(3))) struct ClusterDeliveryTests {
    /// Two nodes on one database with one signing key (a token from one node is good on the other).
    /// `catchUp` long by default, so that what arrives at once arrived by doorbell, not by the periodic pass.
    func withCluster(catchUp: Double = 60, configure: @escaping (inout ServerConfig) -> Void = { _ in },
                     _ body: (TestServer, TestServer) async throws -> Void) async throws {
        try await withTwoClusterNodes(catchUp: catchUp, configure: configure, body)
    }

    func login(_ server: TestServer, _ name: String, password: String = "password-123") async throws -> API.AuthResponse {
        let r = try await rawRequest(.POST, server.baseURL + "/v1/auth/login", json: #"{"username":"\#(name)","password":"\#(password)"}"#)
        #expect(r.status == 200, "\(r.body)")
        return try decode(API.AuthResponse.self, r.body)
    }

    /// A raw socket on `server`, authenticated and synced from nothing.
    func connect(_ server: TestServer, _ token: String) async throws -> Receiver {
        let s = RawSocket(url: "ws://127.0.0.1:\(server.port)/v1/ws")
        s.send(.auth(.init(token: token)))
        let r = Receiver(s)
        try #require(await r.wait { $0.ready })
        s.send(.sync(.init(cursors: [:])))
        try #require(await r.wait { $0.synced })
        return r
    }

    func metric(_ server: TestServer, _ name: String) -> Double {
        for line in server.runtime.metrics.render().split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ").last ?? "") ?? 0
        }
        return 0
    }

    @Test func twoUsersOnTwoNodesGetEveryMessageOnceInOrder() async throws {
        try await withCluster { a, b in
            let alice = try await a.user("alice")
            let bob = try await b.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let aliceSocket = try await connect(a, try await login(a, "alice").accessToken)
            let bobSocket = try await connect(b, try await login(b, "bob").accessToken)

            let n = 200
            // Both send at once, so commits on the two nodes interleave in the one conversation.
            async let fromAlice: Void = aliceSocket.sendTexts(n, conv: conv, prefix: "a")
            async let fromBob: Void = bobSocket.sendTexts(n, conv: conv, prefix: "b")
            _ = await (fromAlice, fromBob)

            for (who, socket) in [("alice", aliceSocket), ("bob", bobSocket)] {
                #expect(await socket.wait(timeout: .seconds(20)) { $0.messages(conv).count >= 2 * n }, "\(who) got \(socket.state.messages(conv).count)")
                try await Task.sleep(for: .milliseconds(300))   // a repeat would come now
                let got = socket.state.messages(conv)
                #expect(got.map(\.seq) == Array(1...Int64(2 * n)), "\(who): seqs not 1...\(2 * n) once each in order")
                #expect(Set(got.map(\.cid)) == Set((0..<n).map { "a-\($0)" } + (0..<n).map { "b-\($0)" }), "\(who): wrong messages")
            }
            // Every one came by doorbell: no catch-up pass had to read anything.
            #expect(metric(a, "warbler_cluster_catch_up_messages_total") == 0 && metric(b, "warbler_cluster_catch_up_messages_total") == 0)
            aliceSocket.close(); bobSocket.close()
        }
    }

    @Test func aGroupSpreadOverBothNodesGetsEveryMessageOnceInOrder() async throws {
        try await withCluster { a, b in
            let alice = try await a.user("alice")
            let bob = try await b.user("bob")
            let carol = try await a.user("carol")
            let dave = try await b.user("dave")
            let conv = try await alice.client.createGroup(name: "spread", members: [bob.id, carol.id, dave.id]).id
            var sockets: [(String, Receiver)] = []
            for (name, server) in [("alice", a), ("bob", b), ("carol", a), ("dave", b)] {
                sockets.append((name, try await connect(server, try await login(server, name).accessToken)))
            }
            let n = 50
            await withTaskGroup(of: Void.self) { group in
                for (name, socket) in sockets { group.addTask { await socket.sendTexts(n, conv: conv, prefix: name) } }
            }
            let total = 4 * n + 1   // and the "created" event at seq 1
            for (name, socket) in sockets {
                #expect(await socket.wait(timeout: .seconds(20)) { $0.messages(conv).count >= total }, "\(name) got \(socket.state.messages(conv).count)")
            }
            try await Task.sleep(for: .milliseconds(300))
            for (name, socket) in sockets {
                #expect(socket.state.messages(conv).map(\.seq) == Array(1...Int64(total)), "\(name): seqs not once each in order")
                socket.close()
            }
        }
    }

    /// Nodes share no disk: an attachment uploaded through one node is served whole by the other, from the
    /// database's chunks (a file of several 256 KiB chunks, every byte value in it).
    @Test func anAttachmentUploadedOnOneNodeDownloadsWholeFromTheOther() async throws {
        try await withCluster { a, b in
            let alice = try await a.user("alice")
            let bob = try await b.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            var bytes = [UInt8](repeating: 0, count: 3 * Attachments.chunkBytes + 12_345)
            for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 13) }
            let ref = try await alice.client.uploadAttachment(to: conv, name: "report.pdf", contentType: "application/pdf", data: Data(bytes))
            #expect(ref.size == Int64(bytes.count))
            #expect(try await a.runtime.storage.attachmentChunkTotals(id: ref.id).count == 4)
            let got = try await bob.client.downloadAttachment(ref.id)
            #expect(got.data == Data(bytes) && got.contentType == "application/pdf")
            // Nothing of it on either node's disk.
            for node in [a, b] {
                #expect(!FileManager.default.fileExists(atPath: node.runtime.config.dataDir + "/attachments"))
            }
        }
    }

    /// `warbler probe` over both nodes: a group spread over them, an attachment, a member resuming on the other.
    @Test func theProbeFindsTwoNodesDeliveringEverythingOnce() async throws {
        try await withCluster { a, b in
            let report = try await DeliveryProbe(urls: [a.baseURL, b.baseURL], members: 4, messagesPerMember: 10, attachmentBytes: 300_000,
                                                 password: "probe-password-1", prefix: "probe", timeout: 20).run()
            #expect(report.ok, "\(report)")
            #expect(report.resumed == 20)
        }
    }

    /// Wrong passwords count on every node together: guessing through two nodes buys no more attempts than one.
    @Test func failedLoginsCountAcrossNodes() async throws {
        try await withCluster(configure: { $0.auth.loginPerMinutePerAccount = 3 }) { a, b in
            _ = try await a.user("alice")
            func attempt(_ server: TestServer, _ password: String) async throws -> Int {
                try await rawRequest(.POST, server.baseURL + "/v1/auth/login", json: #"{"username":"alice","password":"\#(password)"}"#).status
            }
            #expect(try await attempt(a, "wrong-1") == 401)
            #expect(try await attempt(b, "wrong-2") == 401)
            #expect(try await attempt(a, "wrong-3") == 401)
            // The fourth guess, through the other node, waits: the three failures were counted together.
            #expect(try await attempt(b, "wrong-4") == 429)
            #expect(try await attempt(b, "password-123") == 429, "even the right password waits out the limit from this address")
        }
    }

    @Test func membershipChangedOnOneNodeHoldsOnTheOtherAtOnce() async throws {
        try await withCluster { a, b in
            let alice = try await a.user("alice")
            let carol = try await b.user("carol")
            let dave = try await b.user("dave")
            let conv = try await alice.client.createGroup(name: "club", members: [carol.id]).id
            let aliceSocket = try await connect(a, try await login(a, "alice").accessToken)
            let carolSocket = try await connect(b, try await login(b, "carol").accessToken)
            let daveSocket = try await connect(b, try await login(b, "dave").accessToken)

            // Node B now has the group's members cached (alice and carol).
            await aliceSocket.sendTexts(1, conv: conv, prefix: "before")
            #expect(await carolSocket.wait(timeout: .seconds(5)) { $0.texts(conv).contains("before-0") })

            // Added on node A: dave, on node B, hears the group from then on, without waiting for a catch-up.
            _ = try await alice.client.addMembers([dave.id], to: conv)
            await aliceSocket.sendTexts(1, conv: conv, prefix: "added")
            #expect(await daveSocket.wait(timeout: .seconds(5)) { $0.texts(conv).contains("added-0") }, "the added member on node B got nothing")

            // Removed on node A: carol, on node B, stops hearing it; dave still does.
            try await alice.client.removeMember(carol.id, from: conv)
            await aliceSocket.sendTexts(1, conv: conv, prefix: "removed")
            #expect(await daveSocket.wait(timeout: .seconds(5)) { $0.texts(conv).contains("removed-0") })
            try await Task.sleep(for: .milliseconds(500))
            #expect(!carolSocket.state.texts(conv).contains("removed-0"), "the removed member on node B still receives")
            for s in [aliceSocket, carolSocket, daveSocket] { s.close() }
        }
    }

    @Test func catchUpAloneDeliversEverythingWithoutDoorbells() async throws {
        try await withCluster(catchUp: 0.2) { a, b in
            a.runtime.cluster?.setDoorbells(false)
            b.runtime.cluster?.setDoorbells(false)
            let alice = try await a.user("alice")
            let bob = try await b.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let aliceSocket = try await connect(a, try await login(a, "alice").accessToken)
            let bobSocket = try await connect(b, try await login(b, "bob").accessToken)
            let n = 100
            async let fromAlice: Void = aliceSocket.sendTexts(n, conv: conv, prefix: "a")
            async let fromBob: Void = bobSocket.sendTexts(n, conv: conv, prefix: "b")
            _ = await (fromAlice, fromBob)
            for (who, socket) in [("alice", aliceSocket), ("bob", bobSocket)] {
                #expect(await socket.wait(timeout: .seconds(20)) { $0.messages(conv).count >= 2 * n }, "\(who) got \(socket.state.messages(conv).count)")
                try await Task.sleep(for: .milliseconds(500))   // two more passes: a repeat would come now
                #expect(socket.state.messages(conv).map(\.seq) == Array(1...Int64(2 * n)), "\(who): seqs not once each in order")
            }
            aliceSocket.close(); bobSocket.close()
        }
    }

    @Test func aBlockOnOneNodeHoldsOnTheOtherAtOnce() async throws {
        try await withCluster { a, b in
            let alice = try await a.user("alice")
            let bob = try await b.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let bobSocket = try await connect(b, try await login(b, "bob").accessToken)
            // Node B now has both block lists cached (empty).
            await bobSocket.sendTexts(1, conv: conv, prefix: "hello")
            #expect(bobSocket.state.errors.isEmpty)
            try await alice.client.block(bob.id)
            // The notice is on its way: within a few seconds a send from node B must be refused.
            var refused = false
            for i in 0..<50 where !refused {
                bobSocket.socket.send(.send(.init(cid: "after-block-\(i)", conv: conv, kind: .text, text: "hi again")))
                refused = await bobSocket.wait(timeout: .milliseconds(100)) { $0.errors.contains(.blocked) }
            }
            #expect(refused, "node B still used its old block lists")
            bobSocket.close()
        }
    }

    /// Notices are lost while a listener reconnects: after it reconnects, the node reads what it missed and
    /// forgets the caches those notices would have corrected (here both the doorbells and a membership notice are
    /// withheld, and the periodic pass is a minute away, so only the reconnect can deliver).
    @Test func aListenerThatLostItsConnectionCatchesUpAndDropsItsCaches() async throws {
        try await withCluster { a, b in
            let alice = try await a.user("alice")
            let bob = try await b.user("bob")
            let dave = try await b.user("dave")
            let conv = try await alice.client.createGroup(name: "lossy", members: [bob.id]).id
            let aliceSocket = try await connect(a, try await login(a, "alice").accessToken)
            let bobSocket = try await connect(b, try await login(b, "bob").accessToken)
            let daveSocket = try await connect(b, try await login(b, "dave").accessToken)
            await aliceSocket.sendTexts(1, conv: conv, prefix: "warm")
            #expect(await bobSocket.wait(timeout: .seconds(5)) { $0.texts(conv).contains("warm-0") })

            // Lost notices: no doorbells, and dave added behind the hubs' backs.
            a.runtime.cluster?.setDoorbells(false)
            let store = try #require(a.runtime.storage as? SQLStore)
            try await store.addMembers(conversation: conv, users: [dave.id], limit: 100)
            await aliceSocket.sendTexts(10, conv: conv, prefix: "missed")
            try await Task.sleep(for: .milliseconds(500))
            #expect(!bobSocket.state.texts(conv).contains("missed-0"), "delivered without a doorbell or a catch-up")

            _ = try await store.driver.read { db in
                try await db.query("SELECT pg_terminate_backend(pid) AS gone FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()",
                                   [.text(PostgresDriver.listenerApplicationName)])
            }
            let missed = (0..<10).map { "missed-\($0)" }
            #expect(await bobSocket.wait(timeout: .seconds(10)) { Set($0.texts(conv)).isSuperset(of: missed) }, "not caught up after the reconnect")
            #expect(await daveSocket.wait(timeout: .seconds(5)) { Set($0.texts(conv)).isSuperset(of: missed) }, "the membership cache outlived the reconnect")
            // And the operator can see it happened.
            #expect(metric(b, "warbler_cluster_listener_reconnects_total") >= 1)
            #expect(metric(b, "warbler_cluster_catch_up_messages_total") >= 10)
            for s in [aliceSocket, bobSocket, daveSocket] { s.close() }
        }
    }

    @Test func aPasswordChangeOnOneNodeClosesTheUsersSocketsOnTheOther() async throws {
        try await withCluster { a, b in
            _ = try await a.user("bob")
            let onA = try await login(a, "bob")
            let onB = try await login(b, "bob")
            let bobSocket = RawSocket(url: "ws://127.0.0.1:\(b.port)/v1/ws")
            bobSocket.send(.auth(.init(token: onB.accessToken)))
            #expect(await bobSocket.next { if case .ready = $0 { return true }; return nil } == true)
            let change = try await rawRequest(.POST, a.baseURL + "/v1/auth/password",
                                              json: #"{"oldPassword":"password-123","newPassword":"new-password-456"}"#, bearer: onA.accessToken)
            #expect(change.status == 204, "\(change.body)")
            #expect(await bobSocket.closeCode(timeout: .seconds(5)) == WebSocketErrorCode(codeNumber: 4001))
        }
    }
}

/// Reads one raw socket's frames in the background: messages in the order they came, acks, and what else matters.
final class Receiver: Sendable {
    struct State: Sendable {
        var all: [Message] = []
        var acks = 0
        var errors: [ErrorCode] = []
        var ready = false
        var synced = false
        var receipts: [ServerFrame.Receipt] = []
        var typing: [ServerFrame.Typing] = []
        var presence: [ServerFrame.Presence] = []
        func messages(_ conv: ConversationID) -> [Message] { all.filter { $0.conversation == conv } }
        func texts(_ conv: ConversationID) -> [String] { messages(conv).compactMap(\.text) }
    }
    let socket: RawSocket
    private let box = Mutexed(State())
    private let reader: Task<Void, Never>

    init(_ socket: RawSocket) {
        self.socket = socket
        let box = self.box
        reader = Task {
            for await text in socket.frames {
                guard let frame = try? FrameCodec.decodeServer(text) else { continue }
                box.withLock { st in
                    switch frame {
                    case .msg(let m): st.all.append(m)
                    case .ack: st.acks += 1
                    case .error(let e): st.errors.append(e.code)
                    case .ready: st.ready = true
                    case .synced: st.synced = true
                    case .receipt(let r): st.receipts.append(r)
                    case .typing(let t): st.typing.append(t)
                    case .presence(let p): st.presence.append(p)
                    default: break
                    }
                }
            }
        }
    }

    var state: State { box.withLock { $0 } }

    func wait(timeout: Duration = .seconds(10), _ condition: (State) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if box.withLock({ condition($0) }) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return box.withLock { condition($0) }
    }

    /// Sends `n` texts (cids and texts `prefix-0` …) and waits for their acks.
    func sendTexts(_ n: Int, conv: ConversationID, prefix: String) async {
        let before = state.acks
        for i in 0..<n {
            socket.send(.send(.init(cid: "\(prefix)-\(i)", conv: conv, kind: .text, text: "\(prefix)-\(i)")))
        }
        _ = await wait(timeout: .seconds(20)) { $0.acks >= before + n }
    }

    func close() {
        socket.close()
        reader.cancel()
    }
}
