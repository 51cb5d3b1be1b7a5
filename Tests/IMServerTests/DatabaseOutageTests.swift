import Foundation
import IMClient
import IMCore
import IMStoragePostgres
import Testing
import WarblerTestSupport
@testable import IMServer
#if canImport(Glibc)
import Glibc
#endif

/// A TCP relay between the server and PostgreSQL that the test can cut and restore: what a cluster's IM server sees
/// while its primary fails over (its local HAProxy has no primary to send it to, then the promoted one).
final class CuttableRelay: @unchecked Sendable {
    let target: Int
    private(set) var port = 0
    private let lock = NSLock()
    private var listener: Int32 = -1
    private var open: [Int32] = []
    private var accepted = 0
    private var frozenUpTo = 0

    init(to target: Int) throws {
        self.target = target
        try listen()
    }

    deinit { cut() }

    private func listen() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = in_port_t(UInt16(port).bigEndian)
        sa.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let bound = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, Glibc.listen(fd, 64) == 0 else { close(fd); throw ProbeError("relay: cannot listen: errno \(errno)") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = Int(UInt16(bigEndian: sa.sin_port))
        lock.withLock { listener = fd }
        Thread.detachNewThread { [self] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 && (errno == EINTR || errno == ECONNABORTED) { continue }
                guard client >= 0 else { FileHandle.standardError.write(Data("relay: accept ended: errno \(errno)\n".utf8)); return }
                let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                var to = sockaddr_in()
                to.sin_family = sa_family_t(AF_INET)
                to.sin_port = in_port_t(UInt16(target).bigEndian)
                to.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
                let ok = withUnsafePointer(to: &to) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
                guard ok == 0 else { FileHandle.standardError.write(Data("relay: upstream connect failed: errno \(errno)\n".utf8)); close(client); close(upstream); continue }
                let id = lock.withLock { open += [client, upstream]; accepted += 1; return accepted }
                for (from, into) in [(client, upstream), (upstream, client)] {
                    Thread.detachNewThread { [self] in
                        var buf = [UInt8](repeating: 0, count: 65536)
                        while true {
                            let n = buf.withUnsafeMutableBytes { recv(from, $0.baseAddress, $0.count, 0) }
                            guard n > 0 else { break }
                            if lock.withLock({ id <= frozenUpTo }) { continue }   // a silent peer: bytes vanish
                            guard buf.withUnsafeBytes({ send(into, $0.baseAddress, n, Int32(MSG_NOSIGNAL)) }) == n else { break }
                        }
                        shutdown(into, Int32(SHUT_RDWR))
                        shutdown(from, Int32(SHUT_RDWR))
                    }
                }
            }
        }
    }

    /// Every connection through the relay ends, and new ones are refused (nothing listens).
    func cut() {
        lock.withLock {
            if listener >= 0 { shutdown(listener, Int32(SHUT_RDWR)); close(listener); listener = -1 }
            for fd in open { shutdown(fd, Int32(SHUT_RDWR)) }
            open.removeAll()
        }
    }

    /// Listening again on the same port.
    func restore() throws { try listen() }

    /// Every connection open now goes silent both ways, without closing (a host powered off under its peers);
    /// new connections work.
    func freeze() { lock.withLock { frozenUpTo = accepted } }

    /// The next `n` connections are accepted and go silent from the start (a proxy still dialling a dead server).
    func holdNext(_ n: Int) { lock.withLock { frozenUpTo = accepted + n } }

    /// Every connection open now ends; new ones are accepted as before.
    func dropOpen() {
        lock.withLock {
            for fd in open { shutdown(fd, Int32(SHUT_RDWR)) }
            open.removeAll()
        }
    }
}

/// `send`'s ack, or nil when `seconds` pass first (the send is then cancelled).
func ackWithin(seconds: Double, _ send: @escaping @Sendable () async throws -> ServerFrame.Ack) async throws -> ServerFrame.Ack? {
    try await withThrowingTaskGroup(of: ServerFrame.Ack?.self) { group in
        group.addTask { try await send() }
        group.addTask { try await Task.sleep(for: .seconds(seconds)); return nil }
        let first = try await group.next()!
        group.cancelAll()
        return first
    }
}

