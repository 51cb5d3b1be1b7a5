import IMCore
@testable import IMServer
import Testing

/// The cluster's notices as text: what goes in comes out, nothing crosses PostgreSQL's payload limit, and
/// doorbells queued together go out as one.
@Suite struct ClusterNoticeTests {
    @Test func everyNoticeReadsBackAsSent() {
        let notices: [ClusterNotice] = [
            .appended([7: 3...9, 12: 1...1]),
            .membersChanged([4, 9]),
            .blocksChanged([1, 2]),
            .sessionsEnded(user: 5, sid: "fam_ily-1", reason: "the password was changed"),
            .sessionsEnded(user: 6, sid: nil, reason: "the account was disabled"),
            .receipt(.init(conv: 7, user: 5, kind: .read, seq: 42)),
            .receipt(.init(conv: 7, user: 5, kind: .delivered, seq: 0)),
            .typing(.init(conv: 7, user: 5, active: true)),
            .typing(.init(conv: 7, user: 5, active: false)),
            .presence(.init(user: 5, status: .online, lastSeen: nil)),
            .presence(.init(user: 5, status: .offline, lastSeen: 1_733_000_000_000)),
        ]
        for n in notices {
            let payloads = n.payloads(from: "node-a")
            #expect(payloads.count == 1)
            let decoded = ClusterNotice.decode(payloads[0])
            #expect(decoded?.node == "node-a")
            #expect(decoded?.notice == n, "\(payloads[0])")
        }
    }

    @Test func aLargeDoorbellIsSplitUnderThePayloadLimitAndLosesNothing() {
        var ranges: [ConversationID: ClosedRange<Int64>] = [:]
        for c in 1...5_000 { ranges[Int64(c) * 1_000_003] = Int64(c)...(Int64(c) + 9_000_000_000) }
        let payloads = ClusterNotice.appended(ranges).payloads(from: "node-a")
        #expect(payloads.count > 1)
        #expect(payloads.allSatisfy { $0.utf8.count < 8000 })
        var back: [ConversationID: ClosedRange<Int64>] = [:]
        for p in payloads {
            guard case .appended(let r)? = ClusterNotice.decode(p)?.notice else { Issue.record("unreadable: \(p.prefix(40))"); return }
            back.merge(r) { a, _ in a }
        }
        #expect(back == ranges)
    }

    @Test func malformedPayloadsAreRefused() {
        for p in ["", "a", "a node", "x node 1", "a node 1:2", "a node 1:5-2", "a bad/node 1:1-2", "m node x", "s node",
                  "r node 1 2 seen 3", "r node 1 2 read", "r node 1 2 read -1", "t node 1 2 yes", "t node 1",
                  "p node 2 away", "p node 2 offline soon", "p node x online"] {
            #expect(ClusterNotice.decode(p) == nil, "\(p)")
        }
    }

    @Test func neighbouringDoorbellsMergeAndOtherNoticesKeepTheirPlace() {
        let merged = ClusterNotice.coalesce([
            .appended([1: 1...2]), .appended([1: 3...4, 2: 1...1]),
            .membersChanged([1]),
            .appended([2: 2...2]),
        ])
        #expect(merged == [.appended([1: 1...4, 2: 1...1]), .membersChanged([1]), .appended([2: 2...2])])
    }
}
