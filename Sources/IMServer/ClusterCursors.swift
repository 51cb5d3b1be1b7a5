import IMCore

/// What this node has handed to its hub, per conversation, and the reads that bring it level with the database:
/// no I/O (the cluster service does the reads it answers, then reports what it delivered).
///
/// Only conversations with members connected here are followed; the catch-up pass lists them and the rest are
/// forgotten. A conversation seen for the first time is not trusted at once: a doorbell for messages committed
/// just before this node first read its `last_seq` may still be on its way, so that first `last_seq` is a
/// baseline that only the next pass makes a cursor. A session that finishes a sync reports where it stands, and
/// no cursor stays above that: what was committed after its sync's read is always read again for it.
struct ClusterCursors: Sendable {
    /// Read the messages of `conversation` with seq > `after` (up to `through`, when set) and hand them to the hub.
    struct Fetch: Sendable, Hashable {
        var conversation: ConversationID
        var after: Int64
        var through: Int64?
    }

    private(set) var known: [ConversationID: Int64] = [:]
    private(set) var baseline: [ConversationID: Int64] = [:]
    /// `last_seq` at the previous pass: what a pass reads must have been committed that long, so its doorbell,
    /// and any membership notice queued before it, had time to arrive first.
    private(set) var settled: [ConversationID: Int64] = [:]

    init() {}

    /// Messages handed to the hub (read for a doorbell or a catch-up, or committed on this node).
    mutating func delivered(_ ranges: [ConversationID: ClosedRange<Int64>]) {
        for (c, r) in ranges {
            // A conversation not followed yet gets its cursor from a catch-up pass or a doorbell, never from a
            // local commit alone: an earlier message from another node may not have been read yet.
            if let k = known[c] { known[c] = max(k, r.upperBound) }
        }
    }

    mutating func fetched(_ conversation: ConversationID, upTo seq: Int64) {
        known[conversation] = max(known[conversation] ?? seq, seq)
        baseline[conversation] = nil
    }

    /// A session here finished a sync and stands at `cursors` (conversations in `more` still have pages to read,
    /// which the client asks for itself).
    mutating func synced(_ cursors: [ConversationID: Int64], more: Set<ConversationID>) {
        for (c, at) in cursors where !more.contains(c) {
            if let k = known[c] {
                // Messages above `at` were held for the session or will be read again; sessions drop repeats.
                if at < k { known[c] = at }
            } else {
                baseline[c] = min(baseline[c] ?? at, at)
            }
        }
    }

    /// Another node's doorbell, for the conversations that have members here: the reads to make. They stop at
    /// the doorbell's last seq: a later message may follow a membership change whose notice comes before its own
    /// doorbell, and must not be fanned out with the members as they were.
    mutating func doorbell(_ ranges: [ConversationID: ClosedRange<Int64>]) -> [Fetch] {
        var out: [Fetch] = []
        for c in ranges.keys.sorted() {
            let r = ranges[c]!
            if let k = known[c] {
                if r.upperBound > k { out.append(Fetch(conversation: c, after: k, through: r.upperBound)) }
            } else {
                // Not followed yet: read the whole batch (sessions drop what they already have).
                out.append(Fetch(conversation: c, after: r.lowerBound - 1, through: r.upperBound))
            }
        }
        return out
    }

    /// A catch-up pass: the database's `last_seq` of every conversation with members connected here. Returns
    /// the reads for what no doorbell brought, up to where the previous pass stood (everything, when
    /// `waitForDoorbells` is false: after a reconnect, when the caches are fresh and notices were lost anyway).
    /// Conversations not listed are forgotten.
    mutating func caughtUp(_ lastSeqs: [ConversationID: Int64], waitForDoorbells: Bool = true) -> [Fetch] {
        var out: [Fetch] = []
        var nextKnown: [ConversationID: Int64] = [:]
        var nextBaseline: [ConversationID: Int64] = [:]
        for c in lastSeqs.keys.sorted() {
            let last = lastSeqs[c]!
            if let k = known[c] ?? baseline[c] {
                nextKnown[c] = k
                let through = waitForDoorbells ? min(last, settled[c] ?? 0) : last
                if through > k { out.append(Fetch(conversation: c, after: k, through: through)) }
            } else {
                nextBaseline[c] = last
            }
        }
        known = nextKnown
        baseline = nextBaseline
        settled = lastSeqs
        return out
    }
}