/// While the database cannot commit (a cluster's primary failing over), a send is answered with the retryable
/// `unavailable` and never acknowledged; the SDK sends it again with the same cid, and once the database is back it
/// is stored exactly once. Readiness says 503 meanwhile, so HAProxy sends new clients elsewhere.
@Suite(.timeLimit(.minutes(2))) struct DatabaseOutageTests {
    @Test func aSendDuringADatabaseOutageIsRetriedAndStoredOnceAndReadinessFollows() async throws {
        let db = try await TestServer.SharedDatabase.fresh()
        let relay = try CuttableRelay(to: db.port)
        let server = try await TestServer(.postgres, joining: .init(port: relay.port, name: db.name))
        do {
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let sender = try await EventLog.connect(alice)
            let receiver = try await EventLog.connect(bob)
            _ = try await sender.connection.send(conversation: conv, text: "before")
            relay.cut()
            var ready = 200
            for _ in 0..<100 where ready == 200 {
                ready = try await rawRequest(.GET, server.baseURL + "/readyz").status
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(ready == 503, "readiness stayed 200 with the database gone")
            let cid = "outage-\(UUID().uuidString)"
            let during = Task { try await sender.connection.send(conversation: conv, text: "during", cid: cid) }
            try await Task.sleep(for: .seconds(3))
            // Not acknowledged while nothing can commit (and not failed: it is being retried).
            #expect(!receiver.userMessages(in: conv).contains { $0.cid == cid })
            try relay.restore()
            let ack = try await during.value
            #expect(await receiver.wait { events in
                events.contains { if case .message(let m) = $0 { m.cid == cid } else { false } }
            })
            let history = try await bob.client.history(conv, before: nil, limit: 50).messages.filter { $0.cid == cid }
            #expect(history.map(\.seq) == [ack.seq], "stored \(history.count) times")
            #expect(receiver.userMessages(in: conv).filter { $0.cid == cid }.count == 1)
            var back = 0
            for _ in 0..<100 where back != 200 {
                back = try await rawRequest(.GET, server.baseURL + "/readyz").status
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(back == 200)
            await sender.connection.close(); await receiver.connection.close()
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }
}

/// What a PostgreSQL switchover does to every node: the old primary terminates every backend ("terminating
/// connection due to administrator command") in the middle of whatever it was doing, commits included. Measured on
/// booted hosts: afterwards one node's committer never committed again and every send to it went unacknowledged.
@Suite(.timeLimit(.minutes(3))) struct TerminatedBackendsTests {
    @Test func sendsAreStillAcknowledgedAfterEveryBackendIsTerminatedMidCommit() async throws {
        let db = try await TestServer.SharedDatabase.fresh()
        let server = try await TestServer(.postgres, joining: db)
        let admin = try await PostgresDriver.connect(host: PostgresTestServer.host, port: db.port, username: PostgresTestServer.user,
                                                     password: nil, database: "postgres", maxConnections: 1)
        do {
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let sender = try await EventLog.connect(alice)
            // A steady stream of sends while every backend of the server's database is terminated, ten times.
            let stream = Task {
                await withTaskGroup(of: Void.self) { group in
                    for i in 0..<150 {
                        group.addTask { _ = try? await sender.connection.send(conversation: conv, text: "load \(i)", cid: "load-\(i)") }
                        try? await Task.sleep(for: .milliseconds(15))
                    }
                }
            }
            for _ in 0..<10 {
                try await Task.sleep(for: .milliseconds(200))
                _ = try await admin.write { ex in
                    try await ex.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                                       [.text(db.name)])
                }
            }
            // Afterwards each send is acknowledged, and soon: not queued behind a commit that never ends.
            for i in 0..<5 {
                let ack = try await ackWithin(seconds: 20) { try await sender.connection.send(conversation: conv, text: "after \(i)", cid: "after-\(i)") }
                #expect(ack != nil, "send \(i) after the terminations was not acknowledged within 20 s")
                if ack == nil { break }
            }
            // Sends of the stream still being retried are given up on (their fate is the SDK's retry logic's, not this test's).
            stream.cancel()
            await stream.value
            // Nothing acknowledged is stored twice.
            let history = try await bob.client.history(conv, before: nil, limit: 500).messages
            let cids = history.compactMap(\.cid)
            #expect(Set(cids).count == cids.count, "a cid was stored twice")
            await sender.connection.close()
        } catch {
            try? await admin.close()
            await server.stop()
            throw error
        }
        try? await admin.close()
        await server.stop()
    }
}

