import Foundation
import IMClient
import IMCore
import IMServer
import Logging
import Testing

/// The webhook outbox under kill -9 of a server process: every committed message's webhook is delivered at least
/// once (after the restart if need be), and none is delivered for a message that was not committed.
@Suite(.timeLimit(.minutes(3)), .serialized) struct WebhookCrashTests {
    @Test func killMinus9NeverLosesAWebhookNorSendsOneForAnUncommittedMessage() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: ServerProcess.executable), "build the warbler executable first (swift build)")
        let dir = NSTemporaryDirectory() + "warbler-webhook-crash-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The first admin, made in the database the way `warbler user-add` makes it.
        let setup = try await ServerRuntime.open(config: TestServer.makeConfig(directory: dir), logger: Logger(label: "test.setup"))
        _ = try await setup.createUser(username: "root", password: "password-123", displayName: nil, admin: true)
        try await setup.storage.close()

        let receiver = try await WebhookReceiver()
        defer { Task { await receiver.stop() } }
        let env = ["WARBLER_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8", "WARBLER_WEBHOOKS_POLL_SECONDS": "0.05",
                   "WARBLER_WEBHOOKS_TIMEOUT_SECONDS": "1"]
        let first = try ServerProcess(directory: dir, environment: env)
        try await first.waitUntilReady()
        let admin = try IMClient(baseURL: first.baseURL)
        let alice = try IMClient(baseURL: first.baseURL)
        let bob = try IMClient(baseURL: first.baseURL)
        _ = try await admin.login(username: "root", password: "password-123")
        _ = try await admin.createWebhook(.init(url: receiver.url(), events: [.messageCreated]))
        _ = try await alice.register(username: "alice", password: "password-123")
        let bobID = try await bob.register(username: "bob", password: "password-123").id
        let conv = try await alice.createDirectConversation(with: bobID).id

        let socket = RawSocket(url: "ws://127.0.0.1:\(first.port)/v1/ws")
        socket.send(.auth(.init(token: try #require(await alice.session).accessToken)))
        _ = await socket.next { if case .ready(let r) = $0 { return r }; return nil }
        // Sends stay in flight while the process is killed, so some are committed and some are not.
        var sent = 0
        func sendOne() { socket.send(.send(.init(cid: "c\(sent)", conv: conv, text: "m\(sent)"))); sent += 1 }
        for _ in 0..<300 { sendOne() }
        var acked: [String: Int64] = [:]
        while acked.count < 400, let f = await socket.next(timeout: .seconds(20)) {
            if case .ack(let a) = f { acked[a.cid] = a.seq; sendOne() }
        }
        first.kill9()
        while let f = await socket.next(timeout: .milliseconds(300)) {
            if case .ack(let a) = f { acked[a.cid] = a.seq }
        }
        #expect(acked.count >= 400 && acked.count < sent, "the kill came too late to test anything")

        let second = try ServerProcess(directory: dir, port: first.port, environment: env)
        try await second.waitUntilReady()
        var stored: [Message] = []
        var before: Int64?
        while true {
            let page = try await bob.history(conv, before: before, limit: 200)
            stored += page.messages
            guard page.hasMore, let last = page.messages.last else { break }
            before = last.seq
        }
        let committed = Set(stored.map { "evt_\(conv)_\($0.seq)" })
        #expect(acked.allSatisfy { a in stored.contains { $0.cid == a.key && $0.seq == a.value } }, "an acknowledged message was lost")
        // Deliveries a dead process had claimed wait out their lease (about 7 s here), then go again.
        let all = await receiver.wait(timeout: .seconds(60)) { got in committed.isSubset(of: Set(got.compactMap(\.eventID))) }
        let delivered = Set(receiver.received.compactMap(\.eventID))
        #expect(all, "\(committed.subtracting(delivered).count) committed messages never got their webhook")
        #expect(delivered.isSubset(of: committed), "webhooks for messages that were never committed: \(delivered.subtracting(committed).prefix(5))")

        let (status, _) = await second.terminate()
        #expect(status == 0)
        socket.close()
        try await admin.shutdown(); try await alice.shutdown(); try await bob.shutdown()
    }
}
