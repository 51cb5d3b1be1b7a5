import Foundation
import IMCore
import IMStorage
import Testing

@Suite("Storage contract: compliance")
struct ComplianceContractTests {
    @Test(arguments: Backend.allCases)
    func complianceSearchReachesEveryConversationWhileAUsersSearchDoesNot(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let bc = try await store.directConversation(between: b.id, and: c.id)
            _ = try await store.send(ab.id, from: a.id, "季度预算 in ab")
            _ = try await store.send(bc.id, from: c.id, "季度预算 in bc")
            let recalled = try await store.send(bc.id, from: b.id, "预算 recalled").message
            _ = try await store.send(bc.id, from: b.id, "", kind: .recall, target: recalled.seq)

            #expect(try await store.search(MessageSearch(user: a.id, terms: ["预算"], limit: 50)).map(\.text) == ["季度预算 in ab"])
            let all = try await store.search(MessageSearch(user: nil, terms: ["预算"], limit: 50))
            #expect(all.map(\.text) == ["季度预算 in bc", "季度预算 in ab"])
            #expect(try await store.search(MessageSearch(user: nil, terms: ["预算"], sender: c.id, limit: 50)).map(\.text) == ["季度预算 in bc"])
            #expect(try await store.search(MessageSearch(user: nil, terms: ["预算"], conversation: ab.id, limit: 50)).map(\.conversation) == [ab.id])
        }
    }

    @Test(arguments: Backend.allCases)
    func complianceMessagesReadARangeBySenderInPagesWithRecallsMarked(_ backend: Backend) async throws {
        try await backend.withStore { store, driver in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let g = try await store.createGroup(name: "g", owner: b.id, members: [a.id])
            let other = try await store.createGroup(name: "quiet", owner: b.id, members: [])
            for i in 1...9 { _ = try await store.send(ab.id, from: i % 3 == 0 ? b.id : a.id, "m\(i)") }
            _ = try await store.send(g.id, from: a.id, "in group")
            _ = try await store.send(other.id, from: b.id, "bob alone")
            _ = try await store.send(ab.id, from: a.id, "", kind: .recall, target: 2)
            // Message seq n of each conversation was sent at n seconds.
            try await driver.write { db in
                try await db.query("UPDATE messages SET ts = seq * 1000")
                return ()
            }

            // A conversation's range [2 s, 8 s): seqs 2...7, oldest first, the recalled one marked and emptied.
            let range = try await store.complianceMessages(conversation: ab.id, sender: nil, from: 2_000, to: 8_000, afterSeq: 0, limit: 100)
            #expect(range.map(\.seq) == [2, 3, 4, 5, 6, 7])
            #expect(range[0].recalled == true && range[0].text == nil)
            #expect(range[1].text == "m3")
            // Paged by seq.
            let first = try await store.complianceMessages(conversation: ab.id, sender: nil, from: 0, to: 100_000, afterSeq: 0, limit: 4)
            let second = try await store.complianceMessages(conversation: ab.id, sender: nil, from: 0, to: 100_000, afterSeq: first.last!.seq, limit: 100)
            #expect((first + second).map(\.seq) == Array(1...10))
            // One sender's messages only.
            let bobs = try await store.complianceMessages(conversation: ab.id, sender: b.id, from: 0, to: 100_000, afterSeq: 0, limit: 100)
            #expect(bobs.map(\.text) == ["m3", "m6", "m9"])

            // The conversations a user sent in, within the range.
            #expect(try await store.complianceConversations(sender: a.id, from: 0, to: 100_000) == [ab.id, g.id].sorted())
            #expect(try await store.complianceConversations(sender: b.id, from: 0, to: 100_000) == [ab.id, other.id].sorted())
            #expect(try await store.complianceConversations(sender: b.id, from: 0, to: 2_000) == [other.id])
            #expect(try await store.complianceConversations(sender: a.id, from: 50_000, to: 60_000) == [])
        }
    }

    @Test(arguments: Backend.allCases)
    func theAuditTrailKeepsEveryEntryNewestFirstWithTheAdminsName(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let admin = try await store.user("root")
            let first = try await store.recordComplianceAudit(API.ComplianceAuditEntry(
                at: 5_000, admin: admin.id, action: .search, query: "预算 leak", conversation: 7, user: 3, from: 1, to: 2,
                before: "9.7.3", results: 4))
            let second = try await store.recordComplianceAudit(API.ComplianceAuditEntry(
                at: 6_000, admin: admin.id, action: .export, user: 3, from: 10, to: 20, results: 12, archiveSha256: "ab12"))
            #expect(second > first)

            let trail = try await store.complianceAudit(before: nil, limit: 10)
            #expect(trail.map(\.id) == [second, first])
            #expect(trail[0] == API.ComplianceAuditEntry(id: second, at: 6_000, admin: admin.id, adminName: "root", action: .export,
                                                        user: 3, from: 10, to: 20, results: 12, archiveSha256: "ab12"))
            #expect(trail[1] == API.ComplianceAuditEntry(id: first, at: 5_000, admin: admin.id, adminName: "root", action: .search,
                                                        query: "预算 leak", conversation: 7, user: 3, from: 1, to: 2, before: "9.7.3", results: 4))
            #expect(try await store.complianceAudit(before: second, limit: 10).map(\.id) == [first])
            #expect(try await store.complianceAudit(before: nil, limit: 1).map(\.id) == [second])
        }
    }
}
