import Foundation
import Hummingbird
import NIOCore

/// A real HTTP endpoint on 127.0.0.1 (Hummingbird, port 0) that records every webhook POST and answers what the
/// test says: a status per request (the last one repeats), optionally after a delay.
final class WebhookReceiver: Sendable {
    struct Received: Sendable {
        var path: String
        var headers: [String: String]
        var body: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:] }
        var eventID: String? { json["id"] as? String }
        var type: String? { json["type"] as? String }
    }
    private struct State {
        var received: [Received] = []
        var statuses: [Int] = [200]
        var delay: Duration = .zero
        var location = ""
        var bodies: [String] = []
    }
    private let state = Mutexed(State())
    private let task: Task<Void, any Error>
    private let portBox = Mutexed<Int?>(nil)

    var port: Int { portBox.withLock { $0 } ?? 0 }
    func url(_ path: String = "/hook") -> String { "http://127.0.0.1:\(port)\(path)" }
    var received: [Received] { state.withLock { $0.received } }

    /// Answers these statuses in turn (the last repeats), after `delay`; a 3xx carries `Location: location`. `bodies`
    /// (JSON) are answered in turn the same way (none: an empty body).
    func answer(_ statuses: [Int], delay: Duration = .zero, location: String = "", bodies: [String] = []) {
        state.withLock { $0.statuses = statuses; $0.delay = delay; $0.location = location; $0.bodies = bodies }
    }

    init() async throws {
        let router = Router()
        let state = self.state
        router.post("**") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 1 << 20)
            var headers: [String: String] = [:]
            for h in request.headers { headers[h.name.canonicalName.lowercased()] = h.value }   // looked up in lower case
            let (status, delay, location, answer) = state.withLock { s -> (Int, Duration, String, String?) in
                s.received.append(Received(path: request.uri.path, headers: headers, body: String(buffer: body)))
                let status = s.statuses.count > 1 ? s.statuses.removeFirst() : (s.statuses.first ?? 200)
                let answer = s.bodies.count > 1 ? s.bodies.removeFirst() : s.bodies.first
                return (status, s.delay, s.location, answer)
            }
            if delay > .zero { try await Task.sleep(for: delay) }
            var response = answer.map {
                Response(status: .init(code: status), headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: $0)))
            } ?? Response(status: .init(code: status))
            if !location.isEmpty { response.headers[.location] = location }
            return response
        }
        let portBox = self.portBox
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "webhook-receiver"),
                              onServerRunning: { channel in portBox.withLock { $0 = channel.localAddress?.port } })
        task = Task { try await app.runService(gracefulShutdownSignals: []) }
        for _ in 0..<500 where portBox.withLock({ $0 }) == nil { try await Task.sleep(for: .milliseconds(10)) }
    }

    func stop() async {
        task.cancel()
        _ = try? await task.value
    }

    /// Waits until `condition` holds for what arrived; false on timeout.
    func wait(timeout: Duration = .seconds(15), _ condition: ([Received]) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition(received) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return condition(received)
    }
}