/// A server that falls silent under a connected client (the host that held the address the client reached, powered
/// off): the SDK notices within seconds because a send went unanswered, reconnects, and the send is stored once.
@Suite(.timeLimit(.minutes(2))) struct SilentServerTests {
    @Test func aSendOnASocketThatWentSilentIsAcknowledgedAfterAReconnectWithinSeconds() async throws {
        try await withServer { server in
            let relay = try CuttableRelay(to: server.port)
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let viaRelay = try IMClient(baseURL: "http://127.0.0.1:\(relay.port)", deviceName: "relay")
            _ = try await viaRelay.login(username: "alice", password: "password-123")
            let sender = EventLog(viaRelay.makeConnection())
            try await sender.connection.connect()
            _ = try await sender.connection.send(conversation: conv, text: "before")

            relay.freeze()
            let started = ContinuousClock.now
            let ack = try await sender.connection.send(conversation: conv, text: "into the silence", cid: "silent-1")
            let waited = started.duration(to: .now)
            // 3 s until the probe, 3 s for its pong, then a reconnect: well under the 30 s WebSocket ping.
            #expect(waited < .seconds(15), "the send waited \(waited)")
            #expect(await sender.wait { events in events.contains { if case .connectionState(.connected) = $0 { true } else { false } } })
            let history = try await bob.client.history(conv, before: nil, limit: 10).messages.filter { $0.cid == "silent-1" }
            #expect(history.map(\.seq) == [ack.seq])
            await sender.close()
            relay.cut()
        }
    }

    /// Drill 3 on booted hosts: after the VIP moved, HAProxy sent three clients' new connections to the dead host's IM
    /// server and never answered their upgrade; the SDK's handshake watchdog cancelled the attempt, but a connection
    /// attempt does not heed cancellation, so the clients waited on it for over a minute instead of trying again.
    @Test func aConnectionAttemptNeverAnsweredIsGivenUpAtTheHandshakeTimeout() async throws {
        try await withServer { server in
            let relay = try CuttableRelay(to: server.port)
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let viaRelay = try IMClient(baseURL: "http://127.0.0.1:\(relay.port)", deviceName: "relay")
            _ = try await viaRelay.login(username: "alice", password: "password-123")
            let sender = EventLog(viaRelay.makeConnection(configuration: .init(handshakeTimeout: .seconds(1))))
            try await sender.connection.connect()
            _ = try await sender.connection.send(conversation: conv, text: "before")

            // The connection drops; the first reconnect attempt is accepted and never answered.
            relay.holdNext(1)
            relay.dropOpen()
            let started = ContinuousClock.now
            let ack = try await ackWithin(seconds: 20) { try await sender.connection.send(conversation: conv, text: "after", cid: "after-held-attempt") }
            #expect(ack != nil, "the send was not acknowledged \(started.duration(to: .now)) after the reconnect attempt went unanswered: \(sender.events.suffix(4))")
            #expect(sender.events.contains { if case .connectionState(.disconnected(let why)) = $0 { why.contains("no answer to authentication") } else { false } },
                    "the held attempt was not the one given up on")
            await sender.close()
            relay.cut()
        }
    }

    /// Drill 3 on booted hosts: right after the VIP moved, the load generator's history read failed with "connection
    /// reset by peer" (its pooled connection had gone to the dead holder), and the drill failed with nothing lost.
    /// A GET that got no answer is tried again (after 0.25 s, then 1 s); a POST is not.
    @Test func aReadThatGotNoAnswerIsTriedAgainAndAWriteIsNot() async throws {
        try await withServer { server in
            let relay = try CuttableRelay(to: server.port)
            let alice = try await server.user("alice"), bob = try await server.user("bob"), carol = try await server.user("carol")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let viaRelay = try IMClient(baseURL: "http://127.0.0.1:\(relay.port)", deviceName: "relay")
            _ = try await viaRelay.login(username: "alice", password: "password-123")

            // The pooled connection ends; the next one is accepted and ended 0.1 s later without an answer (a refused
            // connect would not do: the HTTP client's pool tries connecting again by itself).
            relay.dropOpen()
            try await Task.sleep(for: .milliseconds(100))
            relay.holdNext(1)
            Task { try? await Task.sleep(for: .milliseconds(100)); relay.dropOpen() }
            let history = try await viaRelay.history(conv, before: nil, limit: 10)
            #expect(history.messages.isEmpty && !history.hasMore)

            relay.dropOpen()
            try await Task.sleep(for: .milliseconds(100))
            relay.holdNext(1)
            Task { try? await Task.sleep(for: .milliseconds(100)); relay.dropOpen() }
            await #expect(throws: IMError.self) { _ = try await viaRelay.createDirectConversation(with: carol.id) }
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await alice.client.conversations().count == 1, "the refused POST was sent again")
            relay.cut()
        }
    }

    @Test func aConnectionThatOnlyReceivesNoticesTheSilenceAndCatchesUp() async throws {
        try await withServer { server in
            let relay = try CuttableRelay(to: server.port)
            let alice = try await server.user("alice"), bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let viaRelay = try IMClient(baseURL: "http://127.0.0.1:\(relay.port)", deviceName: "relay")
            _ = try await viaRelay.login(username: "bob", password: "password-123")
            let receiver = EventLog(viaRelay.makeConnection(configuration: .init(silenceProbe: .seconds(1), idleProbe: .seconds(2))))
            try await receiver.connection.connect()
            let sender = try await EventLog.connect(alice)
            _ = try await sender.connection.send(conversation: conv, text: "before")
            #expect(await receiver.waitForMessages(1, in: conv))

            relay.freeze()
            _ = try await sender.connection.send(conversation: conv, text: "while silent", cid: "while-silent")
            // Nothing arrives on the frozen socket; 2 s of silence, a ping, 1 s without its pong: reconnect and sync.
            #expect(await receiver.wait(timeout: .seconds(12)) { events in
                events.contains { if case .message(let m) = $0 { m.cid == "while-silent" } else { false } }
            }, "the receive-only connection did not notice the silent server")
            await receiver.close(); await sender.close()
            relay.cut()
        }
    }
}

