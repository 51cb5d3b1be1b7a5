import Foundation
import IMCore

/// Token buckets by key: `rate` tokens per second up to `burst`.
public final class RateLimiter: Sendable {
    let rate: Double
    let burst: Double
    private let buckets = LockedBox<[String: (tokens: Double, at: Double)]>([:])

    /// `perMinute` tokens a minute, all of them available at once (a rate below one is taken as one: a zero rate
    /// would never refill).
    public init(perMinute: Int, burst: Int? = nil) {
        self.rate = Double(max(1, perMinute)) / 60
        self.burst = Double(max(1, burst ?? perMinute))
    }

    /// `perHour` tokens an hour, all of them available at once.
    public init(perHour: Int) {
        self.rate = Double(max(1, perHour)) / 3600
        self.burst = Double(max(1, perHour))
    }

    /// Takes a token for `key`; returns nil when allowed, or the seconds to wait.
    public func take(_ key: String, now: Double = Date().timeIntervalSince1970) -> Double? {
        update(key, now: now, consume: true)
    }

    /// The seconds `key` must wait before its next token, or nil when one is there; takes nothing. With
    /// `charge(_:)` this counts only some events (failed logins) while checking before every one.
    public func wait(_ key: String, now: Double = Date().timeIntervalSince1970) -> Double? {
        update(key, now: now, consume: false)
    }

    /// Takes a token for `key` if there is one (an event to count after the fact).
    public func charge(_ key: String, now: Double = Date().timeIntervalSince1970) {
        _ = update(key, now: now, consume: true)
    }

    private func update(_ key: String, now: Double, consume: Bool) -> Double? {
        buckets.withLock { b in
            if b.count > 100_000 { b = b.filter { now - $0.value.at < 600 } }
            var entry = b[key] ?? (burst, now)
            entry.tokens = min(burst, entry.tokens + (now - entry.at) * rate)
            entry.at = now
            if entry.tokens >= 1 {
                if consume { entry.tokens -= 1 }
                b[key] = entry
                return nil
            }
            b[key] = entry
            return (1 - entry.tokens) / rate
        }
    }
}

/// A single-owner token bucket (per WebSocket connection; no locking needed).
struct TokenBucket {
    let rate: Double
    let burst: Double
    var tokens: Double
    var at: ContinuousClock.Instant

    init(rate: Double, burst: Double) {
        self.rate = rate; self.burst = burst; self.tokens = burst; self.at = .now
    }

    mutating func take() -> Double? {
        let now = ContinuousClock.now
        let d = at.duration(to: now)
        tokens = min(burst, tokens + (Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18) * rate)
        at = now
        if tokens >= 1 { tokens -= 1; return nil }
        return (1 - tokens) / rate
    }
}
