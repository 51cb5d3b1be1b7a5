@testable import AlertReceivers
import Foundation
import Logging
import Synchronization
import Testing

/// What happened, in order, across receivers.
final class EventLog: Sendable {
    private struct State {
        var events: [String] = []
        var waiters: [(event: String, continuation: CheckedContinuation<Void, Never>)] = []
    }
    private let state = Mutex(State())

    func append(_ event: String) {
        let ready = state.withLock { s in
            s.events.append(event)
            let hit = s.waiters.filter { $0.event == event }
            s.waiters.removeAll { $0.event == event }
            return hit
        }
        for w in ready { w.continuation.resume() }
    }

    var all: [String] { state.withLock { $0.events } }

    /// Returns once `event` has happened.
    func wait(for event: String) async {
        await withCheckedContinuation { c in
            let done = state.withLock { s in
                if s.events.contains(event) { return true }
                s.waiters.append((event, c))
                return false
            }
            if done { c.resume() }
        }
    }
}

/// A receiver that fails its first `failures` tries.
final class FlakyReceiver: AlertReceiver {
    let name: String
    let failures: Int
    let log: EventLog
    let tries = Mutex(0)

    init(name: String, failures: Int, log: EventLog) {
        self.name = name
        self.failures = failures
        self.log = log
    }

    func send(_ notification: AlertNotification) async throws {
        let n = tries.withLock { $0 += 1; return $0 }
        if n <= failures {
            log.append("\(name) fail \(n)")
            throw ReceiverError(receiver: name, "test failure \(n)")
        }
        log.append("\(name) ok \(notification.groupKey)")
    }
}

/// A receiver that does not return until the test releases it (ignoring cancellation, like a stuck peer).
final class HangingReceiver: AlertReceiver {
    let name: String
    let log: EventLog
    private let gate = Mutex<(open: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    init(name: String, log: EventLog) {
        self.name = name
        self.log = log
    }

    func release() {
        let waiting = gate.withLock { g in
            g.open = true
            defer { g.waiting = [] }
            return g.waiting
        }
        for c in waiting { c.resume() }
    }

    func send(_ notification: AlertNotification) async throws {
        log.append("\(name) started")
        await withCheckedContinuation { c in
            let open = gate.withLock { g in
                if !g.open { g.waiting.append(c) }
                return g.open
            }
            if open { c.resume() }
        }
        log.append("\(name) done")
    }
}

/// Keeps every log entry for the test to read.
final class LogSink: Sendable {
    let entries = Mutex<[(Logger.Level, String, Logger.Metadata)]>([])
    var logger: Logger {
        Logger(label: "test") { [self] _ in ForwardingHandler(target: self) }
    }
}

struct ForwardingHandler: LogHandler {
    let target: LogSink
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        target.entries.withLock { $0.append((event.level, event.message.description, event.metadata ?? [:])) }
    }
}

