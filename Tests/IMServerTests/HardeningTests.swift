import Foundation
import IMClient
import IMCore
import IMStorage
import LoadGen
import Logging
import Testing
@testable import IMServer
#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP socket from a chosen loopback source address (127.0.0.2 is a different client than 127.0.0.1 to
/// the server), for what an HTTP client library hides: idle sockets, refusals at accept, per-address limits.
final class TCPProbe: @unchecked Sendable {
    let fd: Int32

    init(port: Int, from source: String = "127.0.0.1", receiveTimeout: Double = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ProbeError("socket: errno \(errno)") }
        var tv = timeval(tv_sec: Int(receiveTimeout), tv_usec: Int((receiveTimeout - Double(Int(receiveTimeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, source, &local.sin_addr)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr)
        let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0 else { close(fd); throw ProbeError("bind \(source): errno \(errno)") }
        let connected = withUnsafePointer(to: &remote) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { close(fd); throw ProbeError("connect: errno \(errno)") }
    }

    deinit { close(fd) }

    func send(_ text: String) {
        _ = text.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    /// Runs blocking socket calls on a thread of their own: on the concurrency pool (two threads here) they would
    /// starve the in-process server's request handlers.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { cont in
            Thread.detachNewThread { cont.resume(with: Result { try body() }) }
        }
    }

    /// Reads until the peer closes or the receive timeout passes; `closed` says which.
    func readAll() async -> (text: String, closed: Bool) {
        (try? await Self.offPool { self.readAllBlocking() }) ?? ("", false)
    }

    private func readAllBlocking() -> (text: String, closed: Bool) {
        var out = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n > 0 { out += buf[0..<n]; continue }
            return (String(decoding: out, as: UTF8.self), n == 0 || (n < 0 && errno == ECONNRESET))
        }
    }

    /// One HTTP/1.1 request with `Connection: close`; the whole response as text.
    static func http(port: Int, from source: String, _ method: String, _ path: String, json: String? = nil) async throws -> String {
        let probe = try TCPProbe(port: port, from: source)
        var req = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        if let json { req += "Content-Type: application/json\r\nContent-Length: \(json.utf8.count)\r\n\r\n\(json)" } else { req += "\r\n" }
        probe.send(req)
        return await probe.readAll().text
    }

    static func status(_ response: String) -> Int {
        Int(response.split(separator: " ", maxSplits: 2).dropFirst().first ?? "") ?? 0
    }
}

struct ProbeError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