/// A node whose every database connection goes silent at once (a primary powered off under HAProxy's open
/// sessions): its reads are abandoned at `storage.postgres_timeout_seconds` and their connections closed, so the
/// cluster service's one consumer is not stuck behind one of them and cross-node delivery resumes on new
/// connections. Found by the failover drill: every send acknowledged, but 1,478 messages never reached receivers on
/// a surviving node.
@Suite(.timeLimit(.minutes(2))) struct SilentDatabaseTests {
    @Test func crossNodeDeliveryResumesAfterEveryConnectionOfANodeWentSilent() async throws {
        var relay: CuttableRelay?
        defer { relay?.cut() }
        try await withTwoClusterNodes(catchUp: 0.5, configure: { $0.storage.postgresTimeoutSeconds = 2 }, routeB: { db in
            let r = try CuttableRelay(to: db.port)
            relay = r
            return .init(port: r.port, name: db.name)
        }) { a, b in
            let relay = try #require(relay)
            let alice = try await a.user("alice"), bob = try await b.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let sender = try await EventLog.connect(alice)
            let receiver = try await EventLog.connect(bob)
            var seqs = [try await sender.connection.send(conversation: conv, text: "before").seq]
            #expect(await receiver.waitForMessages(1, in: conv))

            relay.freeze()
            for i in 0..<20 { seqs.append(try await sender.connection.send(conversation: conv, text: "after \(i)", cid: "after-\(i)").seq) }
            // 2 s until the stuck read is abandoned, then a catch-up pass on a new connection.
            #expect(await receiver.waitForMessages(21, in: conv, timeout: .seconds(20)),
                    "node b delivered \(receiver.userMessages(in: conv).count) of 21 after its connections went silent")
            #expect(receiver.userMessages(in: conv).map(\.seq) == seqs, "not once each, in order")
            // Each abandoned read is counted, for the StorageDeadlinePassed alert.
            let metrics = try await rawRequest(.GET, b.metricsURL).body
            let reads = metrics.split(separator: "\n").first { $0.hasPrefix("warbler_storage_deadlines_passed_total{kind=\"read\"}") }
            #expect((reads?.split(separator: " ").last.flatMap { Double($0) } ?? 0) >= 1, "no abandoned read counted: \(reads ?? "no series")")
            await sender.close(); await receiver.close()
        }
    }
}
