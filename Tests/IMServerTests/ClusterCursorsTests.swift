import IMCore
@testable import IMServer
import Testing

/// The cluster's cursors, with no database: which reads a doorbell, a catch-up pass or a sync asks for.
@Suite struct ClusterCursorsTests {
    typealias Fetch = ClusterCursors.Fetch

    @Test func aDoorbellForAnUnfollowedConversationReadsTheWholeBatch() {
        var c = ClusterCursors()
        #expect(c.doorbell([7: 4...6]) == [Fetch(conversation: 7, after: 3, through: 6)])
        c.fetched(7, upTo: 6)
        // Never past the doorbell's last seq: what follows may need a membership notice first.
        #expect(c.doorbell([7: 7...8]) == [Fetch(conversation: 7, after: 6, through: 8)])
        #expect(c.doorbell([7: 5...6]) == [], "already read")
    }

    @Test func aCatchUpPassReadsWhatNoDoorbellBrought() {
        var c = ClusterCursors()
        // First sight is a baseline, not a cursor: a doorbell for what came before may still be on its way.
        #expect(c.caughtUp([7: 10]) == [])
        #expect(c.doorbell([7: 9...10]) == [Fetch(conversation: 7, after: 8, through: 10)])
        var d = ClusterCursors()
        _ = d.caughtUp([7: 10])
        // 11 and 12 are new since the last pass: their doorbell gets a pass's time to come first.
        #expect(d.caughtUp([7: 12]) == [])
        #expect(d.caughtUp([7: 13]) == [Fetch(conversation: 7, after: 10, through: 12)])
        d.fetched(7, upTo: 12)
        #expect(d.caughtUp([7: 13]) == [Fetch(conversation: 7, after: 12, through: 13)])
        d.fetched(7, upTo: 13)
        #expect(d.caughtUp([7: 13]) == [])
        // After a reconnect nothing waits.
        #expect(d.caughtUp([7: 15], waitForDoorbells: false) == [Fetch(conversation: 7, after: 13, through: 15)])
        // Conversations with nobody here any more are forgotten.
        #expect(d.caughtUp([:]) == [])
        #expect(d.known.isEmpty && d.baseline.isEmpty)
    }

    @Test func localCommitsMoveOnlyFollowedCursors() {
        var c = ClusterCursors()
        c.delivered([7: 1...3])
        #expect(c.known[7] == nil)
        c.fetched(7, upTo: 3)
        c.delivered([7: 4...5])
        _ = c.caughtUp([7: 5])
        #expect(c.caughtUp([7: 5]) == [], "4 and 5 were handed over here already")
    }

    @Test func aSyncedSessionIsNeverLeftBehindACursor() {
        var c = ClusterCursors()
        // First seen at 10 while a session's sync had read only up to 8: 9 and 10 are read for it.
        _ = c.caughtUp([7: 10])
        c.synced([7: 8], more: [])
        #expect(c.caughtUp([7: 10]) == [Fetch(conversation: 7, after: 8, through: 10)])
        c.fetched(7, upTo: 10)
        c.synced([7: 9], more: [])
        #expect(c.caughtUp([7: 10]) == [Fetch(conversation: 7, after: 9, through: 10)])
        // A paged sync's client reads the rest itself.
        c.fetched(7, upTo: 10)
        c.synced([7: 2], more: [7])
        #expect(c.caughtUp([7: 10]) == [])
    }
}
