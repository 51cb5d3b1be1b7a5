import Foundation
import IMCore
import IMStorage
import IMStoragePostgres
import WarblerTestSupport
import IMStorageSQLite
import Testing

/// The storage backends every contract test runs against.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite, postgres
    var testDescription: String { rawValue }

    /// A fresh, migrated, empty database and its driver, closed (and removed) after `body`.
    func withDriver<T: Sendable>(_ body: (any SQLDriver) async throws -> T) async throws -> T {
        let driver: any SQLDriver
        var directory: String?
        switch self {
        case .sqlite:
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-sqlite-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            directory = dir
            driver = try await SQLiteDriver.open(path: dir + "/warbler.db")
        case .postgres:
            driver = try await PostgresTestServer.shared.connectFresh()
        }
        do {
            let result = try await body(driver)
            try await driver.close()
            if let directory { try? FileManager.default.removeItem(atPath: directory) }
            return result
        } catch {
            try? await driver.close()
            if let directory { try? FileManager.default.removeItem(atPath: directory) }
            throw error
        }
    }

    /// A fresh, migrated store.
    func withStore<T: Sendable>(_ body: (SQLStore, any SQLDriver) async throws -> T) async throws -> T {
        try await withDriver { driver in
            try await Migrations.apply(driver, now: 1_000)
            // PostgreSQL with the product's overlapping commits (`storage.postgres_commits_in_flight`'s default).
            return try await body(SQLStore(driver: driver, commitsInFlight: 2), driver)
        }
    }
}

/// Expects `body` to throw an `IMError` with `code`.
func expectIMError(_ code: ErrorCode, sourceLocation: SourceLocation = #_sourceLocation,
                   _ body: () async throws -> Void) async {
    do {
        try await body()
        Issue.record("expected IMError \(code.rawValue), but nothing was thrown", sourceLocation: sourceLocation)
    } catch let e as IMError {
        #expect(e.code == code, "expected \(code.rawValue), got \(e)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected IMError \(code.rawValue), got \(error)", sourceLocation: sourceLocation)
    }
}

extension SQLStore {
    func user(_ name: String) async throws -> UserProfile {
        try await createUser(username: name, passwordHash: "hash-\(name)", displayName: name.capitalized, admin: false, now: 1_000)
    }

    /// Appends one message and returns the stored result, failing the test on a domain failure.
    func send(_ conv: ConversationID, from sender: UserID, _ text: String, cid: String? = nil,
              kind: MessageKind = .text, target: Int64? = nil) async throws -> AppendResult {
        let m = NewMessage(conversation: conv, sender: sender, cid: cid ?? UUID().uuidString, kind: kind, text: text, target: target)
        let results = try await append([m])
        try #require(results.count == 1)
        return try results[0].get()
    }
}

@Suite("Storage contract")
struct StorageContractTests {

    // MARK: Users