@Suite(.timeLimit(.minutes(1))) struct DispatcherTests {
    static let fast = RetryPolicy(attempts: 4, baseDelay: .milliseconds(10), maxDelay: .milliseconds(40))

    @Test func backoffDoublesUpToTheMaximum() {
        let p = RetryPolicy(attempts: 8, baseDelay: .seconds(2), maxDelay: .seconds(30))
        #expect((1...6).map { p.delay(afterAttempt: $0) } == [.seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30), .seconds(30)])
    }

    @Test func retriesAReceiverThatFailsTwiceThenSucceeds() async throws {
        let log = EventLog()
        let sink = LogSink()
        let flaky = FlakyReceiver(name: "flaky", failures: 2, log: log)
        let dispatcher = NotificationDispatcher(receivers: [flaky], logger: sink.logger, retry: Self.fast)
        await dispatcher.dispatch(Fixture.firing(), to: "flaky")
        #expect(await dispatcher.drain(timeout: .seconds(10)))
        #expect(log.all == ["flaky fail 1", "flaky fail 2", "flaky ok {}:{alertname=\"DiskFull\"}"])
        let stats = try #require(await dispatcher.statistics()["flaky"])
        #expect(stats.delivered == 1 && stats.retries == 2 && stats.failed == 0)
        let warnings = sink.entries.withLock { $0.filter { $0.0 == .warning } }
        #expect(warnings.count == 2)
        #expect(warnings.first?.2["error"]?.description.contains("test failure 1") == true)
    }

    @Test func givesUpAfterTheLastAttemptAndLogsIt() async throws {
        let log = EventLog()
        let sink = LogSink()
        let dead = FlakyReceiver(name: "dead", failures: 100, log: log)
        let dispatcher = NotificationDispatcher(receivers: [dead], logger: sink.logger, retry: Self.fast)
        await dispatcher.dispatch(Fixture.firing(), to: "dead")
        #expect(await dispatcher.drain(timeout: .seconds(10)))
        #expect(log.all.count == 4)
        #expect(await dispatcher.statistics()["dead"]?.failed == 1)
        #expect(sink.entries.withLock { $0.contains { $0.0 == .error && $0.1.contains("giving up") } })
    }

    /// The hanging receiver got its notification first, yet the live one delivers (twice) while it still hangs.
    @Test func aHangingReceiverDoesNotDelayAnother() async throws {
        let log = EventLog()
        let hang = HangingReceiver(name: "hang", log: log)
        let live = FlakyReceiver(name: "live", failures: 0, log: log)
        let dispatcher = NotificationDispatcher(receivers: [hang, live], logger: LogSink().logger, retry: Self.fast)
        var second = Fixture.firing()
        second.groupKey = "second"
        await dispatcher.dispatch(Fixture.firing(), to: "hang")
        await dispatcher.dispatch(second, to: "hang")
        await log.wait(for: "hang started")
        await dispatcher.dispatch(Fixture.firing(), to: "live")
        await dispatcher.dispatch(second, to: "live")
        await log.wait(for: "live ok second")
        hang.release()
        #expect(await dispatcher.drain(timeout: .seconds(10)))
        let events = log.all
        let liveDone = try #require(events.firstIndex(of: "live ok second"))
        let hangDone = try #require(events.firstIndex(of: "hang done"))
        #expect(liveDone < hangDone)
        #expect(events.filter { $0 == "hang done" }.count == 2)
    }

    @Test func unknownReceiverIsAnErrorLogged() async throws {
        let sink = LogSink()
        let dispatcher = NotificationDispatcher(receivers: [FlakyReceiver(name: "known", failures: 0, log: EventLog())],
                                                logger: sink.logger, retry: Self.fast)
        await dispatcher.dispatch(Fixture.firing(), to: "missing")
        #expect(await dispatcher.unknownReceiverDrops == 1)
        let errors = sink.entries.withLock { $0.filter { $0.0 == .error } }
        #expect(errors.count == 1)
        #expect(errors.first?.1.contains("no receiver named 'missing'") == true)
        #expect(errors.first?.2["alert.receivers.known"]?.description == "known")
    }

    @Test func drainGivesUpAfterItsTimeout() async throws {
        let log = EventLog()
        let hang = HangingReceiver(name: "hang", log: log)
        let sink = LogSink()
        let dispatcher = NotificationDispatcher(receivers: [hang], logger: sink.logger, retry: Self.fast)
        await dispatcher.dispatch(Fixture.firing(), to: "hang")
        await dispatcher.dispatch(Fixture.firing(), to: "hang")
        await log.wait(for: "hang started")
        #expect(await dispatcher.drain(timeout: .milliseconds(100)) == false)
        #expect(await dispatcher.statistics()["hang"]?.dropped == 1)
        // After drain, new notifications are refused.
        await dispatcher.dispatch(Fixture.firing(), to: "hang")
        #expect(await dispatcher.statistics()["hang"]?.dropped == 2)
        hang.release()
    }

    @Test func permanentRefusalIsNotRetried() async throws {
        final class Refusing: AlertReceiver {
            let name = "refusing"
            let tries = Mutex(0)
            func send(_ notification: AlertNotification) async throws {
                tries.withLock { $0 += 1 }
                throw ReceiverError(receiver: name, "550 no such user", permanent: true)
            }
        }
        let r = Refusing()
        let dispatcher = NotificationDispatcher(receivers: [r], logger: LogSink().logger, retry: Self.fast)
        await dispatcher.dispatch(Fixture.firing(), to: "refusing")
        #expect(await dispatcher.drain(timeout: .seconds(10)))
        #expect(r.tries.withLock { $0 } == 1)
        #expect(await dispatcher.statistics()["refusing"]?.failed == 1)
    }

    /// The dispatcher with real receivers: a webhook answering 500 twice then 200 gets the notification on try 3.
    @Test func retriesARealWebhook() async throws {
        let server = try await TestHTTPServer.start(answers: [.init(status: 500, body: "a"), .init(status: 500, body: "b"), .init()])
        defer { Task { try? await server.stop() } }
        let hook = try Receivers.make(ReceiverConfig(name: "hook", type: .webhook, url: server.baseURL + "/a"))
        let dispatcher = NotificationDispatcher(receivers: [hook], logger: LogSink().logger, retry: Self.fast)
        await dispatcher.dispatch(Fixture.firing(), to: "hook")
        #expect(await dispatcher.drain(timeout: .seconds(20)))
        #expect(server.requests.count == 3)
        #expect(await dispatcher.statistics()["hook"]?.delivered == 1)
    }
}
