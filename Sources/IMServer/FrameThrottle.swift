import IMCore

/// Per-connection limits on the frames that are not sends (sends have their own bucket): `typing`, `receipt`,
/// `sync` and `auth` sent again on an open socket (each costs database reads; at most 1/s, burst 5). No I/O and no clock of its own; the gateway's reader asks it about each frame.
///
/// - Each kind has a token bucket. A frame over it is answered `rate_limited` with `retryAfter`; the socket stays.
/// - Typing is coalesced: the same `active` for the same conversation within `typingRepeat` is dropped silently
///   (it tells nobody anything new).
/// - Receipts are coalesced: one that does not raise this connection's last `(conv, kind)` seq is dropped
///   silently (the stored cursor never goes down, so it would change nothing but cost a write).
/// - A connection that keeps sending over its limits (more than `strikeBurst` refused frames, refilled at
///   `strikesPerSecond`) is abusive and is closed with 1008.
struct FrameThrottle: Sendable {
    struct Limits: Sendable, Hashable {
        var typingPerSecond: Double
        var receiptsPerSecond: Double
        var syncsPerSecond: Double
        var typingRepeat: Duration = .seconds(3)
        var strikesPerSecond: Double = 5
        var strikeBurst: Double = 100
    }

    enum Kind: String, Sendable, Hashable { case typing, receipt, sync, auth }

    enum Verdict: Sendable, Hashable {
        case allow
        /// Dropped without an answer: nothing new in it.
        case coalesce
        /// Over the bucket: answer `rate_limited`, retry after this many seconds.
        case limit(retryAfter: Double)
        /// Refused too often: close the socket.
        case abusive
    }

    private struct Bucket: Sendable {
        var rate: Double
        var burst: Double
        var tokens: Double
        var at: ContinuousClock.Instant?

        init(rate: Double, burst: Double) { self.rate = rate; self.burst = burst; tokens = burst }

        mutating func take(now: ContinuousClock.Instant) -> Double? {
            if let at {
                let d = at.duration(to: now)
                let seconds = d.inSeconds
                tokens = min(burst, tokens + max(0, seconds) * rate)
            }
            at = now
            if tokens >= 1 { tokens -= 1; return nil }
            return (1 - tokens) / rate
        }
    }

    let limits: Limits
    private var buckets: [Kind: Bucket]
    private var strikes: Bucket
    private var lastTyping: [ConversationID: (active: Bool, at: ContinuousClock.Instant)] = [:]
    private var lastReceipt: [String: Int64] = [:]

    init(limits: Limits) {
        self.limits = limits
        func bucket(_ rate: Double) -> Bucket { Bucket(rate: max(rate, 0.001), burst: max(5, rate * 2)) }
        buckets = [.typing: bucket(limits.typingPerSecond), .receipt: bucket(limits.receiptsPerSecond), .sync: bucket(limits.syncsPerSecond),
                   .auth: Bucket(rate: 1, burst: 5)]
        strikes = Bucket(rate: limits.strikesPerSecond, burst: limits.strikeBurst)
    }

    mutating func typing(_ t: ClientFrame.TypingUpdate, now: ContinuousClock.Instant) -> Verdict {
        if let refused = take(.typing, now: now) { return refused }
        if let last = lastTyping[t.conv], last.active == t.active, last.at.duration(to: now) < limits.typingRepeat { return .coalesce }
        if lastTyping.count > 1000 { lastTyping.removeAll() }
        lastTyping[t.conv] = (t.active, now)
        return .allow
    }

    mutating func receipt(_ r: ClientFrame.ReceiptUpdate, now: ContinuousClock.Instant) -> Verdict {
        if let refused = take(.receipt, now: now) { return refused }
        let key = "\(r.conv):\(r.kind.rawValue)"
        if let last = lastReceipt[key], r.seq <= last { return .coalesce }
        if lastReceipt.count > 10_000 { lastReceipt.removeAll() }
        lastReceipt[key] = r.seq
        return .allow
    }

    mutating func sync(now: ContinuousClock.Instant) -> Verdict {
        take(.sync, now: now) ?? .allow
    }

    mutating func reauthentication(now: ContinuousClock.Instant) -> Verdict {
        take(.auth, now: now) ?? .allow
    }

    /// A frame refused for another reason (a second sync while one runs) counts as a strike too.
    mutating func refused(now: ContinuousClock.Instant) -> Verdict {
        strikes.take(now: now) == nil ? .limit(retryAfter: 1) : .abusive
    }

    private mutating func take(_ kind: Kind, now: ContinuousClock.Instant) -> Verdict? {
        guard let wait = buckets[kind]?.take(now: now) else { return nil }
        if strikes.take(now: now) != nil { return .abusive }
        return .limit(retryAfter: (wait * 1000).rounded(.up) / 1000)
    }
}