    @Test(arguments: Backend.allCases)
    func usersCreateLookupAndConflict(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let alice = try await store.createUser(username: "alice", passwordHash: "h1", displayName: "Alice", admin: true, now: 1_234)
            let bob = try await store.user("bob")
            #expect(alice.id != bob.id)
            #expect(alice.admin)

            await expectIMError(.conflict) {
                _ = try await store.createUser(username: "alice", passwordHash: "h2", displayName: "Other", admin: false, now: 1_300)
            }
            #expect(try await store.userCount() == 2)

            let byID = try #require(try await store.user(id: alice.id))
            #expect(byID.profile == alice)
            #expect(byID.passwordHash == "h1")
            #expect(byID.createdAt == 1_234)
            #expect(!byID.disabled)
            let byName = try #require(try await store.user(username: "bob"))
            #expect(byName.id == bob.id)
            #expect(try await store.user(username: "carol") == nil)
            #expect(try await store.user(id: 999_999) == nil)

            let profiles = try await store.users(ids: [bob.id, alice.id, bob.id, 999_999])
            #expect(profiles.map(\.username) == ["alice", "bob"])
            #expect(try await store.listUsers(offset: 1, limit: 10).map(\.profile.username) == ["bob"])

            let updated = try await store.updateProfile(id: bob.id, displayName: "Bobby", avatar: "av1")
            #expect(updated.displayName == "Bobby")
            #expect(updated.avatar == "av1")
            #expect(try await store.updateProfile(id: bob.id, displayName: nil, avatar: "").avatar == nil)
            await expectIMError(.notFound) { _ = try await store.updateProfile(id: 999_999, displayName: "x", avatar: nil) }

            try await store.setDisabled(id: bob.id, disabled: true)
            try await store.setAdmin(id: bob.id, admin: true)
            try await store.setPasswordHash(id: bob.id, hash: "new-hash")
            let bob2 = try #require(try await store.user(id: bob.id))
            #expect(bob2.disabled)
            #expect(bob2.profile.admin)
            #expect(bob2.passwordHash == "new-hash")
        }
    }

    // MARK: Conversations

    @Test(arguments: Backend.allCases)
    func directConversationIsOnePerPair(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let ba = try await store.directConversation(between: b.id, and: a.id)
            let ac = try await store.directConversation(between: a.id, and: c.id)
            #expect(ab.id == ba.id)
            #expect(ab.id != ac.id)
            #expect(ab.type == .direct)
            #expect(ab.members.map(\.user) == [a.id, b.id].sorted())
            #expect(ab.lastSeq == 0)
            #expect(try await store.conversationIDs(for: a.id) == [ab.id, ac.id].sorted())
            #expect(try await store.conversationIDs(for: b.id) == [ab.id])
            let loaded = try #require(try await store.conversation(id: ab.id))
            #expect(loaded == ab)
            #expect(try await store.conversation(id: 999_999) == nil)
        }
    }

    @Test(arguments: Backend.allCases)
    func listGroupsCountsMembersAndSkipsDirectChats(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
            _ = try await store.directConversation(between: a.id, and: b.id)
            let g1 = try await store.createGroup(name: "ops", owner: a.id, members: [b.id, c.id])
            let g2 = try await store.createGroup(name: "pair", owner: c.id, members: [a.id])
            try await store.removeMember(conversation: g1.id, user: b.id)
            let all = try await store.listGroups(offset: 0, limit: 100)
            #expect(all.map(\.id) == [g1.id, g2.id])
            #expect(all.map(\.members) == [2, 2])
            #expect(all.map(\.owner) == [a.id, c.id])
            #expect(all.map(\.name) == ["ops", "pair"])
            #expect(try await store.listGroups(offset: 1, limit: 5).map(\.id) == [g2.id])
            #expect(try await store.listGroups(offset: 2, limit: 5).isEmpty)
        }
    }

    @Test(arguments: Backend.allCases)
    func groupLifecycle(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let owner = try await store.user("owner"), m1 = try await store.user("m1"), m2 = try await store.user("m2"),
                m3 = try await store.user("m3"), m4 = try await store.user("m4")
            let g = try await store.createGroup(name: "team", owner: owner.id, members: [m1.id, owner.id])
            #expect(g.type == .group)
            #expect(g.name == "team")
            #expect(Set(g.members.map(\.user)) == [owner.id, m1.id])
            #expect(g.members.first { $0.user == owner.id }?.role == .owner)
            #expect(g.members.first { $0.user == m1.id }?.role == .member)

            _ = try await store.send(g.id, from: owner.id, "hello")
            try await store.addMembers(conversation: g.id, users: [m2.id, m1.id], limit: 4)
            var now = try #require(try await store.conversation(id: g.id))
            #expect(now.members.count == 3)
            // New members join with their cursors at the end: old history is not unread for them.
            #expect(now.members.first { $0.user == m2.id }?.readSeq == 1)

            await expectIMError(.groupFull) { try await store.addMembers(conversation: g.id, users: [m3.id, m4.id], limit: 4) }
            #expect(try await store.conversation(id: g.id)?.members.count == 3, "a refused add adds nobody")
            try await store.addMembers(conversation: g.id, users: [m3.id], limit: 4)

            try await store.setRole(conversation: g.id, user: m1.id, role: .admin)
            try await store.removeMember(conversation: g.id, user: m2.id)
            try await store.renameGroup(conversation: g.id, name: "renamed")
            now = try #require(try await store.conversation(id: g.id))
            #expect(now.name == "renamed")
            #expect(Set(now.members.map(\.user)) == [owner.id, m1.id, m3.id])
            #expect(now.members.first { $0.user == m1.id }?.role == .admin)
            #expect(try await store.conversationIDs(for: m2.id).isEmpty)

            let before = try await store.messageCount()
            try await store.dissolve(conversation: g.id)
            #expect(try await store.conversation(id: g.id) == nil)
            #expect(try await store.messageCount() == before - 1)
            #expect(try await store.conversationIDs(for: owner.id).isEmpty)
        }
    }

    // MARK: Messages

    @Test(arguments: Backend.allCases)
    func appendAssignsIncreasingSeqsPerConversation(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let ac = try await store.directConversation(between: a.id, and: c.id)
            var abSeqs: [Int64] = [], acSeqs: [Int64] = []
            for i in 0..<3 {
                abSeqs.append(try await store.send(ab.id, from: a.id, "ab\(i)").message.seq)
                acSeqs.append(try await store.send(ac.id, from: c.id, "ac\(i)").message.seq)
            }
            #expect(abSeqs == [1, 2, 3])
            #expect(acSeqs == [1, 2, 3])
            // A batch: seqs follow on, results in input order.
            let batch = try await store.append((0..<3).map {
                NewMessage(conversation: ab.id, sender: b.id, cid: "batch-\($0)", kind: .text, text: "b\($0)")
            })
            #expect(try batch.map { try $0.get().message.seq } == [4, 5, 6])
            #expect(try batch.map { try $0.get().message.text } == ["b0", "b1", "b2"])
            #expect(try await store.conversation(id: ab.id)?.lastSeq == 6)
            #expect(try await store.messageCount() == 9)

            let stored = try #require(try await store.message(conversation: ab.id, seq: 4))
            #expect(stored.sender == b.id)
            #expect(stored.cid == "batch-0")
            #expect(stored.text == "b0")
            #expect(stored.ts > 0)
        }
    }

    @Test(arguments: Backend.allCases)
    func appendStoresAllFields(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let att = AttachmentRef(id: "att-1", name: "photo.jpg", contentType: "image/jpeg", size: 12_345)
            let m = NewMessage(conversation: ab.id, sender: a.id, cid: "c1", kind: .custom, text: nil,
                               data: .object(["k": .string("v"), "n": .number(3)]), attachment: att)
            let r = try await store.append([m])[0].get()
            let loaded = try #require(try await store.message(conversation: ab.id, seq: r.message.seq))
            #expect(loaded.kind == .custom)
            #expect(loaded.text == nil)
            #expect(loaded.data == m.data)
            #expect(loaded.attachment == att)
            #expect(loaded.target == nil)
            #expect(loaded.editedAt == nil)
            #expect(loaded.recalled == nil)

            try await store.insertAttachment(AttachmentRecord(ref: att, conversation: ab.id, uploader: a.id, createdAt: 4_000))
            let rec = try #require(try await store.attachment(id: "att-1"))
            #expect(rec.ref == att)
            #expect(rec.conversation == ab.id)
            #expect(rec.uploader == a.id)
            #expect(rec.createdAt == 4_000)
            #expect(try await store.attachment(id: "nope") == nil)
        }
    }

    @Test(arguments: Backend.allCases)
    func duplicateAppendReturnsOriginal(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let first = try await store.send(ab.id, from: a.id, "original", cid: "same")
            _ = try await store.send(ab.id, from: b.id, "other")
            #expect(!first.duplicate)
            #expect(first.message.seq == 1)
            let count = try await store.messageCount()

            let again = try await store.send(ab.id, from: a.id, "resent with other text", cid: "same")
            #expect(again.duplicate)
            #expect(again.message.seq == 1)
            #expect(again.message.text == "original")
            #expect(try await store.messageCount() == count)
            #expect(try await store.conversation(id: ab.id)?.lastSeq == 2)

            // The same cid from another sender is a different message.
            let other = try await store.send(ab.id, from: b.id, "b's own", cid: "same")
            #expect(!other.duplicate)
            #expect(other.message.seq == 3)

            // Within one batch, the second copy is the duplicate of the first.
            let batch = try await store.append([
                NewMessage(conversation: ab.id, sender: a.id, cid: "twice", kind: .text, text: "1"),
                NewMessage(conversation: ab.id, sender: a.id, cid: "twice", kind: .text, text: "2"),
            ])
            let r0 = try batch[0].get(), r1 = try batch[1].get()
            #expect(!r0.duplicate)
            #expect(r1.duplicate)
            #expect(r0.message.seq == 4)
            #expect(r1.message.seq == 4)
            #expect(r1.message.text == "1")
            #expect(try await store.messageCount() == count + 2)
        }
    }

    @Test(arguments: Backend.allCases)
    func concurrentAppendsGetContiguousSeqs(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let n = 200
            let seqs = try await withThrowingTaskGroup(of: Int64.self) { group in
                for i in 0..<n {
                    group.addTask {
                        let sender = i.isMultiple(of: 2) ? a.id : b.id
                        let r = try await store.append([NewMessage(conversation: ab.id, sender: sender, cid: "m\(i)", kind: .text, text: "\(i)")])
                        let result = try r[0].get()
                        #expect(!result.duplicate)
                        return result.message.seq
                    }
                }
                var all: [Int64] = []
                for try await s in group { all.append(s) }
                return all
            }
            #expect(seqs.sorted() == Array(1...Int64(n)))
            #expect(try await store.messageCount() == Int64(n))
            #expect(try await store.conversation(id: ab.id)?.lastSeq == Int64(n))
            let stored = try await store.messages(conversation: ab.id, after: 0, limit: n + 10)
            #expect(stored.map(\.seq) == Array(1...Int64(n)))
            #expect(Set(stored.map(\.cid)).count == n)
        }
    }

    @Test(arguments: Backend.allCases)
    func concurrentIdenticalSendsStoreOnce(_ backend: Backend) async throws {
        try await backend.withStore { store, driver in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            // Several stores on one database, like several servers: their batches race in separate transactions.
            let stores = [store] + (0..<3).map { _ in SQLStore(driver: driver) }
            let results = try await withThrowingTaskGroup(of: AppendResult.self) { group in
                for i in 0..<20 {
                    group.addTask {
                        try await stores[i % stores.count]
                            .append([NewMessage(conversation: ab.id, sender: a.id, cid: "retry", kind: .text, text: "x")])[0].get()
                    }
                }
                var all: [AppendResult] = []
                for try await r in group { all.append(r) }
                return all
            }
            #expect(results.filter { !$0.duplicate }.count == 1)
            #expect(Set(results.map(\.message.seq)) == [1])
            #expect(try await store.messageCount() == 1)
            #expect(try await store.conversation(id: ab.id)?.lastSeq == 1)
        }
    }

    @Test(arguments: Backend.allCases)
    func appendToMissingConversationFails(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let results = try await store.append([
                NewMessage(conversation: 999_999, sender: a.id, cid: "lost", kind: .text, text: "?"),
                NewMessage(conversation: ab.id, sender: a.id, cid: "fine", kind: .text, text: "ok"),
            ])
            #expect(results.count == 2)
            switch results[0] {
            case .failure(let e): #expect(e.code == .notFound)
            case .success(let r): Issue.record("append to a missing conversation succeeded: \(r)")
            }
            #expect(try results[1].get().message.seq == 1, "one bad message does not sink the others")
            #expect(try await store.messageCount() == 1)
        }
    }

    @Test(arguments: Backend.allCases)
    func pagingOrder(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            for i in 1...10 { _ = try await store.send(ab.id, from: a.id, "m\(i)") }
            #expect(try await store.messages(conversation: ab.id, after: 3, limit: 4).map(\.seq) == [4, 5, 6, 7])
            #expect(try await store.messages(conversation: ab.id, after: 8, limit: 10).map(\.seq) == [9, 10])
            #expect(try await store.messages(conversation: ab.id, after: 10, limit: 10).isEmpty)
            #expect(try await store.messages(conversation: ab.id, before: 8, limit: 3).map(\.seq) == [7, 6, 5])
            #expect(try await store.messages(conversation: ab.id, before: 3, limit: 10).map(\.seq) == [2, 1])
            #expect(try await store.messages(conversation: ab.id, before: 1, limit: 10).isEmpty)
            #expect(try await store.messages(conversation: ab.id, after: 0, limit: 2).map(\.text) == ["m1", "m2"])
            #expect(try await store.message(conversation: ab.id, seq: 5)?.text == "m5")
            #expect(try await store.message(conversation: ab.id, seq: 11) == nil)
            #expect(try await store.messages(conversation: 999_999, after: 0, limit: 10).isEmpty)
        }
    }

    @Test(arguments: Backend.allCases)
    func editAndRecallUpdateTheOriginal(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let original = try await store.send(ab.id, from: a.id, "tpyo")
            let other = try await store.send(ab.id, from: a.id, "to recall")

            let edit = try await store.send(ab.id, from: a.id, "typo", kind: .edit, target: original.message.seq)
            #expect(edit.message.seq == 3)
            #expect(edit.message.kind == .edit)
            let edited = try #require(try await store.message(conversation: ab.id, seq: original.message.seq))
            #expect(edited.text == "typo")
            #expect(edited.editedAt != nil)
            #expect(edited.recalled == nil)

            let recall = try await store.send(ab.id, from: a.id, "", kind: .recall, target: other.message.seq)
            #expect(recall.message.seq == 4)
            let recalled = try #require(try await store.message(conversation: ab.id, seq: other.message.seq))
            #expect(recalled.recalled == true)
            #expect(recalled.text == nil)

            let missing = try await store.append([NewMessage(conversation: ab.id, sender: a.id, cid: "e404", kind: .edit, text: "x", target: 99)])
            switch missing[0] {
            case .failure(let e): #expect(e.code == .notFound)
            case .success(let r): Issue.record("edit of a missing message succeeded: \(r)")
            }
            #expect(try await store.conversation(id: ab.id)?.lastSeq == 4)
        }
    }

    /// An edit checked before a recall committed must not write its text back into the recalled message.
    @Test(arguments: Backend.allCases)
    func anEditAfterARecallLeavesTheMessageRecalled(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let original = try await store.send(ab.id, from: a.id, "secret")
            _ = try await store.send(ab.id, from: a.id, "", kind: .recall, target: original.message.seq)
            let late = try await store.append([NewMessage(conversation: ab.id, sender: a.id, cid: "late-edit", kind: .edit, text: "secret again",
                                                          target: original.message.seq)])
            switch late[0] {
            case .failure(let e): #expect(e.code == .notFound)
            case .success(let r): Issue.record("an edit of a recalled message was stored: \(r)")
            }
            let stored = try #require(try await store.message(conversation: ab.id, seq: original.message.seq))
            #expect(stored.recalled == true)
            #expect(stored.text == nil)
        }
    }

    // MARK: Cursors and summaries

    @Test(arguments: Backend.allCases)
    func advanceCursorIsMonotonicAndCapped(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            for i in 1...5 { _ = try await store.send(ab.id, from: a.id, "m\(i)") }

            #expect(try await store.advanceCursor(conversation: ab.id, user: b.id, kind: .delivered, seq: 2) == 2)
            #expect(try await store.advanceCursor(conversation: ab.id, user: b.id, kind: .read, seq: 3) == 3)
            #expect(try await store.advanceCursor(conversation: ab.id, user: b.id, kind: .read, seq: 1) == 3, "never lowered")
            #expect(try await store.advanceCursor(conversation: ab.id, user: b.id, kind: .delivered, seq: 1) == 3, "read implies delivered")
            #expect(try await store.advanceCursor(conversation: ab.id, user: b.id, kind: .read, seq: 100) == 5, "capped at last seq")
            let member = try #require(try await store.conversation(id: ab.id)?.members.first { $0.user == b.id })
            #expect(member.readSeq == 5)
            #expect(member.deliveredSeq == 5)

            await expectIMError(.notFound) {
                _ = try await store.advanceCursor(conversation: 999_999, user: b.id, kind: .read, seq: 1)
            }
            let c = try await store.user("carol")
            await expectIMError(.notFound) {
                _ = try await store.advanceCursor(conversation: ab.id, user: c.id, kind: .read, seq: 1)
            }
        }
    }

    @Test(arguments: Backend.allCases)
    func summariesCountUnreadExcludingOwnMessages(_ backend: Backend) async throws {
        try await backend.withStore { store, driver in
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let g = try await store.createGroup(name: "g", owner: c.id, members: [a.id, b.id])
            let quiet = try await store.directConversation(between: a.id, and: c.id)

            _ = try await store.send(ab.id, from: a.id, "a1")   // 1
            _ = try await store.send(ab.id, from: b.id, "b1")   // 2
            _ = try await store.send(ab.id, from: b.id, "b2")   // 3
            _ = try await store.send(ab.id, from: a.id, "a2")   // 4: alice has now read up to 4
            _ = try await store.send(ab.id, from: b.id, "b3")   // 5
            _ = try await store.send(g.id, from: c.id, "c1")    // 1
            _ = try await store.send(g.id, from: c.id, "c2")    // 2

            let sa = try await store.summaries(for: a.id)
            #expect(sa.map(\.id) == [g.id, ab.id, quiet.id], "most recently active first")
            let sab = try #require(sa.first { $0.id == ab.id })
            #expect(sab.type == .direct)
            #expect(sab.peer == b.id)
            #expect(sab.lastSeq == 5)
            #expect(sab.readSeq == 4)
            #expect(sab.unread == 1)
            #expect(sab.lastMessage?.text == "b3")
            let sg = try #require(sa.first { $0.id == g.id })
            #expect(sg.unread == 2)
            #expect(sg.peer == nil)
            #expect(sg.name == "g")
            let sq = try #require(sa.first { $0.id == quiet.id })
            #expect(sq.unread == 0)
            #expect(sq.lastMessage == nil)

            // With alice's cursor back at 0, her own messages still don't count as unread: only bob's 3.
            try await driver.write { db in
                try await db.query("UPDATE members SET read_seq = 0 WHERE conv_id = $1 AND user_id = $2", [.int(ab.id), .int(a.id)])
                return ()
            }
            #expect(try await store.summaries(for: a.id).first { $0.id == ab.id }?.unread == 3)

            // Bob's sending b3 (5) marked everything before it read.
            #expect(try await store.summaries(for: b.id).first { $0.id == ab.id }?.unread == 0)
            // Edits and recalls are not unread messages; new text is.
            _ = try await store.send(ab.id, from: a.id, "a2!", kind: .edit, target: 4)    // 6
            #expect(try await store.summaries(for: b.id).first { $0.id == ab.id }?.unread == 0)
            _ = try await store.send(ab.id, from: a.id, "a3")                               // 7
            _ = try await store.send(ab.id, from: a.id, "a4")                               // 8
            let sb = try #require(try await store.summaries(for: b.id).first { $0.id == ab.id })
            #expect(sb.unread == 2)
            #expect(sb.peer == a.id)
            #expect(sb.lastMessage?.text == "a4")
            _ = try await store.advanceCursor(conversation: ab.id, user: b.id, kind: .read, seq: 7)
            #expect(try await store.summaries(for: b.id).first { $0.id == ab.id }?.unread == 1)
        }
    }

    // MARK: Refresh tokens

    @Test(arguments: Backend.allCases)
    func refreshTokensSpendOnceAndRevoke(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let t1 = RefreshTokenRecord(hash: "h1", user: a.id, family: "fam", device: "phone", expiresAt: 9_000)
            let t2 = RefreshTokenRecord(hash: "h2", user: a.id, family: "fam", device: "phone", expiresAt: 9_500)
            let t3 = RefreshTokenRecord(hash: "h3", user: a.id, family: "other", device: "laptop", expiresAt: 9_000)
            let t4 = RefreshTokenRecord(hash: "h4", user: b.id, family: "bobs", device: "tablet", expiresAt: 9_000)
            for t in [t1, t2, t3, t4] { try await store.insertRefreshToken(t) }

            #expect(try await store.refreshToken(hash: "h1") == t1)
            #expect(try await store.refreshToken(hash: "missing") == nil)

            #expect(try await store.spendRefreshToken(hash: "h1", now: 5_000))
            #expect(try await !store.spendRefreshToken(hash: "h1", now: 5_001), "a token is spent once")
            #expect(try await store.refreshToken(hash: "h1")?.usedAt == 5_000)
            #expect(try await !store.spendRefreshToken(hash: "missing", now: 5_000))

            // Concurrent spends: exactly one wins.
            let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<10 { group.addTask { try await store.spendRefreshToken(hash: "h3", now: 6_000 + Int64(i)) } }
                var n = 0
                for try await w in group where w { n += 1 }
                return n
            }
            #expect(wins == 1)

            try await store.revokeTokenFamily("fam")
            #expect(try await store.refreshToken(hash: "h2")?.revoked == true)
            #expect(try await !store.spendRefreshToken(hash: "h2", now: 7_000), "a revoked token cannot be spent")
            #expect(try await store.refreshToken(hash: "h4")?.revoked == false)

            try await store.revokeAllTokens(user: b.id)
            #expect(try await store.refreshToken(hash: "h4")?.revoked == true)

            let used = RefreshTokenRecord(hash: "h5", user: b.id, family: "f5", device: "d", expiresAt: 1, usedAt: 10, revoked: true)
            try await store.insertRefreshToken(used)
            #expect(try await store.refreshToken(hash: "h5") == used)
        }
    }

    @Test(arguments: Backend.allCases)
    func expiredRefreshTokensArePurged(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice")
            try await store.insertRefreshToken(RefreshTokenRecord(hash: "old", user: a.id, family: "f1", device: "d", expiresAt: 1_000))
            try await store.insertRefreshToken(RefreshTokenRecord(hash: "spent-old", user: a.id, family: "f2", device: "d", expiresAt: 1_500,
                                                                  usedAt: 900, revoked: false))
            try await store.insertRefreshToken(RefreshTokenRecord(hash: "live", user: a.id, family: "f3", device: "d", expiresAt: 5_000))
            try await store.insertRefreshToken(RefreshTokenRecord(hash: "spent-live", user: a.id, family: "f3", device: "d", expiresAt: 5_000,
                                                                  usedAt: 1_000, revoked: false))
            #expect(try await store.purgeExpiredRefreshTokens(now: 2_000) == 2)
            #expect(try await store.refreshToken(hash: "old") == nil)
            #expect(try await store.refreshToken(hash: "spent-old") == nil)
            #expect(try await store.refreshToken(hash: "live") != nil)
            // A spent token that has not expired stays, so replaying it is still recognised as reuse.
            #expect(try await store.refreshToken(hash: "spent-live")?.usedAt == 1_000)
            #expect(try await store.purgeExpiredRefreshTokens(now: 2_000) == 0)
        }
    }

    @Test(arguments: Backend.allCases)
    func attachmentsQuotaGarbageAndDissolve(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob")
            let ab = try await store.directConversation(between: a.id, and: b.id)
            let group = try await store.createGroup(name: "g", owner: a.id, members: [b.id])
            func attach(_ id: String, _ conv: ConversationID, by user: UserID, size: Int64, at: Int64) async throws -> AttachmentRef {
                let ref = AttachmentRef(id: id, name: id, contentType: "text/plain", size: size)
                try await store.insertAttachment(AttachmentRecord(ref: ref, conversation: conv, uploader: user, createdAt: at))
                return ref
            }
            let sent = try await attach("sent_1", ab.id, by: a.id, size: 100, at: 1_000)
            _ = try await attach("unsent_1", ab.id, by: a.id, size: 50, at: 1_000)
            _ = try await attach("young_1", ab.id, by: a.id, size: 7, at: 9_000)
            _ = try await attach("ingroup_1", group.id, by: b.id, size: 30, at: 1_000)
            _ = try await store.append([NewMessage(conversation: ab.id, sender: a.id, cid: "m1", kind: .attachment, attachment: sent)])
            #expect(try await store.attachmentBytes(uploader: a.id) == 157)
            #expect(try await store.attachmentBytes(uploader: b.id) == 30)

            // Old and unreferenced: the unsent one and the group's; not the sent one, not the young one.
            #expect(try await Set(store.unreferencedAttachments(createdBefore: 5_000, limit: 100)) == ["unsent_1", "ingroup_1"])
            #expect(try await store.unreferencedAttachments(createdBefore: 5_000, limit: 1).count == 1)
            try await store.deleteAttachments(ids: ["unsent_1"])
            #expect(try await store.attachment(id: "unsent_1") == nil)
            #expect(try await store.attachmentBytes(uploader: a.id) == 107)

            #expect(try await store.dissolve(conversation: group.id) == ["ingroup_1"])
            #expect(try await store.attachment(id: "ingroup_1") == nil)
            #expect(try await store.attachment(id: "sent_1") != nil)
        }
    }

    // MARK: Contacts

    @Test(arguments: Backend.allCases)
    func contactsSetGetList(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice"), b = try await store.user("bob"), c = try await store.user("carol")
            #expect(try await store.contactState(owner: a.id, other: b.id) == nil)
            try await store.setContactState(owner: a.id, other: c.id, state: .outgoing)
            try await store.setContactState(owner: a.id, other: b.id, state: .outgoing)
            try await store.setContactState(owner: b.id, other: a.id, state: .incoming)
            #expect(try await store.contactState(owner: a.id, other: b.id) == .outgoing)
            #expect(try await store.contactState(owner: b.id, other: a.id) == .incoming)

            try await store.setContactState(owner: a.id, other: b.id, state: .accepted)
            #expect(try await store.contactState(owner: a.id, other: b.id) == .accepted)

            let list = try await store.contacts(owner: a.id)
            #expect(list.map(\.user.username) == ["bob", "carol"])
            #expect(list.map(\.state) == [.accepted, .outgoing])
            #expect(list.first?.user == b)

            try await store.setContactState(owner: a.id, other: c.id, state: nil)
            #expect(try await store.contactState(owner: a.id, other: c.id) == nil)
            #expect(try await store.contacts(owner: a.id).map(\.user.id) == [b.id])
            #expect(try await store.contacts(owner: c.id).isEmpty)
        }
    }

    // MARK: Migrations and health

    @Test(arguments: Backend.allCases)
    func migrationsApplyOnce(_ backend: Backend) async throws {
        try await backend.withDriver { driver in
            let first = try await Migrations.apply(driver, now: 1_000)
            #expect(first == Migrations.all.map(\.version))
            #expect(try await Migrations.currentVersion(driver) == Migrations.latest)
            let second = try await Migrations.apply(driver, now: 2_000)
            #expect(second.isEmpty, "applying twice is a no-op")
            #expect(try await Migrations.currentVersion(driver) == Migrations.latest)
            // The schema works after the second run.
            let store = SQLStore(driver: driver)
            _ = try await store.user("alice")
            #expect(try await store.userCount() == 1)
        }
    }

    /// A database written by the previous release (every migration but the last), with data in it, is brought
    /// to the latest schema in place: everything stored before is still there and the new schema works.
    @Test(arguments: Backend.allCases)
    func theLatestMigrationAppliesOverAPopulatedDatabaseFromThePreviousSchema(_ backend: Backend) async throws {
        try await backend.withDriver { driver in
            let previous = Array(Migrations.all.dropLast())
            #expect(try await Migrations.apply(driver, now: 1_000, migrations: previous) == previous.map(\.version))
            let old = SQLStore(driver: driver, webhookOutbox: false)
            let alice = try await old.createUser(username: "alice", passwordHash: "h", displayName: "Alice", admin: false, now: 1)
            let bob = try await old.createUser(username: "bob", passwordHash: "h", displayName: "Bob", admin: false, now: 1)
            // Conversations and messages as the previous schema holds them (this build's store reads and writes
            // columns it does not have yet).
            let (direct, group) = try await driver.write { db -> (ConversationID, ConversationID) in
                func conversation(_ type: String, _ name: String?, _ key: String?, roles: [(UserID, String)]) async throws -> ConversationID {
                    guard let r = try await db.first(
                        "INSERT INTO conversations (type, name, last_seq, direct_key, created_at) VALUES ($1, $2, 0, $3, 1) RETURNING id",
                        [.text(type), SQLValue(name), SQLValue(key)]) else { throw StorageError.corrupt("no id") }
                    let id = try r.int("id")
                    for (u, role) in roles {
                        try await db.query("INSERT INTO members (conv_id, user_id, role) VALUES ($1, $2, $3)", [.int(id), .int(u), .text(role)])
                    }
                    return id
                }
                return (try await conversation("direct", nil, "\(alice.id):\(bob.id)", roles: [(alice.id, "member"), (bob.id, "member")]),
                        try await conversation("group", "team", nil, roles: [(alice.id, "owner"), (bob.id, "member")]))
            }
            try await driver.write { db in
                for i in 0..<50 {
                    let conv = i % 2 == 0 ? direct : group
                    guard let r = try await db.first("UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq", [.int(conv)]) else {
                        throw StorageError.corrupt("no conversation")
                    }
                    try await db.query("""
                        INSERT INTO messages (conv_id, seq, sender, cid, kind, text, ts, recalled) VALUES ($1, $2, $3, $4, 'text', $5, 1, 0)
                        """, [.int(conv), .int(try r.int("last_seq")), .int(alice.id), .text("m\(i)"), .text("hello \(i)")])
                }
            }

            #expect(try await Migrations.apply(driver, now: 2_000) == [Migrations.latest])
            #expect(try await Migrations.currentVersion(driver) == Migrations.latest)
            let store = SQLStore(driver: driver)
            #expect(try await store.user(username: "alice")?.profile.displayName == "Alice")
            let directMessages = try await store.messages(conversation: direct, after: 0, limit: 100)
            #expect(directMessages.map(\.text) == (0..<25).map { "hello \(2 * $0)" })
            #expect(directMessages.map(\.seq) == Array(1...25))
            #expect(try await store.messages(conversation: group, after: 0, limit: 100).count == 25)
            let groups = try await store.listGroups(offset: 0, limit: 10)
            #expect(groups.map(\.id) == [group] && groups.first?.members == 2)
            // Messages from before the migration are in the search index.
            #expect(try await store.search(MessageSearch(user: alice.id, terms: ["hello"], limit: 100)).count == 50)
            #expect(try await store.search(MessageSearch(user: bob.id, terms: ["hello 49"], limit: 100)).map(\.seq) == [25])
            // Messages from before the migration take replies, mentions and reactions.
            let reply = try await store.append([NewMessage(conversation: group, sender: alice.id, cid: "after", kind: .text, text: "@bob",
                                                           replyTo: 1, mentions: [bob.id])])
            #expect((try? reply[0].get())?.message.replyTo == 1)
            #expect(try await store.summaries(for: bob.id).first { $0.id == group }?.unreadMentions == 1)
        }
    }

    @Test(arguments: Backend.allCases)
    func newerSchemaIsRefused(_ backend: Backend) async throws {
        try await backend.withDriver { driver in
            try await Migrations.apply(driver, now: 1_000)
            let future = Int64(Migrations.latest + 1)
            try await driver.write { db in
                try await db.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                                   [.int(future), .text("from the future"), .int(3_000)])
                return ()
            }
            do {
                try await Migrations.apply(driver, now: 4_000)
                Issue.record("a database at a newer schema version was accepted")
            } catch let e as StorageError {
                guard case .migration(let why) = e else {
                    Issue.record("expected StorageError.migration, got \(e)")
                    return
                }
                #expect(why.contains("\(future)"))
            }
        }
    }

    struct Boom: Error {}

    @Test(arguments: Backend.allCases)
    func failedWriteRollsBack(_ backend: Backend) async throws {
        try await backend.withStore { (store: SQLStore, driver: any SQLDriver) async throws -> Void in
            await #expect(throws: Boom.self) {
                try await driver.write { db in
                    try await db.query("INSERT INTO contacts (owner, other, state) VALUES ($1, $2, $3)", [.int(1), .int(2), .text("accepted")])
                    throw Boom()
                }
            }
            #expect(try await store.contactState(owner: 1, other: 2) == nil)
            // A statement the database rejects fails the write too.
            await #expect(throws: (any Error).self) {
                try await driver.write { db in
                    try await db.query("INSERT INTO contacts (owner, other, state) VALUES ($1, $2, $3)", [.int(1), .int(3), .text("accepted")])
                    try await db.query("INSERT INTO no_such_table VALUES (1)")
                }
            }
            #expect(try await store.contactState(owner: 1, other: 3) == nil)
        }
    }

    @Test(arguments: Backend.allCases)
    func valuesRoundTrip(_ backend: Backend) async throws {
        try await backend.withStore { store, driver in
            try await store.ping()
            #expect(try await store.sizeInBytes() > 0)
            let row = try #require(try await driver.read { db in
                try await db.first("SELECT $1 AS i, $2 AS t, CAST($3 AS TEXT) AS n, 1 AS one, 2.5 AS d", [.int(Int64.max), .text("héllo ✓"), .null])
            })
            #expect(row["i"] == .int(Int64.max))
            #expect(row["t"] == .text("héllo ✓"))
            #expect(row["n"] == .null)
            #expect(row["one"] == .int(1))
            #expect(row["d"] == .double(2.5))
        }
    }
}

