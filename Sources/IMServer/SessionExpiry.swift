import IMCore
import ServiceLifecycle

/// Ends every socket whose access token has expired (unless a fresh one was sent on it: `auth` again), with
/// `CloseCode.tokenExpired`. One sweep over the hub's sessions for the whole server, instead of a sleeping task
/// per connection: a task costs an idle socket several kilobytes (docs/benchmarks.md).
struct SessionExpiryService: Service {
    let hub: Hub
    var period: Duration = .milliseconds(250)

    func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try? await Task.sleep(for: period)
                for session in hub.expiredSessions(nowMillis: nowMillis()) {
                    session.end(CloseCode.tokenExpired, reason: "access token expired",
                                error: IMError(.unauthorized, "the access token expired; send auth with a fresh one before it does, or refresh and reconnect"))
                }
            }
        }
    }
}
