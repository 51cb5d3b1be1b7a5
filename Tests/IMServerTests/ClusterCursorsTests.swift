import IMCore
@testable import IMServer
import Testing

/// The cluster's cursors, with no database: which reads a doorbell, a catch-up pass or a sync asks for.
@Suite struct ClusterCursorsTests {
    typealias Fetch = ClusterCursors.Fetch

    @Test func aDoorbellForAnUnfollowedConversationReadsTheWholeBatch() {
        var c = ClusterCursors()
        #expect(c.doorbell([7: 4...6]) == [Fetch(conversation: 7, after: 3)])
        c.fetched(7, upTo: 6)
        #expect(c.doorbell([7: 7...8]) == [Fetch(conversation: 7, after: 6)])
        #expect(c.doorbell([7: 5...6]) == [], "already read")
    }

    @Test func aCatchUpPassReadsWhatNoDoorbellBrought() {
        var c = ClusterCursors()
        // First sight is a baseline, not a cursor: a doorbell for what came before may still be on its way.
        #expect(c.caughtUp([7: 10]) == [])
        #expect(c.doorbell([7: 9...10]) == [Fetch(conversation: 7, after: 8)])
        var d = ClusterCursors()
        _ = d.caughtUp([7: 10])
        #expect(d.caughtUp([7: 12]) == [Fetch(conversation: 7, after: 10)])
        d.fetched(7, upTo: 12)
        #expect(d.caughtUp([7: 12]) == [])
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
        #expect(c.caughtUp([7: 5]) == [])
    }

    @Test func aSyncedSessionIsNeverLeftBehindACursor() {
        var c = ClusterCursors()
        // First seen at 10 while a session's sync had read only up to 8: 9 and 10 are read for it.
        _ = c.caughtUp([7: 10])
        c.synced([7: 8], more: [])
        #expect(c.caughtUp([7: 10]) == [Fetch(conversation: 7, after: 8)])
        c.fetched(7, upTo: 10)
        c.synced([7: 9], more: [])
        #expect(c.caughtUp([7: 10]) == [Fetch(conversation: 7, after: 9)])
        // A paged sync's client reads the rest itself.
        c.fetched(7, upTo: 10)
        c.synced([7: 2], more: [7])
        #expect(c.caughtUp([7: 10]) == [])
    }
}