/// PostgreSQL-specific driver behaviour: connection errors and type mapping.
@Suite("PostgreSQL driver")
struct PostgresDriverTests {
    @Test func unreachableServerIsReportedWithoutThePassword() async throws {
        let port = try PostgresTestServer.freePort()  // nothing listens there
        do {
            let driver = try await PostgresDriver.connect(host: "127.0.0.1", port: port, username: "warbler",
                                                          password: "s3cret-pw", database: "warbler")
            try? await driver.close()
            Issue.record("connected to a port nobody listens on")
        } catch let e as StorageError {
            guard case .unavailable(let message) = e else {
                Issue.record("expected StorageError.unavailable, got \(e)")
                return
            }
            #expect(message.contains("cannot reach PostgreSQL at 127.0.0.1:\(port) as warbler"), "\(message)")
            #expect(message.contains("check"), "\(message)")
            #expect(!String(describing: e).contains("s3cret-pw"))
            #expect(!String(reflecting: e).contains("s3cret-pw"))
        }
    }

    @Test func missingDatabaseIsReportedClearly() async throws {
        let port = try await PostgresTestServer.shared.start().port
        do {
            let driver = try await PostgresDriver.connect(host: "127.0.0.1", port: port, username: "postgres",
                                                          password: "pw-never-shown", database: "no_such_db")
            try? await driver.close()
            Issue.record("connected to a database that does not exist")
        } catch let e as StorageError {
            let message = String(describing: e)
            #expect(message.contains("cannot reach PostgreSQL at 127.0.0.1:\(port) as postgres"), "\(message)")
            #expect(message.contains("no_such_db"), "\(message)")
            #expect(message.contains("3D000"), "\(message)")
            #expect(!message.contains("pw-never-shown"))
        }
    }

