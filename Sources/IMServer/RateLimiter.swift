import Foundation
import IMCore
import IMStorage

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
            let (next, wait) = Self.step(b[key].map { RateBucket(tokens: $0.tokens, at: $0.at) }, now: now, rate: rate, burst: burst, consume: consume)
            b[key] = (next.tokens, next.at)
            return wait
        }
    }

    /// The bucket math, on a bucket kept anywhere (here, or in the database for a cluster): refill since `at`,
    /// then take a token when there is one and `consume`. Returns the new state and nil when a token was there,
    /// else the seconds until one is.
    static func step(_ bucket: RateBucket?, now: Double, rate: Double, burst: Double, consume: Bool) -> (RateBucket, Double?) {
        var b = bucket ?? RateBucket(tokens: burst, at: now)
        b.tokens = min(burst, b.tokens + max(0, now - b.at) * rate)
        b.at = now
        if b.tokens >= 1 {
            if consume { b.tokens -= 1 }
            return (b, nil)
        }
        return (b, (1 - b.tokens) / rate)
    }
}

/// Failed logins and joins: counted on this node alone, or, on a cluster, in buckets in the database every node
/// shares, so that guessing through several nodes buys no more attempts than through one.
struct FailureLimiter: Sendable {
    let limiter: RateLimiter
    /// The cluster's shared buckets; nil on a single node.
    let shared: (any Storage)?

    init(_ limiter: RateLimiter, shared: (any Storage)?) { self.limiter = limiter; self.shared = shared }

    /// The seconds `key` must wait, or nil; takes nothing.
    func wait(_ key: String, now: Double = Date().timeIntervalSince1970) async throws -> Double? {
        guard let shared else { return limiter.wait(key, now: now) }
        return RateLimiter.step(try await shared.rateBucket(key: key), now: now, rate: limiter.rate, burst: limiter.burst, consume: false).1
    }

    /// Counts one failure for `key`.
    func charge(_ key: String, now: Double = Date().timeIntervalSince1970) async throws {
        guard let shared else { return limiter.charge(key, now: now) }
        let rate = limiter.rate, burst = limiter.burst
        try await shared.updateRateBucket(key: key) { RateLimiter.step($0, now: now, rate: rate, burst: burst, consume: true).0 }
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
        tokens = min(burst, tokens + (d.inSeconds) * rate)
        at = now
        if tokens >= 1 { tokens -= 1; return nil }
        return (1 - tokens) / rate
    }
}
