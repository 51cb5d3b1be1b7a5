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
///
/// The operation runs inside the driver's `firstOf` race already; the watch only ends that race (its `RaceEnd`),
/// so it adds no task of its own.
final class ConnectionCloseWatch: Sendable {
    private struct State {
        var next: UInt64 = 0
        /// The operations running on each watched connection (an entry from its first operation until it closes,
        /// as long as its one close callback): their way to be ended.
        var running: [ObjectIdentifier: [UInt64: @Sendable () -> Void]] = [:]
    }
    private let state = LockedBox(State())

    /// Runs `body`, which uses `connection`; if the connection closes before it ends, calls `end` at once (the
    /// caller's race answers, and `body` is cancelled and may go on until its awaits notice).
    func run<T: Sendable>(on connection: PostgresConnection, end: @escaping @Sendable () -> Void,
                          _ body: () async throws -> T) async throws -> T {
        let key = ObjectIdentifier(connection)
        let (id, first) = state.withLock { s -> (UInt64, Bool) in
            s.next &+= 1
            let first = s.running[key] == nil
            s.running[key, default: [:]][s.next] = end
            return (s.next, first)
        }
        // One callback per connection while operations run on it (not one per operation: a pooled connection lives
        // long); it ends whatever runs on it then. The connection's entry stays (empty) until it closes.
        if first {
            connection.closeFuture.whenComplete { [state] _ in
                let ends = state.withLock { $0.running.removeValue(forKey: key) } ?? [:]
                for end in ends.values { end() }
            }
        }
        defer { state.withLock { s in _ = s.running[key]?.removeValue(forKey: id) } }
        if connection.isClosed { end() }
        return try await body()
    }
}
