import Foundation
import IMCore
@testable import IMStorage
import Testing

/// A driver that passes everything to a real one, except that it can hold the next write before it starts, until
/// released: a commit that never returns (measured on booted hosts after a PostgreSQL switchover).
final class HoldingDriver: SQLDriver {
    let inner: any SQLDriver
    private let held = LockedBox<(armed: Bool, waiting: [CheckedContinuation<Void, Never>], released: Bool)>((false, [], false))
    init(_ inner: any SQLDriver) { self.inner = inner }

    var dialect: SQLDialect { inner.dialect }
    var writeExecutor: (any TaskExecutor)? { inner.writeExecutor }
    func holdNextWrite() { held.withLock { $0.armed = true; $0.released = false } }
    func release() {
        let waiting = held.withLock { h -> [CheckedContinuation<Void, Never>] in h.released = true; defer { h.waiting = [] }; return h.waiting }
        for c in waiting { c.resume() }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) async throws -> T) async throws -> T { try await inner.read(body) }
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        let hold = held.withLock { h -> Bool in defer { h.armed = false }; return h.armed }
        if hold {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = held.withLock { h -> Bool in
                    if h.released { return true }
                    h.waiting.append(c); return false
                }
                if now { c.resume() }
            }
        }
        return try await inner.write(body)
    }
    func withExclusiveLock<T: Sendable>(_ key: Int64, _ body: @Sendable (any SQLDriver) async throws -> T) async throws -> T {
        try await inner.withExclusiveLock(key, body)
    }
    func sizeInBytes() async throws -> Int64 { try await inner.sizeInBytes() }
    func close() async throws {}
}

@Suite("Commit watchdog", .timeLimit(.minutes(1)))
struct CommitWatchdogTests {
    /// PostgreSQL runs with one commit at a time and with two overlapping (`commitsInFlight`).
    @Test(arguments: zip([Backend.sqlite, .postgres, .postgres], [1, 1, 2]))
    func aCommitThatNeverReturnsIsAnsweredUnavailableAndTheSendsBehindItAreCommitted(_ backend: Backend, _ depth: Int) async throws {
        try await backend.withStore { setup, driver in
            let a = try await setup.user("alice"), b = try await setup.user("bob")
            let conv = try await setup.directConversation(between: a.id, and: b.id).id
            let holding = HoldingDriver(driver)
            // Long enough that an ordinary commit on a loaded machine (the whole suite in parallel) never reaches it.
            let store = SQLStore(driver: holding, commitsInFlight: depth, commitTimeout: .seconds(4))
            let stalls = LockedBox<[Int]>([]), published = LockedBox<[String]>([])
            await store.observeStalledCommits { n, _ in stalls.withLock { $0.append(n) } }
            await store.observeAppends { ms in published.withLock { $0 += ms.map(\.cid) } }
            func m(_ cid: String) -> NewMessage { NewMessage(conversation: conv, sender: a.id, cid: cid, kind: .text, text: cid) }

            holding.holdNextWrite()
            let stuck = await store.submit(m("stuck"))
            try await Task.sleep(for: .milliseconds(50))
            let behind = await store.submit(m("behind"))

            // The held commit is given up on: its send is answered with the retryable `unavailable`, not left waiting.
            let started = ContinuousClock.now
            await #expect(throws: StorageError.self) { _ = try await stuck.result() }
            #expect(started.duration(to: .now) < .seconds(20))
            // What queued behind it is committed by a new loop.
            let behindSeq = try #require(try? await behind.result().get()).message.seq
            #expect(stalls.withLock { $0 } == [1])
            let next = try await store.submit(m("next")).result().get()
            #expect(next.message.seq == behindSeq + 1)

            // The held commit ends after all: its message is stored (and published), and the client's retry with
            // the same cid is answered from it, not stored twice.
            holding.release()
            var stored: [String] = []
            for _ in 0..<200 {
                stored = try await setup.messages(conversation: conv, after: 0, limit: 10).map(\.cid)
                if stored.contains("stuck") { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(stored.sorted() == ["behind", "next", "stuck"])
            let retry = try await store.submit(m("stuck")).result().get()
            #expect(retry.duplicate)
            #expect(try await setup.messages(conversation: conv, after: 0, limit: 10).filter { $0.cid == "stuck" }.count == 1)
            #expect(published.withLock { $0 }.sorted() == ["behind", "next", "stuck"])
        }
    }

    @Test func aSlowCommitWithinTheTimeoutIsNotGivenUpOn() async throws {
        try await Backend.sqlite.withStore { setup, driver in
            let a = try await setup.user("alice"), b = try await setup.user("bob")
            let conv = try await setup.directConversation(between: a.id, and: b.id).id
            let holding = HoldingDriver(driver)
            let store = SQLStore(driver: holding, commitTimeout: .seconds(10))
            let stalls = LockedBox(0)
            await store.observeStalledCommits { _, _ in stalls.withLock { $0 += 1 } }
            holding.holdNextWrite()
            let slow = await store.submit(NewMessage(conversation: conv, sender: a.id, cid: "slow", kind: .text, text: "slow"))
            try await Task.sleep(for: .seconds(1))
            holding.release()
            #expect(try await slow.result().get().duplicate == false)
            #expect(stalls.withLock { $0 } == 0)
        }
    }
}
