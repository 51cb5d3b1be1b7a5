import IMCore

/// One connection's delivery cursors, with no I/O: the gateway's writer tells it what happened and does what it
/// answers (in the style of postgres-nio's state machines).
///
/// It keeps protocol.md's guarantee 5: after the first `sync`, every `msg` on the connection is, per conversation,
/// in strictly increasing `seq` with no duplicates and no gaps. Live messages before the first `sync` are held;
/// a live message past a gap asks for the missing ones from storage first; a later `sync` with an older cursor
/// (after `more`, or a client refresh) never repeats what this connection already delivered.
struct DeliveryStateMachine: Sendable {
    /// A read of stored messages with seq > `after`, oldest first.
    struct Fetch: Sendable, Hashable {
        var conversation: ConversationID
        var after: Int64
        var limit: Int
    }

    /// What to do with a live (just committed) message.
    enum LiveAction: Sendable, Hashable {
        /// Before the first `sync`: kept until `syncFinished` releases it.
        case hold
        /// Already delivered on this connection.
        case drop
        /// Next in order: write it.
        case write
        /// Messages are missing before it: read them, then call `gapFetched(_:before:)`.
        case fetch(Fetch)
    }

    /// What to write after a gap read, and whether to read again.
    enum GapAction: Sendable, Hashable {
        /// Write `messages` in order; then read `next`, or, when it is nil, write the live message.
        case write([Message], next: Fetch?)
        /// Storage does not have a message the live one comes after: write `messages` (what comes before the
        /// hole), then end the connection with `gap` so that the client resyncs from its cursors. Skipping the
        /// hole would break the guarantee silently; the live message is not written (the resync brings it).
        case resync([Message], gap: UnfillableGap)
    }

    /// A gap before a live message that storage could not fill: seqs after `after` and before `before`.
    struct UnfillableGap: Error, Sendable, Hashable, CustomStringConvertible {
        var conversation: ConversationID
        var after: Int64
        var before: Int64
        var description: String {
            "conversation \(conversation): storage has no message after seq \(after), but seq \(before) was delivered"
        }
    }

    /// A held live message and when its send arrived (for the send-to-deliver metric).
    struct Held: Sendable {
        var message: Message
        var arrival: ContinuousClock.Instant?
    }

    /// Gap reads go in pieces of at most this many messages.
    static let gapReadLimit = 500

    private(set) var cursors: [ConversationID: Int64] = [:]
    private(set) var synced = false
    private var held: [Held] = []
    private var sync: SyncInProgress?

    private struct SyncInProgress {
        var limit: Int
        var more: [ConversationID] = []
    }

    init() {}

    // MARK: Live messages

    mutating func liveMessage(_ m: Message, arrival: ContinuousClock.Instant? = nil) -> LiveAction {
        guard synced else {
            held.append(Held(message: m, arrival: arrival))
            return .hold
        }
        // A conversation joined after the sync starts at its first live message.
        let cursor = cursors[m.conversation] ?? (m.seq - 1)
        if m.seq <= cursor { return .drop }
        if m.seq == cursor + 1 {
            cursors[m.conversation] = m.seq
            return .write
        }
        cursors[m.conversation] = cursor
        return .fetch(Self.gapFetch(m.conversation, after: cursor, before: m.seq))
    }

    /// The stored messages read for a gap before the live message `m`. Seqs are dense, so what is read is taken
    /// only while it follows on: a read that brings nothing that follows on is a hole storage cannot fill.
    mutating func gapFetched(_ batch: [Message], before m: Message) -> GapAction {
        let cursor = cursors[m.conversation] ?? (m.seq - 1)
        var write: [Message] = []
        var at = cursor
        for f in batch where f.conversation == m.conversation && f.seq > at && f.seq < m.seq {
            guard f.seq == at + 1 else { break }
            write.append(f)
            at = f.seq
        }
        cursors[m.conversation] = at
        if at + 1 == m.seq {
            write.append(m)
            cursors[m.conversation] = m.seq
            return .write(write, next: nil)
        }
        if m.seq <= at { return .write(write, next: nil) }
        // Progress: read on from there. None: the hole is storage's, and reading again would not fill it.
        if !write.isEmpty { return .write(write, next: Self.gapFetch(m.conversation, after: at, before: m.seq)) }
        return .resync(write, gap: UnfillableGap(conversation: m.conversation, after: at, before: m.seq))
    }

    private static func gapFetch(_ conv: ConversationID, after: Int64, before: Int64) -> Fetch {
        Fetch(conversation: conv, after: after, limit: Int(min(Int64(gapReadLimit), max(1, before - after - 1))))
    }

    // MARK: Sync

    /// A `sync` request for the user's `conversations`: the reads to make, one per conversation, in order.
    /// Each starts after the later of the client's cursor and what this connection already delivered.
    mutating func syncStarted(_ request: ClientFrame.Sync, conversations: [ConversationID]) -> [Fetch] {
        let limit = max(1, min(request.limit ?? 500, 1000))
        sync = SyncInProgress(limit: limit)
        return conversations.map { conv in
            let asked = max(request.cursors[String(conv)] ?? 0, 0)
            return Fetch(conversation: conv, after: max(asked, cursors[conv] ?? 0), limit: limit + 1)
        }
    }

    /// The result of one of `syncStarted`'s reads: the messages to write, in order.
    mutating func syncFetched(_ batch: [Message], for fetch: Fetch) -> [Message] {
        let limit = sync?.limit ?? max(1, fetch.limit - 1)
        var at = max(cursors[fetch.conversation] ?? 0, fetch.after)
        var write: [Message] = []
        for m in batch.prefix(limit) where m.conversation == fetch.conversation && m.seq > at {
            write.append(m)
            at = m.seq
        }
        cursors[fetch.conversation] = at
        if batch.count > limit { sync?.more.append(fetch.conversation) }
        return write
    }

    /// Ends a sync: the `synced` frame to write, then the held live messages to pass through `liveMessage` again.
    mutating func syncFinished() -> (synced: ServerFrame.Synced, released: [Held]) {
        let more = sync?.more ?? []
        sync = nil
        let frame = ServerFrame.Synced(cursors: Dictionary(uniqueKeysWithValues: cursors.map { (String($0.key), $0.value) }), more: more)
        guard !synced else { return (frame, []) }
        synced = true
        let released = held
        held = []
        return (frame, released)
    }

    /// How many live messages wait for the first sync.
    var heldCount: Int { held.count }
}
