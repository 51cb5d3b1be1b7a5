import IMCore
@testable import IMServer
import Testing

/// The delivery cursor machine with plain values: no server, no storage, no clock.
@Suite struct DeliveryStateMachineTests {
    func m(_ seq: Int64, conv: ConversationID = 1) -> Message {
        Message(conversation: conv, seq: seq, sender: 9, cid: "c\(conv)-\(seq)", kind: .text, text: "m\(seq)", ts: seq)
    }

    /// Runs a sync over `stored` (per conversation, oldest first) as the writer does; the seqs written.
    func sync(_ machine: inout DeliveryStateMachine, cursors: [ConversationID: Int64], limit: Int? = nil,
              stored: [ConversationID: [Message]]) -> (written: [Int64], synced: ServerFrame.Synced, released: [DeliveryStateMachine.Held]) {
        var written: [Int64] = []
        for fetch in machine.syncStarted(.init(cursors: cursors, limit: limit), conversations: stored.keys.sorted()) {
            let batch = (stored[fetch.conversation] ?? []).filter { $0.seq > fetch.after }.prefix(fetch.limit)
            written += machine.syncFetched(Array(batch), for: fetch).map(\.seq)
        }
        let (synced, released) = machine.syncFinished()
        return (written, synced, released)
    }

    @Test func aSecondSyncWithAnOlderCursorRepeatsNothing() {
        var machine = DeliveryStateMachine()
        let stored: [ConversationID: [Message]] = [1: (1...7).map { m($0) }]
        let first = sync(&machine, cursors: [1: 0], limit: 6, stored: stored)
        #expect(first.written == [1, 2, 3, 4, 5, 6])
        #expect(first.synced.more == [1])
        // As a client does after `more`, or on a refresh while live messages arrive: an older cursor.
        let second = sync(&machine, cursors: [1: 2], stored: stored)
        #expect(second.written == [7])
        #expect(second.synced.cursors == ["1": 7])
        #expect(second.synced.more == [])
    }

    @Test func liveMessagesBeforeTheFirstSyncAreHeldThenDeliveredOnce() {
        var machine = DeliveryStateMachine()
        #expect(machine.liveMessage(m(3)) == .hold)
        #expect(machine.liveMessage(m(4)) == .hold)
        let stored: [ConversationID: [Message]] = [1: (1...3).map { m($0) }]
        let result = sync(&machine, cursors: [:], stored: stored)
        #expect(result.written == [1, 2, 3])
        #expect(result.released.map(\.message.seq) == [3, 4])
        #expect(machine.liveMessage(result.released[0].message) == .drop)
        #expect(machine.liveMessage(result.released[1].message) == .write)
        #expect(machine.liveMessage(m(4)) == .drop)
        #expect(machine.liveMessage(m(5)) == .write)
    }

    @Test func aGapIsFilledFromStorageBeforeTheLiveMessage() {
        var machine = DeliveryStateMachine()
        _ = sync(&machine, cursors: [1: 2], stored: [1: []])
        guard case .fetch(let fetch) = machine.liveMessage(m(6)) else { Issue.record("expected a fetch"); return }
        #expect(fetch == .init(conversation: 1, after: 2, limit: 3))
        #expect(machine.gapFetched([m(3), m(4), m(5)], before: m(6)) == .write([m(3), m(4), m(5), m(6)], next: nil))
        #expect(machine.cursors[1] == 6)
        #expect(machine.liveMessage(m(5)) == .drop)
    }

    @Test func aLongGapIsReadInPieces() {
        var machine = DeliveryStateMachine()
        _ = sync(&machine, cursors: [1: 0], stored: [1: []])
        let live = m(1200)
        guard case .fetch(let first) = machine.liveMessage(live) else { Issue.record("expected a fetch"); return }
        #expect(first.limit == DeliveryStateMachine.gapReadLimit)
        let piece = (1...500).map { m($0) }
        guard case .write(let written, let next?) = machine.gapFetched(piece, before: live) else { Issue.record("expected another read"); return }
        #expect(written.map(\.seq) == Array(1...500))
        #expect(next.after == 500)
    }

    /// A gap storage cannot fill is an error that makes the client resync, never a silent skip.
    @Test func storageWithoutTheMissingOnesAsksForAResync() {
        var machine = DeliveryStateMachine()
        _ = sync(&machine, cursors: [1: 2], stored: [1: []])
        _ = machine.liveMessage(m(5))
        #expect(machine.gapFetched([], before: m(5)) == .resync([], gap: .init(conversation: 1, after: 2, before: 5)))
        #expect(machine.cursors[1] == 2, "the cursor stays before the hole")
    }

    @Test func aHoleInsideAGapReadWritesWhatComesBeforeItThenAsksForAResync() {
        var machine = DeliveryStateMachine()
        _ = sync(&machine, cursors: [1: 2], stored: [1: []])
        _ = machine.liveMessage(m(8))
        // 3 and 4 follow on; 5 is missing, so 6 and 7 must not go out.
        guard case .write(let written, let next?) = machine.gapFetched([m(3), m(4), m(6), m(7)], before: m(8)) else {
            Issue.record("expected the part before the hole and another read"); return
        }
        #expect(written.map(\.seq) == [3, 4])
        #expect(next.after == 4)
        #expect(machine.gapFetched([m(6), m(7)], before: m(8)) == .resync([], gap: .init(conversation: 1, after: 4, before: 8)))
        #expect(machine.cursors[1] == 4)
    }

    @Test func aConversationJoinedAfterTheSyncStartsAtItsFirstLiveMessage() {
        var machine = DeliveryStateMachine()
        _ = sync(&machine, cursors: [:], stored: [1: []])
        #expect(machine.liveMessage(m(40, conv: 2)) == .write)
        #expect(machine.liveMessage(m(40, conv: 2)) == .drop)
        #expect(machine.liveMessage(m(41, conv: 2)) == .write)
    }

    @Test func syncLimitsAreClampedAndNegativeCursorsReadAsZero() {
        var machine = DeliveryStateMachine()
        let fetches = machine.syncStarted(.init(cursors: [1: -5], limit: 100_000), conversations: [1])
        #expect(fetches == [.init(conversation: 1, after: 0, limit: 1001)])
        var other = DeliveryStateMachine()
        #expect(other.syncStarted(.init(cursors: [:], limit: 0), conversations: [1]).first?.limit == 2)
    }
}