@Suite(.timeLimit(.minutes(2))) struct ConnectionLimitTests {
    @Test func countsAdmitUpToEachCapAndReleaseFreesASlot() {
        var c = ConnectionCounts(total: 3, perAddress: 2)
        #expect(c.admit("10.0.0.1") == .admitted)
        #expect(c.admit("10.0.0.1") == .admitted)
        guard case .refused(let why) = c.admit("10.0.0.1") else { Issue.record("third from one address admitted"); return }
        #expect(why.contains("this address"))
        #expect(c.admit("10.0.0.2") == .admitted)
        guard case .refused(let full) = c.admit("10.0.0.3") else { Issue.record("over the total admitted"); return }
        #expect(full.contains("maximum of 3"))
        c.release("10.0.0.1")
        #expect(c.admit("10.0.0.3") == .admitted)
        c.release("never-seen")   // a stray release changes nothing
        #expect(c.open == 3)
        var unlimited = ConnectionCounts(total: 0, perAddress: 0)
        for _ in 0..<10_000 { #expect(unlimited.admit("10.0.0.1") == .admitted) }
    }

    @Test func ipv6AddressesAreCountedPerSlash64() {
        #expect(ConnectionCounts.key("2001:db8:1:2:aaaa::1") == ConnectionCounts.key("2001:db8:1:2:bbbb::2"))
        #expect(ConnectionCounts.key("2001:db8:1:2::1") != ConnectionCounts.key("2001:db8:1:3::1"))
        #expect(ConnectionCounts.key("::ffff:192.0.2.7") == "192.0.2.7")
        #expect(ConnectionCounts.key("192.0.2.7") == "192.0.2.7")
    }

    @Test func theEndOfARequestHeadIsFoundAcrossReads() {
        var tail: [UInt8] = []
        #expect(!RequestHeadDeadline.findsHeadEnd(Array("GET / HTTP/1.1\r\nHost: x\r".utf8), after: &tail))
        #expect(!RequestHeadDeadline.findsHeadEnd(Array("\n\r".utf8), after: &tail))
        #expect(RequestHeadDeadline.findsHeadEnd(Array("\n".utf8), after: &tail))
        var fresh: [UInt8] = []
        #expect(!RequestHeadDeadline.findsHeadEnd(Array("a\r\nb\r\n".utf8), after: &fresh))
    }

    /// Idle sockets that never send a byte are what took /healthz down: past the per-address cap new ones are
    /// refused with a 503 at once, and another client still gets its answer.
    @Test func idleSocketsPastThePerAddressCapAreRefusedAndHealthzStillAnswers() async throws {
        try await withServer(.sqlite, { $0.server.maxConnectionsPerAddress = 20; $0.server.requestHeadTimeoutSeconds = 60 }) { server in
            var idle: [TCPProbe] = []
            for _ in 0..<20 { idle.append(try TCPProbe(port: server.port)) }
            // Each child channel is admitted on its own event loop, not in connect order: wait until the server
            // holds all twenty, or under load the 21st may be admitted before one of them (a fixed sleep was not
            // enough on a busy CI machine).
            let deadline = ContinuousClock.now + .seconds(30)
            while server.runtime.connectionLimiter.open < 20 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(server.runtime.connectionLimiter.open == 20)
            let refused = try TCPProbe(port: server.port, receiveTimeout: 5)
            let answer = await refused.readAll()
            #expect(answer.closed)
            #expect(TCPProbe.status(answer.text) == 503, "got: \(answer.text)")
            #expect(answer.text.contains("maximum of 20"))
            let health = try await TCPProbe.http(port: server.port, from: "127.0.0.2", "GET", "/healthz")
            #expect(TCPProbe.status(health) == 200, "got: \(health)")
            // Closing idle sockets frees their slots.
            idle.removeAll()
            let freed = ContinuousClock.now + .seconds(30)
            while server.runtime.connectionLimiter.open > 0 && ContinuousClock.now < freed {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(TCPProbe.status(try await TCPProbe.http(port: server.port, from: "127.0.0.1", "GET", "/healthz")) == 200)
            let metrics = try await rawRequest(.GET, server.metricsURL)
            #expect(metrics.body.contains("warbler_connections_refused_total 1"))
        }
    }

    @Test func aSocketThatSendsNoRequestHeadIsClosedAfterTheTimeout() async throws {
        try await withServer(.sqlite, { $0.server.requestHeadTimeoutSeconds = 1 }) { server in
            let silent = try TCPProbe(port: server.port, receiveTimeout: 8)
            let half = try TCPProbe(port: server.port, receiveTimeout: 8)
            half.send("GET /healthz HTTP/1.1\r\nHost: x\r\n")   // a head that never ends
            let started = ContinuousClock.now
            #expect(await silent.readAll().closed)
            #expect(await half.readAll().closed)
            #expect(ContinuousClock.now - started < .seconds(6))
            // A client that sends its request in time is served as usual.
            #expect(TCPProbe.status(try await TCPProbe.http(port: server.port, from: "127.0.0.1", "GET", "/healthz")) == 200)
        }
    }
}

@Suite(.timeLimit(.minutes(2))) struct AbuseLimitTests {
    static let login = "/v1/auth/login"

    /// Wrong passwords from a stranger's address lock that address out of the account, not the owner.
    @Test func strangersWrongPasswordsDoNotLockTheOwnerOut() async throws {
        try await withServer(.sqlite, { $0.auth.loginPerMinutePerAccount = 3 }) { server in
            _ = try await server.user("alice")
            let port = server.port
            var stranger: [Int] = []
            for _ in 0..<5 {
                stranger.append(TCPProbe.status(try await TCPProbe.http(port: port, from: "127.0.0.2", "POST", Self.login,
                                                                 json: #"{"username":"alice","password":"guess-guess"}"#)))
            }
            #expect(stranger == [401, 401, 401, 429, 429])
            // The owner, from a clean address, gets in; and keeps getting in (successes are not counted).
            for _ in 0..<5 {
                let r = try await rawRequest(.POST, server.baseURL + Self.login, json: #"{"username":"alice","password":"password-123"}"#)
                #expect(r.status == 200)
            }
        }
    }

    /// Only wrong passwords count per address too: many users behind one address (a NAT, `warbler bench`) log in
    /// freely, while guessing across accounts from one address is held back.
    @Test func successfulLoginsFromOneAddressAreNotLimited() async throws {
        try await withServer(.sqlite, { $0.auth.loginPerMinutePerAddress = 3 }) { server in
            for i in 0..<6 { _ = try await server.user("user\(i)") }
            for i in 0..<6 {
                let r = try await rawRequest(.POST, server.baseURL + Self.login, json: #"{"username":"user\#(i)","password":"password-123"}"#)
                #expect(r.status == 200)
            }
            var wrong: [Int] = []
            for i in 0..<5 {
                wrong.append(try await rawRequest(.POST, server.baseURL + Self.login, json: #"{"username":"user\#(i)","password":"nope-nope"}"#).status)
            }
            #expect(wrong == [401, 401, 401, 429, 429])
        }
    }

    /// The installer's default closes registration: `warbler bench` then creates its accounts as an admin, and says
    /// so when it was not given one.
    @Test func benchCreatesItsAccountsThroughAnAdminWhenRegistrationIsClosed() async throws {
        try await withServer(.sqlite, { $0.auth.registration = "admin" }) { server in
            _ = try await server.runtime.createUser(username: "root", password: "root-password-1", displayName: nil, admin: true)
            do {
                _ = try await LoadGenerator(baseURL: server.baseURL, pairs: 1, messagesPerSender: 5, window: 2, password: "bench-password-1",
                                            prefix: "b1").run()
                Issue.record("the benchmark ran without accounts")
            } catch let e as IMError {
                #expect(e.code == .registrationClosed && e.message.contains("--admin"))
            }
            let admin = AdminAccounts(username: "root", password: "root-password-1")
            for _ in 0..<2 {   // a second run finds its accounts there
                let report = try await LoadGenerator(baseURL: server.baseURL, pairs: 2, messagesPerSender: 20, window: 4,
                                                     password: "bench-password-1", prefix: "b2", admin: admin).run()
                #expect(report.sent == 40 && report.acked == 40 && report.delivered == 40 && report.errors == 0)
                // The generator reports what its own process spent, so a saturated generator shows.
                #expect(report.generatorCPUSeconds > 0 && report.description.contains("load generator CPU"))
            }
        }
    }

    @Test func registrationsArePerAddressRateLimited() async throws {
        try await withServer(.sqlite, { $0.auth.registerPerHourPerAddress = 3 }) { server in
            var statuses: [Int] = []
            var retryAfter: String?
            for i in 0..<5 {
                let r = try await rawRequest(.POST, server.baseURL + "/v1/auth/register", json: #"{"username":"walkin\#(i)","password":"password-123"}"#)
                statuses.append(r.status)
                if r.status == 429 { retryAfter = r.headers.first(name: "Retry-After") }
            }
            #expect(statuses == [201, 201, 201, 429, 429])
            #expect(retryAfter.flatMap(Int.init).map { $0 >= 1 } == true)
            // Another address is not held back by this one.
            let other = try await TCPProbe.http(port: server.port, from: "127.0.0.2", "POST", "/v1/auth/register",
                                          json: #"{"username":"elsewhere","password":"password-123"}"#)
            #expect(TCPProbe.status(other) == 201, "got: \(other)")
        }
    }

    @Test func passwordChangesArePerAddressRateLimited() async throws {
        try await withServer(.sqlite, { $0.auth.passwordChangesPerHourPerAddress = 2 }) { server in
            let alice = try await server.user("alice")
            let token = try #require(await alice.client.session).accessToken
            var statuses: [Int] = []
            for _ in 0..<3 {
                statuses.append(try await rawRequest(.POST, server.baseURL + "/v1/auth/password",
                                                     json: #"{"oldPassword":"wrong-one-1","newPassword":"password-456"}"#, bearer: token).status)
            }
            #expect(statuses == [401, 401, 429])
        }
    }

    /// bcrypt work is bounded: when the hashes in flight are at the cap, more are refused with 503 and
    /// Retry-After at once, and nothing fails with an internal error.
    @Test func concurrentHashingBeyondTheCapIsRefusedWith503() async throws {
        try await withServer(.sqlite, { $0.auth.maxConcurrentHashes = 1; $0.auth.bcryptCost = 12 }) { server in
            let url = server.baseURL + "/v1/auth/register"
            let results = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                for i in 0..<6 {
                    group.addTask {
                        let r = try await rawRequest(.POST, url, json: #"{"username":"burst\#(i)","password":"password-123"}"#)
                        return (r.status, r.headers.first(name: "Retry-After"))
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.allSatisfy { $0.0 == 201 || $0.0 == 503 }, "\(results)")
            #expect(results.contains { $0.0 == 201 })
            #expect(results.contains { $0.0 == 503 && $0.1 != nil }, "\(results)")
        }
    }

    /// A zero limit used to pass validation and crash the server at the first login (a division by zero).
    @Test func everyLimitIsValidated() throws {
        let zeroes = ["WARBLER_AUTH_LOGIN_PER_MINUTE_PER_ACCOUNT": "auth.login_per_minute_per_account",
                      "WARBLER_AUTH_LOGIN_PER_MINUTE_PER_ADDRESS": "auth.login_per_minute_per_address",
                      "WARBLER_AUTH_REGISTER_PER_HOUR_PER_ADDRESS": "auth.register_per_hour_per_address",
                      "WARBLER_AUTH_MAX_CONCURRENT_HASHES": "auth.max_concurrent_hashes",
                      "WARBLER_AUTH_ACCESS_TTL_SECONDS": "auth.access_ttl_seconds",
                      "WARBLER_LIMITS_SENDS_PER_SECOND": "limits.sends_per_second",
                      "WARBLER_LIMITS_SEND_BURST": "limits.send_burst",
                      "WARBLER_LIMITS_BODY_BYTES": "limits.body_bytes",
                      "WARBLER_LIMITS_ATTACHMENT_BYTES": "limits.attachment_bytes",
                      "WARBLER_LIMITS_GROUP_SIZE": "limits.group_size",
                      "WARBLER_LIMITS_TEXT_BYTES": "limits.text_bytes",
                      "WARBLER_STORAGE_MAX_BATCH": "storage.max_batch",
                      "WARBLER_STORAGE_POSTGRES_COMMITS_IN_FLIGHT": "storage.postgres_commits_in_flight",
                      "WARBLER_SERVER_REQUEST_HEAD_TIMEOUT_SECONDS": "server.request_head_timeout_seconds",
                      "WARBLER_SERVER_IDLE_TIMEOUT_SECONDS": "server.idle_timeout_seconds"]
        for (variable, key) in zeroes {
            #expect {
                _ = try ServerConfig.load(path: nil, environment: [variable: "0"])
            } throws: { error in
                "\(error)".contains(key)
            }
        }
        #expect(throws: (any Error).self) { _ = try ServerConfig.load(path: nil, environment: ["WARBLER_SERVER_MAX_CONNECTIONS": "-1"]) }
        #expect(throws: Never.self) { _ = try ServerConfig.load(path: nil, environment: ["WARBLER_LIMITS_RECALL_SECONDS": "0"]) }
        // Each commit in flight holds one of the pool's 20 connections.
        #expect { _ = try ServerConfig.load(path: nil, environment: ["WARBLER_STORAGE_POSTGRES_COMMITS_IN_FLIGHT": "9"]) } throws: { error in
            "\(error)".contains("storage.postgres_commits_in_flight")
        }
        #expect(try ServerConfig.load(path: nil, environment: [:]).storage.postgresCommitsInFlight == 2)
    }

    @Test func nobodyIsPutIntoAGroupBySomeoneTheyBlocked() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let carol = try await server.user("carol")
            try await alice.client.block(bob.id)
            // The same answer as for a user who does not exist: bob cannot tell that alice blocked him.
            await expectIMError(.notFound) { _ = try await bob.client.createGroup(name: "g1", members: [alice.id, carol.id]) }
            let group = try await bob.client.createGroup(name: "g2", members: [carol.id])
            await expectIMError(.notFound) { _ = try await bob.client.addMembers([alice.id], to: group.id) }
            #expect(try await bob.client.conversation(group.id).members.map(\.user).sorted() == [bob.id, carol.id].sorted())
            // Someone alice did not block may still add her.
            let other = try await carol.client.createGroup(name: "g3", members: [alice.id, bob.id])
            #expect(other.members.count == 3)
        }
    }
}

@Suite struct MembershipCacheTests {
    /// A cache fill that started before an invalidation must not put the old member list back.
    @Test func aLoadOverlappingAnInvalidationDoesNotCacheStaleMembers() async throws {
        let (gate, open) = AsyncStream.makeStream(of: Void.self)
        let calls = Mutexed(0)
        let current = Mutexed<[Member]>([Member(user: 1, role: .owner, readSeq: 0, deliveredSeq: 0)])
        let dir = NSTemporaryDirectory() + "warbler-hub-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var config = ServerConfig()
        config.storage.path = dir + "/warbler.db"
        let storage = try await StorageFactory.openStorage(config: config, logger: Logger(label: "test"))
        let hub = Hub(storage: storage, metrics: ServerMetrics(), logger: Logger(label: "test"), loadConversation: { id in
            let n = calls.withLock { $0 += 1; return $0 }
            let snapshot = current.withLock { $0 }
            if n == 1 { for await _ in gate { break } }   // the first load reads, then stalls before returning
            return Conversation(id: id, type: .group, name: "g", lastSeq: 0, members: snapshot)
        })
        async let stale = hub.members(of: 7)
        while calls.withLock({ $0 }) < 1 { await Task.yield() }
        // Meanwhile bob joins and the conversation is invalidated.
        current.withLock { $0.append(Member(user: 2, role: .member, readSeq: 0, deliveredSeq: 0)) }
        hub.invalidate(7)
        open.yield()
        #expect(try await stale.keys.sorted() == [1])   // the overlapping call answers with what it read ...
        #expect(try await hub.members(of: 7).keys.sorted() == [1, 2])   // ... but did not cache it
        try await storage.close()
    }
}

@Suite(.timeLimit(.minutes(2))) struct AttachmentLimitTests {
    /// The files (not the fan-out directories) under the server's attachment directory.
    static func files(under dir: String) -> [String] {
        (FileManager.default.enumerator(atPath: dir + "/attachments")?.allObjects as? [String] ?? []).filter { $0.contains("/") }
    }

    /// How many attachments have bytes stored: files on disk (SQLite), chunked uploads in the database (PostgreSQL).
    static func storedAttachments(_ server: TestServer) async throws -> Int {
        guard server.runtime.attachments.backing == .database else { return files(under: server.directory).count }
        let store = try #require(server.runtime.storage as? SQLStore)
        return Int(try await store.driver.read { db in
            try await db.first("SELECT COUNT(DISTINCT attachment_id) AS n FROM attachment_chunks")?.int("n") ?? -1
        })
    }

    @Test(arguments: Backend.allCases) func eachUserHasAQuotaAndAnUploadOverItLeavesNothingBehind(backend: Backend) async throws {
        try await withServer(backend, { $0.limits.attachmentBytes = 1000; $0.limits.attachmentQuotaBytes = 1500 }) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            _ = try await alice.client.uploadAttachment(to: conv, name: "a.txt", contentType: "text/plain", data: Data(count: 800))
            do {
                _ = try await alice.client.uploadAttachment(to: conv, name: "b.txt", contentType: "text/plain", data: Data(count: 800))
                Issue.record("an upload over the quota was stored")
            } catch let e as IMError {
                #expect(e.code == .tooLarge)
                #expect(e.message.contains("quota"))
            }
            // The refused upload streamed part of its body before crossing the quota: no partial file is left.
            #expect(Self.files(under: server.directory).filter { $0.hasSuffix(".part") }.isEmpty)
            #expect(try await Self.storedAttachments(server) == 1)
            // Bob's quota is his own.
            _ = try await bob.client.uploadAttachment(to: conv, name: "c.txt", contentType: "text/plain", data: Data(count: 800))
        }
    }

    /// In the database, an upload refused where it crosses the quota has already committed whole chunks: they go.
    @Test func aChunkedUploadOverTheQuotaLeavesNoChunks() async throws {
        try await withServer(.postgres, { $0.limits.attachmentBytes = 1 << 20; $0.limits.attachmentQuotaBytes = 1_200_000 }) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            _ = try await alice.client.uploadAttachment(to: conv, name: "a.bin", contentType: "application/octet-stream", data: Data(count: 700_000))
            await expectIMError(.tooLarge) {
                _ = try await alice.client.uploadAttachment(to: conv, name: "b.bin", contentType: "application/octet-stream", data: Data(count: 700_000))
            }
            #expect(try await Self.storedAttachments(server) == 1)
        }
    }

    @Test func uploadsPerUserAreRateLimited() async throws {
        try await withServer(.sqlite, { $0.limits.uploadsPerMinute = 2 }) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            for i in 0..<2 {
                _ = try await alice.client.uploadAttachment(to: conv, name: "\(i).txt", contentType: "text/plain", data: Data(count: 10))
            }
            await expectIMError(.rateLimited) {
                _ = try await alice.client.uploadAttachment(to: conv, name: "3.txt", contentType: "text/plain", data: Data(count: 10))
            }
        }
    }

    @Test(arguments: Backend.allCases) func dissolvingAGroupDeletesItsAttachments(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let group = try await alice.client.createGroup(name: "g", members: [bob.id])
            let ref = try await alice.client.uploadAttachment(to: group.id, name: "a.txt", contentType: "text/plain", data: Data(repeating: 65, count: 300))
            #expect(try await server.runtime.attachments.bytesPresent(for: ref.id))
            #expect(try await bob.client.downloadAttachment(ref.id).data == Data(repeating: 65, count: 300))
            try await alice.client.dissolveConversation(group.id)
            #expect(try await !server.runtime.attachments.bytesPresent(for: ref.id))
            #expect(try await server.runtime.storage.attachment(id: ref.id) == nil)
            #expect(try await server.runtime.storage.attachmentBytes(uploader: alice.id) == 0)
        }
    }

    @Test(arguments: Backend.allCases) func unreferencedAttachmentsAreCollectedAfterTheGracePeriod(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            let sent = try await alice.client.uploadAttachment(to: conv, name: "sent.txt", contentType: "text/plain", data: Data(count: 10))
            let recalled = try await alice.client.uploadAttachment(to: conv, name: "recalled.txt", contentType: "text/plain", data: Data(count: 10))
            let unsent = try await alice.client.uploadAttachment(to: conv, name: "unsent.txt", contentType: "text/plain", data: Data(count: 10))
            _ = try await a.connection.send(conversation: conv, attachment: sent, caption: nil)
            let ack = try await a.connection.send(conversation: conv, attachment: recalled, caption: nil)
            _ = try await a.connection.recall(conversation: conv, seq: ack.seq)
            let attachments = server.runtime.attachments
            // Within the grace period nothing goes (an upload is sent a moment after it is stored).
            #expect(try await attachments.collectGarbage(now: nowMillis()) == 0)
            #expect(try await attachments.collectGarbage(now: nowMillis() + 25 * 3600 * 1000) == 2)
            #expect(try await server.runtime.storage.attachment(id: sent.id) != nil)
            #expect(try await server.runtime.storage.attachment(id: recalled.id) == nil)
            #expect(try await server.runtime.storage.attachment(id: unsent.id) == nil)
            #expect(try await !attachments.bytesPresent(for: unsent.id))
            #expect(try await attachments.bytesPresent(for: sent.id))
            await a.close()
        }
    }
}
