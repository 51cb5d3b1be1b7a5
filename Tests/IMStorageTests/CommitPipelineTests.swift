import Foundation
import IMCore
@testable import IMStorage
import Testing

/// PostgreSQL's overlapping group commits (`commitsInFlight` above 1): each conversation's seqs still follow the
/// order of submission, are published in seq order, and commits of different conversations really run at once.
@Suite("Overlapping commits (PostgreSQL)", .timeLimit(.minutes(2)))
struct CommitPipelineTests {
    @Test(arguments: [2, 4])
    func eachConversationsSeqsFollowSubmissionOrderAndArePublishedInOrder(_ depth: Int) async throws {
        try await Backend.postgres.withDriver { driver in
            try await Migrations.apply(driver, now: 1_000)
            let store = SQLStore(driver: driver, maxBatch: 16, commitsInFlight: depth)
            let owner = try await store.user("owner")
            var users: [UserProfile] = []
            for i in 0..<6 { users.append(try await store.user("u\(i)")) }
            var conversations: [ConversationID] = []
            for i in 0..<5 {
                conversations.append(try await store.createGroup(name: "g\(i)", owner: owner.id, members: users.map(\.id)).id)
            }
            let published = LockedBox<[ConversationID: [Int64]]>([:])
            await store.observeAppends { ms in published.withLock { p in for m in ms { p[m.conversation, default: []].append(m.seq) } } }

            // Submitted from one task without waiting, conversations interleaved: batches of 16 share conversations
            // with the batches still running before them, and disjoint stretches start at once.
            var tickets: [(ConversationID, String, AppendTicket)] = []
            for i in 0..<600 {
                let conv = i % 7 < 3 ? conversations[0] : conversations[i % conversations.count]
                let cid = "m\(i)"
                tickets.append((conv, cid, await store.submit(NewMessage(conversation: conv, sender: users[i % users.count].id,
                                                                         cid: cid, kind: .text, text: cid))))
                if i % 50 == 0 { try await Task.sleep(for: .milliseconds(2)) }
            }
            var seqs: [ConversationID: [Int64]] = [:]
            for (conv, cid, ticket) in tickets {
                let r = try await ticket.result().get()
                #expect(r.message.cid == cid && !r.duplicate)
                seqs[conv, default: []].append(r.message.seq)
            }
            for conv in conversations {
                let s = seqs[conv] ?? []
                // Submission order is seq order, and the seqs are dense.
                #expect(s == Array(1...Int64(s.count)), "conversation \(conv): \(s.prefix(40))")
                #expect(published.withLock { $0[conv] } == s, "published out of seq order in conversation \(conv)")
                let stored = try await store.messages(conversation: conv, after: 0, limit: 1_000)
                #expect(stored.map(\.seq) == s)
            }
        }
    }

    /// A client's retry of a send still being committed waits for that commit, whose row the dedupe lookup then
    /// finds, instead of starting a commit that would wait on the same row and then fail as a whole.
    @Test func aRetryOfASendInFlightWaitsForItsCommit() async throws {
        try await Backend.postgres.withDriver { driver in
            try await Migrations.apply(driver, now: 1_000)
            let setup = SQLStore(driver: driver)
            let a = try await setup.user("alice"), b = try await setup.user("bob")
            let ab = try await setup.directConversation(between: a.id, and: b.id).id
            let holding = InsertHoldingDriver(driver)
            let store = SQLStore(driver: holding, commitsInFlight: 2)
            let send = NewMessage(conversation: ab, sender: a.id, cid: "once", kind: .text, text: "once")

            holding.holdNextInsert()
            let first = await store.submit(send)
            for _ in 0..<300 where !holding.isHolding { try await Task.sleep(for: .milliseconds(10)) }
            #expect(holding.isHolding, "the first commit never reached its insert")
            let retry = await store.submit(send)    // past the first one's reservation: only its cid holds it up
            try await Task.sleep(for: .milliseconds(200))
            #expect(holding.writes == 1, "the retry started a commit beside the one it repeats")

            holding.release()
            let stored = try await first.result().get()
            let again = try await retry.result().get()
            #expect(!stored.duplicate && again.duplicate && again.message.seq == stored.message.seq)
            #expect(holding.writes == 2)
        }
    }

