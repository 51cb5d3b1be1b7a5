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

    /// Mixed versions: a node one release behind reads a newer node's notices that carry fields it does not know
    /// (`name=value`), as the notice it knows; a kind it does not know is ignored, not misread.
    @Test func fieldsFromANewerReleaseAreSkipped() {
        let notices: [ClusterNotice] = [
            .appended([7: 3...9, 12: 1...1]), .membersChanged([4, 9]), .blocksChanged([1, 2]),
            .sessionsEnded(user: 5, sid: "fam", reason: "the password was changed to x=y"),
            .receipt(.init(conv: 7, user: 5, kind: .read, seq: 42)), .typing(.init(conv: 7, user: 5, active: true)),
            .presence(.init(user: 5, status: .offline, lastSeen: 1_733_000_000_000)), .draft(user: 5, conv: 7),
        ]
        for n in notices {
            let payload = n.payloads(from: "node-b")[0]
            var parts = payload.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            // After the node id always; at the end too except in `s`, whose reason runs to the end.
            parts.insert("epoch=3", at: 2)
            if parts[0] != "s" { parts.append("trace_id=ab-12") }
            let newer = parts.joined(separator: " ")
            let decoded = ClusterNotice.decode(newer)
            #expect(decoded?.node == "node-b")
            #expect(decoded?.notice == n, "\(newer)")
        }
        #expect(ClusterNotice.decode("q node-b 1 2 epoch=3") == nil, "an unknown kind is ignored")
        #expect(ClusterNotice.decode("m node-b epoch=3") == nil, "nothing left but the unknown field")
        #expect(ClusterNotice.decode("r node-b 1 2 read") == nil, "a missing field is still refused")
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
