import Foundation
import IMClient
import IMCore
import Testing

@Suite(.timeLimit(.minutes(2))) struct ForwardTests {
    @Test(arguments: Backend.allCases) func forwardsReadableMessagesWithAttachmentsOnceAndInOrder(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice"), bob = try await server.user("bob"), carol = try await server.user("carol")
            let eve = try await server.user("eve")
            let source = try await alice.client.createGroup(name: "source", members: [bob.id]).id
            let target = try await bob.client.createGroup(name: "target", members: [carol.id]).id
            let a = try await EventLog.connect(alice), c = try await EventLog.connect(carol)
            let bytes = Data("the plan, in full".utf8)
            let ref = try await alice.client.uploadAttachment(to: source, name: "plan.txt", contentType: "text/plain", data: bytes)
            let t1 = try await a.connection.send(conversation: source, text: "first")
            let t2 = try await a.connection.send(conversation: source, attachment: ref, caption: "the plan")
            let t3 = try await a.connection.send(conversation: source, data: .object(["card": .string("invoice")]))
            let gone = try await a.connection.send(conversation: source, text: "oops")
            _ = try await a.connection.recall(conversation: source, seq: gone.seq)

            let acks = try await bob.client.forward([t2.seq, t1.seq, t3.seq], from: source, to: target, cid: "fw-1")
            #expect(acks.map(\.cid) == ["fw-1/1", "fw-1/2", "fw-1/3"] && acks.allSatisfy { !$0.duplicate })
            #expect(acks.map(\.seq) == acks.map(\.seq).sorted(), "copies are stored in the order asked")
            #expect(await c.waitForMessages(3, in: target))
            let copies = c.userMessages(in: target)
            #expect(copies.map(\.kind) == [.attachment, .text, .custom])
            #expect(copies.allSatisfy { $0.sender == bob.id && $0.forwardedFrom?.sender == alice.id })
            #expect(copies[1].text == "first" && copies[1].forwardedFrom?.ts == t1.ts)
            #expect(copies[0].text == "the plan" && copies[0].attachment?.name == "plan.txt" && copies[0].attachment?.id != ref.id)
            // Carol, who is not in the source, downloads the copy; she still cannot read the original.
            let copyID = try #require(copies[0].attachment?.id)
            #expect(try await carol.client.downloadAttachment(copyID).data == bytes)
            await expectIMError(.notFound) { _ = try await carol.client.downloadAttachment(ref.id) }
            let history = try await carol.client.history(target).messages
            #expect(history.contains { $0.forwardedFrom?.sender == alice.id && $0.kind == .custom })

            // A retry with the same cid stores nothing new.
            let again = try await bob.client.forward([t2.seq, t1.seq, t3.seq], from: source, to: target, cid: "fw-1")
            #expect(again.allSatisfy(\.duplicate) && again.map(\.seq) == acks.map(\.seq))
            // Forwarding a forwarded copy keeps the original author.
            let carolBob = try await carol.client.createDirectConversation(with: bob.id).id
            let twice = try await carol.client.forward([acks[1].seq], from: target, to: carolBob)
            let copyOfCopy = try await carol.client.history(carolBob).messages.first { $0.seq == twice.first?.seq }
            #expect(copyOfCopy?.sender == carol.id && copyOfCopy?.forwardedFrom == ForwardedFrom(sender: alice.id, ts: t1.ts))

            // Refusals: a recalled message, a source you cannot read, a target you are not in, too many.
            await expectIMError(.notFound) { try await bob.client.forward([gone.seq], from: source, to: target) }
            await expectIMError(.notFound) { try await carol.client.forward([t1.seq], from: source, to: target) }
            await expectIMError(.notFound) { try await eve.client.forward([t1.seq], from: source, to: target) }
            await expectIMError(.invalid) { try await bob.client.forward([], from: source, to: target) }
            await expectIMError(.invalid) { try await bob.client.forward([t1.seq, t1.seq], from: source, to: target) }
            // A member muted in the target cannot forward into it.
            try await bob.client.muteMember(carol.id, in: target)
            await expectIMError(.muted) { try await carol.client.forward([twice[0].seq], from: carolBob, to: target) }
            await a.close(); await c.close()
        }
    }
}
