import IMCore
import Foundation

/// When each of `count` sessions is told to reconnect within `window`: one close per slot of `window / count`, at a
/// random point inside its slot, so the closes are spread evenly (no two slots' worth at once) and yet not in
/// lockstep. Pure apart from the random source.
public enum ReconnectSchedule {
    /// The longest window a caller may ask for: the sessions must be gone well within an upgrade's wait.
    public static let maxWindow: Duration = .seconds(300)

    public static func offsets(count: Int, window: Duration, using random: inout some RandomNumberGenerator) -> [Duration] {
        guard count > 0 else { return [] }
        let total = window.inSeconds
        guard total > 0 else { return Array(repeating: .zero, count: count) }
        let slot = total / Double(count)
        return (0..<count).map { i in
            .nanoseconds(Int64((Double(i) * slot + Double.random(in: 0..<slot, using: &random)) * 1e9))
        }
    }
}

extension Hub {
    /// Tells every client connected now to reconnect (`reconnect`, then close 1001), spread over `window` in a
    /// shuffled order, without refusing new sessions or failing `/readyz`: the node keeps serving whoever the load
    /// balancer still sends. Returns how many sessions it will close.
    func reconnectAll(over window: Duration, reason: String) -> Int {
        let all = allSessions.shuffled()
        var random = SystemRandomNumberGenerator()
        let offsets = ReconnectSchedule.offsets(count: all.count, window: window, using: &random)
        logger.notice("telling \(all.count) clients to reconnect over \(window)")
        guard !all.isEmpty else { return 0 }
        let start = ContinuousClock.now
        Task {
            for (session, offset) in zip(all, offsets) {
                try? await Task.sleep(until: start + offset, clock: .continuous)
                guard !session.isClosing else { continue }
                session.enqueue(.frame(.reconnect(.init(reason: reason))))
                session.enqueue(.close(reason: reason))
            }
        }
        return all.count
    }
}
