import Foundation
import IMCore
import NIOCore
import PostgresNIO

/// Ends every read or write running on a pooled connection the moment that connection closes, with the retryable
/// `unavailable`, instead of waiting for its reply.
///
/// Measured on booted hosts (a Patroni switchover during a cluster upgrade): the old primary terminated every
/// backend within 30 ms of its demotion, and a commit sent on one of those connections at that moment never
/// resumed inside PostgresNIO. It held its node's commits until the commit watchdog gave up on it 10 s later, and
/// the clients saw no ack for 10–19 s. The connection itself had closed at once, so its close is the signal.
/// A write ended this way may have committed; every write the server retries is idempotent (a send by its client id).
final class ConnectionCloseWatch: Sendable {
    private struct State {
        var next: UInt64 = 0
        /// The operations running on each watched connection (an entry from its first operation until it closes,
        /// as long as its one close callback): their way to be ended.
        var running: [ObjectIdentifier: [UInt64: @Sendable () -> Void]] = [:]
    }
    private let state = LockedBox(State())

    /// Runs `body`, which uses `connection`; if the connection closes first, throws `closed()` at once (and cancels
    /// `body`, which may go on until its awaits notice).
    func run<T: Sendable>(on connection: PostgresConnection, closed: @escaping @Sendable () -> any Error,
                          _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let key = ObjectIdentifier(connection)
        let waiter = LockedBox<CheckedContinuation<T, any Error>?>(nil)
        let work = LockedBox<Task<Void, Never>?>(nil)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                waiter.withLock { $0 = continuation }
                let end: @Sendable () -> Void = {
                    waiter.withLock { w in defer { w = nil }; return w }?.resume(throwing: closed())
                    work.withLock { $0 }?.cancel()
                }
                let (id, first) = state.withLock { s -> (UInt64, Bool) in
                    s.next &+= 1
                    let first = s.running[key] == nil
                    s.running[key, default: [:]][s.next] = end
                    return (s.next, first)
                }
                // One callback per connection while operations run on it (not one per operation: a pooled
                // connection lives long); it ends whatever runs on it then.
                if first {
                    connection.closeFuture.whenComplete { [state] _ in
                        let ends = state.withLock { $0.running.removeValue(forKey: key) } ?? [:]
                        for end in ends.values { end() }
                    }
                }
                let task = Task {
                    let result: Result<T, any Error>
                    do { result = .success(try await body()) } catch { result = .failure(error) }
                    // The connection's entry stays (empty) until it closes: its callback is registered already.
                    self.state.withLock { s in _ = s.running[key]?.removeValue(forKey: id) }
                    waiter.withLock { w in defer { w = nil }; return w }?.resume(with: result)
                }
                work.withLock { $0 = task }
                if connection.isClosed { end() }
            }
        } onCancel: {
            work.withLock { $0 }?.cancel()
        }
    }
}
