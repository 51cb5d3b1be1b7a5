import Foundation
import IMCore
import IMStorage
import Testing

/// A pooled PostgreSQL connection that closes under a read or write ends that operation at once (`unavailable`,
/// retryable), instead of leaving it to wait for a reply that never comes (seen after a Patroni switchover).
@Suite("PostgreSQL: a connection closing under an operation")
struct ConnectionCloseTests {
    @Test func aWriteWhoseConnectionIsTerminatedEndsUnavailableWithoutWaitingForItsBody() async throws {
        try await Backend.postgres.withDriver { driver in
            let (release, releaser) = AsyncStream<Void>.makeStream()
            let (started, starter) = AsyncStream<Int64>.makeStream()
            let write = Task {
                try await driver.write { db -> String in
                    let pid = try await db.first("SELECT pg_backend_pid() AS pid")?.int("pid") ?? 0
                    starter.yield(pid)
                    // Held until the test lets go: only the connection's close can end this write before that.
                    for await _ in release {}
                    return "the body ran to its end"
                }
            }
            var first: Int64 = 0
            for await p in started { first = p; break }
            let pid = first
            #expect(pid > 0)
            // As a demoted primary does: its backends are terminated (FATAL 57P01) and their sockets closed.
            _ = try await driver.read { db in try await db.query("SELECT pg_terminate_backend($1::int)", [.int(pid)]) }
            // Generous: only a write that never ends fails here.
            let outcome = await firstOf(seconds: 60) { try await write.value }
            releaser.finish()
            switch outcome {
            case .failure(let error)?:
                #expect("\(error)".contains("closed during a write"), "\(error)")
            case .success(let body)?:
                Issue.record("the write succeeded (\(body)) although its connection was terminated")
            case nil:
                Issue.record("the write did not end in 60 s although its connection was terminated")
            }
            // The pool replaces the connection: the next write works.
            let n = try await driver.write { db in try await db.first("SELECT 1 AS one")?.int("one") }
            #expect(n == 1)
        }
    }
}