    @Test func aCommitOfAnotherConversationRunsWhileOneIsHeldAndAnswersInOrder() async throws {
        try await Backend.postgres.withDriver { driver in
            try await Migrations.apply(driver, now: 1_000)
            let setup = SQLStore(driver: driver)
            let a = try await setup.user("alice"), b = try await setup.user("bob"), c = try await setup.user("carol")
            let ab = try await setup.directConversation(between: a.id, and: b.id).id
            let ac = try await setup.directConversation(between: a.id, and: c.id).id
            let holding = HoldingDriver(driver)
            let store = SQLStore(driver: holding, commitsInFlight: 2)
            let published = LockedBox<[String]>([])
            await store.observeAppends { ms in published.withLock { $0 += ms.map(\.cid) } }
            func m(_ conv: ConversationID, _ cid: String) -> NewMessage {
                NewMessage(conversation: conv, sender: a.id, cid: cid, kind: .text, text: cid)
            }

            holding.holdNextWrite()
            let first = await store.submit(m(ab, "first"))
            try await Task.sleep(for: .milliseconds(50))
            let other = await store.submit(m(ac, "other"))      // another conversation: starts at once
            let behind = await store.submit(m(ab, "behind"))    // the held one's conversation: waits for its seqs
            var stored: [String] = []
            for _ in 0..<300 {
                stored = try await setup.messages(conversation: ac, after: 0, limit: 10).map(\.cid)
                if !stored.isEmpty { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(stored == ["other"], "the other conversation's commit did not run beside the held one")
            #expect(try await setup.messages(conversation: ab, after: 0, limit: 10).isEmpty)
            // Committed, but answered only after the commit before it.
            try await Task.sleep(for: .milliseconds(100))
            let answeredEarly = LockedBox(false)
            other.onCompletion { _ in answeredEarly.withLock { $0 = true } }
            #expect(answeredEarly.withLock { $0 } == false)

            holding.release()
            #expect(try await first.result().get().message.seq == 1)
            #expect(try await behind.result().get().message.seq == 2)
            #expect(try await other.result().get().message.seq == 1)
            #expect(published.withLock { $0 } == ["first", "other", "behind"])
        }
    }
}

/// A driver that passes everything to a real one, except that it can stop the next write at its insert into
/// `messages` (after the seq reservation) until released; it counts the writes begun.
final class InsertHoldingDriver: SQLDriver {
    let inner: any SQLDriver
    private struct Held { var armed = false, holding = false, released = false, writes = 0; var waiting: [CheckedContinuation<Void, Never>] = [] }
    private let held = LockedBox(Held())
    init(_ inner: any SQLDriver) { self.inner = inner }

    var dialect: SQLDialect { inner.dialect }
    var writes: Int { held.withLock { $0.writes } }
    var isHolding: Bool { held.withLock { $0.holding } }
    func holdNextInsert() { held.withLock { $0.armed = true; $0.released = false } }
    func release() {
        let waiting = held.withLock { h -> [CheckedContinuation<Void, Never>] in h.released = true; defer { h.waiting = [] }; return h.waiting }
        for c in waiting { c.resume() }
    }
    fileprivate func waitAtInsert() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = held.withLock { h -> Bool in
                if h.released { return true }
                h.holding = true
                h.waiting.append(c); return false
            }
            if now { c.resume() }
        }
    }

    func read<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) async throws -> T) async throws -> T { try await inner.read(body) }
    func write<T: Sendable>(_ body: @escaping @Sendable (any SQLExecutor) async throws -> T) async throws -> T {
        let hold = held.withLock { h -> Bool in h.writes += 1; defer { h.armed = false }; return h.armed }
        return try await inner.write { db in try await body(hold ? InsertHoldingExecutor(inner: db, driver: self) : db) }
    }
    func withExclusiveLock<T: Sendable>(_ key: Int64, _ body: @Sendable (any SQLDriver) async throws -> T) async throws -> T {
        try await inner.withExclusiveLock(key, body)
    }
    func sizeInBytes() async throws -> Int64 { try await inner.sizeInBytes() }
    func close() async throws {}
}

private struct InsertHoldingExecutor: SQLExecutor {
    let inner: any SQLExecutor
    let driver: InsertHoldingDriver
    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        if sql.contains("INSERT INTO messages") { await driver.waitAtInsert() }
        return try await inner.query(sql, binds)
    }
}