    @Test func columnTypesMapToSQLValues() async throws {
        let driver = try await PostgresTestServer.shared.connectFresh()
        let read = try await driver.read { db in
            try await db.first("""
                SELECT (SELECT COUNT(*) FROM pg_class WHERE false) AS count, 7::int2 AS small, 8::int4 AS int, 9::int8 AS big,
                  10::numeric AS num, 2.5::numeric AS frac, 1.5::float4 AS f4, 0.25::float8 AS f8, true AS yes,
                  NULL AS nothing, NULL::bigint AS nobig, 'v'::varchar AS v, current_user AS who, 'x'::text AS t,
                  DATE '2020-01-02' AS day, '{"a":1}'::jsonb AS doc, $1::bigint + 1 AS plus, $2 || '!' AS concat
                """, [.int(41), .text("hi")])
        }
        let size = try await driver.sizeInBytes()
        let durable = try await driver.read { db in try await db.first("SHOW synchronous_commit")?.optText("synchronous_commit") }
        try await driver.close()
        let row = try #require(read)
        #expect(row["count"] == .int(0))
        #expect(row["small"] == .int(7))
        #expect(row["int"] == .int(8))
        #expect(row["big"] == .int(9))
        #expect(row["num"] == .int(10))
        #expect(row["frac"] == .double(2.5))
        #expect(row["f4"] == .double(1.5))
        #expect(row["f8"] == .double(0.25))
        #expect(row["yes"] == .int(1))
        #expect(row["nothing"] == .null)
        #expect(row["nobig"] == .null)
        #expect(row["v"] == .text("v"))
        #expect(row["who"] == .text("postgres"))
        #expect(row["t"] == .text("x"))
        #expect(row["day"].text?.hasPrefix("2020-01-02") == true, "\(row["day"])")
        #expect(row["doc"] == .text(#"{"a": 1}"#))
        #expect(row["plus"] == .int(42))
        #expect(row["concat"] == .text("hi!"))
        #expect(size > 1_000_000)
        #expect(durable == "on", "commits wait for the WAL flush")
    }
}
