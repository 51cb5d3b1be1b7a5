import IMCore
import IMStorage
import Logging
import PostgresNIO

extension PostgresDriver {
    /// The `application_name` of the listening connection.
    public static let listenerApplicationName = "warbler-cluster-listener"

    /// Listens on `channel` over a connection of its own (LISTEN needs one session for as long as it listens,
    /// which a pooled connection is not): calls `listening` once the LISTEN is in place, then `received` with
    /// each payload, in order. Returns or throws when the connection ends; the caller reconnects.
    public func listen(channel: String, probeEvery: Duration = .seconds(5), listening: @escaping @Sendable () async -> Void,
                       received: @escaping @Sendable (String) async -> Void) async throws {
        let connection: PostgresConnection
        do {
            var configuration = connectionConfiguration
            // Named, so that an operator (or a test) can tell it apart in pg_stat_activity.
            configuration.options.additionalStartupParameters.append(("application_name", Self.listenerApplicationName))
            connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        } catch {
            throw StorageError.unavailable("cannot open a listening connection to PostgreSQL at \(endpoint): \(scrub(Self.describe(error), secret))")
        }
        do {
            let logger = self.logger
            try await connection.listen(on: channel) { notifications in
                await listening()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for try await n in notifications { await received(n.payload) }
                    }
                    // A connection that died quietly would leave the loop above waiting forever: a statement on it
                    // every few seconds fails instead, and ends the listening; so does one that gets no answer
                    // within the probe period (an await inside PostgresNIO was seen never to resume after a
                    // failover).
                    group.addTask {
                        let seconds = probeEvery.inSeconds
                        while true {
                            try await Task.sleep(for: probeEvery)
                            switch await firstOf(seconds: seconds, { _ = try await connection.query("SELECT 1", logger: logger).collect() }) {
                            case .success?: continue
                            case .failure(let error)?: throw error
                            case nil: throw StorageError.unavailable("no answer to a probe within \(probeEvery)")
                            }
                        }
                    }
                    _ = try await group.next()
                    group.cancelAll()
                }
            }
        } catch {
            try? await connection.close()
            if error is CancellationError { throw error }
            throw StorageError.unavailable("the listening connection to PostgreSQL at \(endpoint) ended: \(scrub(Self.describe(error), secret))")
        }
        try? await connection.close()
    }

    /// Sends `payload` on `channel` in a statement of its own (outside any transaction: it is delivered at once).
    public func notify(channel: String, payload: String) async throws {
        _ = try await read { db in try await db.query("SELECT pg_notify($1, $2) AS sent", [.text(channel), .text(payload)]) }
    }
}
