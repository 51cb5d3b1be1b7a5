import Foundation
import IMClient
import IMCore
import Testing

/// A `warbler server` child process on a free loopback port.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    let port: Int
    let directory: String
    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// The `warbler` executable built beside this test bundle.
    static var executable: String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("warbler").path
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw IMError(.internal, "no free port") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// `environment` adds settings (`WARBLER_…`) to the ones every test server gets.
    init(directory: String, port: Int? = nil, environment: [String: String] = [:]) throws {
        self.directory = directory
        self.port = try port ?? Self.freePort()
        let config = directory + "/empty.yaml"
        _ = FileManager.default.createFile(atPath: config, contents: Data())
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = ["server", "--config", config]
        var env = ProcessInfo.processInfo.environment
        env["WARBLER_SERVER_HOST"] = "127.0.0.1"
        env["WARBLER_SERVER_PORT"] = String(self.port)
        env["WARBLER_METRICS_PORT"] = "-1"
        env["WARBLER_STORAGE_PATH"] = directory + "/warbler.db"
        env["WARBLER_DATA_DIR"] = directory
        env["WARBLER_AUTH_JWT_KEY_FILE"] = directory + "/jwt.key"
        env["WARBLER_AUTH_BCRYPT_COST"] = "4"
        env["WARBLER_LIMITS_SENDS_PER_SECOND"] = "1000000"
        env["WARBLER_LIMITS_SEND_BURST"] = "1000000"
        env["WARBLER_LOG_LEVEL"] = "error"
        env.merge(environment) { _, new in new }
        process.environment = env
        process.standardOutput = FileHandle.nullDevice
        try process.run()
    }

    func waitUntilReady() async throws {
        for _ in 0..<600 {
            if let r = try? await rawRequest(.GET, baseURL + "/readyz"), r.status == 200 { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw IMError(.unavailable, "server process did not become ready")
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM and wait; returns the exit status and how long it took.
    func terminate() async -> (Int32, Duration) {
        let start = ContinuousClock.now
        kill(process.processIdentifier, SIGTERM)
        while process.isRunning && start.duration(to: .now) < .seconds(15) { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { kill9(); return (-1, start.duration(to: .now)) }
        return (process.terminationStatus, start.duration(to: .now))
    }
}

@Suite(.timeLimit(.minutes(3)), .serialized) struct CrashTests {
    @Test func killMinus9DuringABurstLosesNoAcknowledgedMessage() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: ServerProcess.executable), "build the warbler executable first (swift build)")
        let dir = NSTemporaryDirectory() + "warbler-crash-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        let first = try ServerProcess(directory: dir)
        try await first.waitUntilReady()
        let alice = try IMClient(baseURL: first.baseURL)
        let bob = try IMClient(baseURL: first.baseURL)
        _ = try await alice.register(username: "alice", password: "password-123")
        let bobID = try await bob.register(username: "bob", password: "password-123").id
        let conv = try await alice.createDirectConversation(with: bobID).id

        let socket = RawSocket(url: "ws://127.0.0.1:\(first.port)/v1/ws")
        socket.send(.auth(.init(token: try #require(await alice.session).accessToken)))
        _ = await socket.next { if case .ready(let r) = $0 { return r }; return nil }
        // Keep 1,000 sends in flight at all times (one more for every ack), so whenever the kill lands,
        // hundreds of sends are between the socket and the disk, however fast this machine is.
        let window = 1_000
        var sent = 0
        func sendOne() { socket.send(.send(.init(cid: "burst-\(sent)", conv: conv, text: "payload \(sent)"))); sent += 1 }
        for _ in 0..<window { sendOne() }

        var acked: [String: Int64] = [:]
        while acked.count < 1500, let f = await socket.next(timeout: .seconds(20)) {
            if case .ack(let a) = f { acked[a.cid] = a.seq; sendOne() }
        }
        first.kill9()
        // Acks already in flight when the process died were sent after their commit: count them too.
        while let f = await socket.next(timeout: .milliseconds(300)) {
            if case .ack(let a) = f { acked[a.cid] = a.seq }
        }
        #expect(acked.count >= 1500)
        #expect(acked.count < sent, "the kill came too late to test anything")

        let second = try ServerProcess(directory: dir, port: first.port)
        try await second.waitUntilReady()
        var stored: [Message] = []
        var before: Int64? = nil
        while true {
            let page = try await bob.history(conv, before: before, limit: 200)
            stored += page.messages
            guard page.hasMore, let last = page.messages.last else { break }
            before = last.seq
        }
        let byCid = Dictionary(stored.map { ($0.cid, $0.seq) }, uniquingKeysWith: { a, _ in a })
        #expect(byCid.count == stored.count, "a cid was stored twice")
        let lost = acked.filter { byCid[$0.key] != $0.value }
        #expect(lost.isEmpty, "acknowledged but lost or moved: \(lost.prefix(5))")
        let seqs = stored.map(\.seq).sorted()
        #expect(seqs == Array(1...Int64(seqs.count)), "seqs have gaps")
        // Stored in send order: seq n holds burst-(n-1).
        #expect(stored.allSatisfy { $0.cid == "burst-\($0.seq - 1)" })

        let (status, took) = await second.terminate()
        #expect(status == 0)
        #expect(took < .seconds(5))
        socket.close()
        try await alice.shutdown(); try await bob.shutdown()
    }
}
