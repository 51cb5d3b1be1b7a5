import Foundation
import IMClient
import IMCore
import Testing

@Suite(.timeLimit(.minutes(2))) struct MessagingTests {
    @Test(arguments: Backend.allCases) func twoUsersExchangeMessages(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id)
            // The same conversation, whoever asks.
            #expect(try await bob.client.createDirectConversation(with: alice.id).id == conv.id)

            let a = try await EventLog.connect(alice)
            let b = try await EventLog.connect(bob)
            let ack1 = try await a.connection.send(conversation: conv.id, text: "hi bob")
            let ack2 = try await b.connection.send(conversation: conv.id, text: "hi alice")
            #expect(ack1.seq == 1 && ack2.seq == 2)
            #expect(await b.waitForMessages(2, in: conv.id))
            #expect(await a.waitForMessages(2, in: conv.id))
            #expect(b.userMessages(in: conv.id).map(\.text) == ["hi bob", "hi alice"])
            #expect(a.userMessages(in: conv.id).map(\.seq) == [1, 2])
            #expect(b.userMessages(in: conv.id).first?.sender == alice.id)

            let list = try await bob.client.conversations()
            #expect(list.first?.id == conv.id)
            #expect(list.first?.unread == 0 || list.first?.unread == 1)   // bob's own send marks earlier ones read
            await a.close(); await b.close()
        }
    }

    @Test(arguments: Backend.allCases) func groupFanOutReachesEveryMemberAndEveryDevice(backend: Backend) async throws {
        try await withServer(backend) { server in
            let owner = try await server.user("owner")
            let m1 = try await server.user("member1")
            let m2 = try await server.user("member2")
            let m1Phone = try await server.device("member1")
            let group = try await owner.client.createGroup(name: "team", members: [m1.id, m2.id])
            #expect(group.members.count == 3)

            let logs = [try await EventLog.connect(owner), try await EventLog.connect(m1), try await EventLog.connect(m2),
                        try await EventLog.connect(m1Phone)]
            let sender = try await EventLog.connect(owner)   // the sender's second device sees its own sends too
            for i in 1...20 { _ = try await sender.connection.send(conversation: group.id, text: "m\(i)") }
            for log in logs + [sender] {
                #expect(await log.waitForMessages(20, in: group.id))
                let got = log.userMessages(in: group.id)
                #expect(got.map(\.text) == (1...20).map { "m\($0)" })
                let seqs = log.messages(in: group.id).map(\.seq)
                #expect(seqs == seqs.sorted() && Set(seqs).count == seqs.count)
            }
            for log in logs + [sender] { await log.close() }
        }
    }

    @Test(arguments: Backend.allCases) func duplicateClientIDReturnsTheSameAckAndStoresNothing(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            let first = try await a.connection.send(conversation: conv, text: "once", cid: "fixed-cid-1")
            let before = try await server.runtime.storage.messageCount()
            let again = try await a.connection.send(conversation: conv, text: "once", cid: "fixed-cid-1")
            #expect(!first.duplicate)
            #expect(again.duplicate)
            #expect(again.seq == first.seq && again.ts == first.ts && again.conv == first.conv)
            #expect(try await server.runtime.storage.messageCount() == before)
            let history = try await alice.client.history(conv)
            #expect(history.messages.filter { $0.cid == "fixed-cid-1" }.count == 1)
            await a.close()
        }
    }

    @Test(arguments: Backend.allCases) func droppedClientResumesWithEveryMessageOnceInOrder(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            let b = try await EventLog.connect(bob)
            let total = 300
            let sending = Task {
                for i in 1...total { _ = try await a.connection.send(conversation: conv, text: "n\(i)") }
            }
            // Drop bob's socket twice mid-stream; the SDK reconnects and syncs from its cursor. (The sends are one at
            // a time: on a loaded machine with PostgreSQL 150 of them took longer than 15 s.)
            #expect(await b.waitForMessages(50, in: conv, timeout: .seconds(60)))
            await b.connection.dropConnectionForTesting()
            #expect(await b.waitForMessages(150, in: conv, timeout: .seconds(60)))
            await b.connection.dropConnectionForTesting()
            try await sending.value
            #expect(await b.waitForMessages(total, in: conv, timeout: .seconds(60)))
            let got = b.userMessages(in: conv)
            #expect(got.map(\.text) == (1...total).map { "n\($0)" })
            #expect(got.map(\.seq) == Array(1...Int64(total)))
            let reconnects = b.events.filter { if case .connectionState(.connected) = $0 { return true }; return false }.count
            #expect(reconnects >= 3)
            await a.close(); await b.close()
        }
    }

    @Test(arguments: Backend.allCases) func offlineDeviceCatchesUpFromItsCursors(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let cursors = InMemoryCursorStore()
            let b1 = try await EventLog.connect(bob, cursorStore: cursors)
            let a = try await EventLog.connect(alice)
            for i in 1...5 { _ = try await a.connection.send(conversation: conv, text: "early\(i)") }
            #expect(await b1.waitForMessages(5, in: conv))
            await b1.close()
            for i in 1...7 { _ = try await a.connection.send(conversation: conv, text: "late\(i)") }
            // Bob comes back with the cursors he persisted: exactly the 7 he missed.
            let b2 = try await EventLog.connect(bob, cursorStore: cursors)
            #expect(await b2.waitForMessages(7, in: conv))
            try await Task.sleep(for: .milliseconds(200))
            #expect(b2.userMessages(in: conv).map(\.text) == (1...7).map { "late\($0)" })
            await a.close(); await b2.close()
        }
    }

    @Test(arguments: Backend.allCases) func nonMembersAreRefusedWithoutLearningTheConversationExists(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let eve = try await server.user("eve")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let e = try await EventLog.connect(eve)
            await expectIMError(.notFound) { _ = try await e.connection.send(conversation: conv, text: "let me in") }
            await expectIMError(.notFound) { _ = try await e.connection.send(conversation: 999_999, text: "nothing here") }
            await expectIMError(.notFound) { _ = try await eve.client.history(conv) }
            await expectIMError(.notFound) { _ = try await eve.client.history(999_999) }
            await expectIMError(.notFound) { _ = try await eve.client.conversation(conv) }
            await expectIMError(.notFound) {
                _ = try await eve.client.uploadAttachment(to: conv, name: "x.txt", contentType: "text/plain", data: Data("x".utf8))
            }
            let ref = try await alice.client.uploadAttachment(to: conv, name: "secret.txt", contentType: "text/plain", data: Data("s".utf8))
            await expectIMError(.notFound) { _ = try await eve.client.downloadAttachment(ref.id) }
            #expect(try await server.runtime.storage.messageCount() == 0)
            await e.close()
        }
    }

    @Test(arguments: Backend.allCases) func receiptsTypingPresenceRecallAndEdit(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            let b = try await EventLog.connect(bob)
            // Presence: alice hears bob come online (they share a conversation).
            #expect(await a.wait { $0.contains { if case .presence(let p) = $0 { return p.user == bob.id && p.status == .online }; return false } })

            let m1 = try await a.connection.send(conversation: conv, text: "hello")
            #expect(await b.waitForMessages(1, in: conv))
            await b.connection.markRead(conversation: conv, seq: m1.seq)
            #expect(await a.wait { $0.contains { if case .receipt(let r) = $0 { return r.user == bob.id && r.kind == .read && r.seq == m1.seq }; return false } })
            let members = try await alice.client.conversation(conv).members
            #expect(members.first { $0.user == bob.id }?.readSeq == m1.seq)
            #expect(members.first { $0.user == bob.id }?.deliveredSeq == m1.seq)

            await b.connection.typing(conversation: conv, active: true)
            #expect(await a.wait { $0.contains { if case .typing(let t) = $0 { return t.user == bob.id && t.active }; return false } })

            let edit = try await a.connection.edit(conversation: conv, seq: m1.seq, text: "hello, bob")
            #expect(edit.seq == m1.seq + 1)
            await expectIMError(.forbidden) { _ = try await b.connection.edit(conversation: conv, seq: m1.seq, text: "hijack") }
            await expectIMError(.forbidden) { _ = try await b.connection.recall(conversation: conv, seq: m1.seq) }
            let recall = try await a.connection.recall(conversation: conv, seq: m1.seq)
            #expect(await b.wait { $0.contains { if case .message(let m) = $0 { return m.kind == .recall && m.target == m1.seq }; return false } })
            let stored = try await bob.client.history(conv).messages
            let original = stored.first { $0.seq == m1.seq }
            #expect(original?.recalled == true && original?.text == nil)
            #expect(stored.first { $0.seq == recall.seq }?.kind == .recall)

            // Presence goes offline with a last-seen time.
            await b.close()
            #expect(await a.wait { $0.contains { if case .presence(let p) = $0 { return p.user == bob.id && p.status == .offline && p.lastSeen != nil }; return false } })
            await a.close()
        }
    }

    @Test func recallWindowIsEnforced() async throws {
        try await withServer(.sqlite, { $0.limits.recallSeconds = 0 }) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            let m = try await a.connection.send(conversation: conv, text: "too late to take back")
            try await Task.sleep(for: .milliseconds(20))
            await expectIMError(.recallWindow) { _ = try await a.connection.recall(conversation: conv, seq: m.seq) }
            await a.close()
        }
    }

    @Test(arguments: Backend.allCases) func customPayloadsAndAttachments(backend: Backend) async throws {
        try await withServer(backend, { $0.limits.attachmentBytes = 1000; $0.limits.attachmentTypes = ["image/*", "text/plain"] }) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            let b = try await EventLog.connect(bob)
            let payload = JSONValue.object(["card": .string("invoice"), "amount": .number(42), "paid": .bool(false)])
            _ = try await a.connection.send(conversation: conv, data: payload)

            let png = Data([0x89, 0x50, 0x4E, 0x47] + Array(repeating: UInt8(7), count: 100))
            let ref = try await alice.client.uploadAttachment(to: conv, name: "pic.png", contentType: "image/png", data: png)
            #expect(ref.size == Int64(png.count) && ref.contentType == "image/png")
            _ = try await a.connection.send(conversation: conv, attachment: ref, caption: "look")
            #expect(await b.waitForMessages(2, in: conv))
            let got = b.userMessages(in: conv)
            #expect(got[0].kind == .custom && got[0].data == payload)
            #expect(got[1].kind == .attachment && got[1].attachment == ref && got[1].text == "look")
            let downloaded = try await bob.client.downloadAttachment(ref.id)
            #expect(downloaded.data == png && downloaded.contentType == "image/png")

            await expectIMError(.tooLarge) {
                _ = try await alice.client.uploadAttachment(to: conv, name: "big.png", contentType: "image/png", data: Data(count: 2000))
            }
            await expectIMError(.invalid) {
                _ = try await alice.client.uploadAttachment(to: conv, name: "x.exe", contentType: "application/x-msdownload", data: Data(count: 10))
            }
            await a.close(); await b.close()
        }
    }

    @Test(arguments: Backend.allCases) func historyPagesBackwards(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            for i in 1...25 { _ = try await a.connection.send(conversation: conv, text: "h\(i)") }
            let page1 = try await bob.client.history(conv, limit: 10)
            #expect(page1.messages.map(\.seq) == Array((16...25).reversed()))
            #expect(page1.hasMore)
            let page3 = try await bob.client.history(conv, before: 6, limit: 10)
            #expect(page3.messages.map(\.seq) == [5, 4, 3, 2, 1])
            #expect(!page3.hasMore)
            let summary = try await bob.client.conversations().first { $0.id == conv }
            #expect(summary?.unread == 25)
            #expect(summary?.lastMessage?.text == "h25")
            await a.close()
        }
    }

    @Test func blockedUsersCannotMessage() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            _ = try await a.connection.send(conversation: conv, text: "before")
            try await bob.client.block(alice.id)
            await expectIMError(.blocked) { _ = try await a.connection.send(conversation: conv, text: "after") }
            try await bob.client.unblock(alice.id)
            _ = try await a.connection.send(conversation: conv, text: "after unblock")
            await a.close()
        }
    }

    @Test func contactsRequestAcceptDeclineRemove() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let carol = try await server.user("carol")
            try await alice.client.requestContact(bob.id)
            #expect(try await bob.client.contacts().map(\.state) == [.incoming])
            #expect(try await alice.client.contacts().map(\.state) == [.outgoing])
            try await bob.client.acceptContact(alice.id)
            #expect(try await alice.client.contacts().map(\.state) == [.accepted])
            try await carol.client.requestContact(alice.id)
            try await alice.client.declineContact(carol.id)
            #expect(try await carol.client.contacts().isEmpty)
            await expectIMError(.notFound) { try await alice.client.acceptContact(carol.id) }
            try await alice.client.removeContact(bob.id)
            #expect(try await bob.client.contacts().isEmpty)
            #expect(try await alice.client.user(username: "bob").id == bob.id)
        }
    }
}
