import Foundation

/// Token buckets by key: `rate` tokens per second up to `burst`.
public final class RateLimiter: Sendable {
    let rate: Double
    let burst: Double
    private let buckets = LockedBox<[String: (tokens: Double, at: Double)]>([:])

    public init(perMinute: Int, burst: Int? = nil) {
        self.rate = Double(perMinute) / 60
        self.burst = Double(burst ?? perMinute)
    }

    /// Takes a token for `key`; returns nil when allowed, or the seconds to wait.
    public func take(_ key: String, now: Double = Date().timeIntervalSince1970) -> Double? {
        buckets.withLock { b in
            if b.count > 100_000 { b = b.filter { now - $0.value.at < 600 } }
            var entry = b[key] ?? (burst, now)
            entry.tokens = min(burst, entry.tokens + (now - entry.at) * rate)
            entry.at = now
            if entry.tokens >= 1 {
                entry.tokens -= 1
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
