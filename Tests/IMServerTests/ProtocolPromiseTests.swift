import Foundation
import IMClient
import IMCore
import IMServer
import Testing

/// Promises of docs/protocol.md that a black-box client found broken (issue 9, items 17-20).
@Suite(.timeLimit(.minutes(2))) struct ProtocolPromiseTests {
    /// The `msg` seqs up to the next `synced`, and that `synced`.
    func syncRound(_ s: RawSocket) async -> ([Int64], ServerFrame.Synced?) {
        var seqs: [Int64] = []
        while let f = await s.next() {
            if case .msg(let m) = f { seqs.append(m.seq) }
            if case .synced(let sy) = f { return (seqs, sy) }
        }
        return (seqs, nil)
    }

    @Test(arguments: Backend.allCases)
    func aSecondSyncWithAnOlderCursorDeliversNoDuplicates(backend: Backend) async throws {
        try await withServer(backend) { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let a = try await EventLog.connect(alice)
            for i in 1...7 { _ = try await a.connection.send(conversation: conv, text: "m\(i)") }
            let b = try await authed(server, bob)
            b.send(.sync(.init(cursors: [conv: 0], limit: 6)))
            let (first, firstSynced) = await syncRound(b)
            #expect(first == Array(1...6))
            #expect(firstSynced?.more == [conv])
            // An older cursor, as after `more` or a refresh while live messages arrive.
            b.send(.sync(.init(cursors: [conv: 2])))
            let (second, secondSynced) = await syncRound(b)
            #expect(second == [7])
            #expect(secondSynced?.cursors[String(conv)] == 7)
            _ = try await a.connection.send(conversation: conv, text: "live")
            let live = await b.next { if case .msg(let m) = $0 { return m.seq }; return nil }
            #expect(live == 8)
            b.close(); await a.close()
        }
    }

    @Test func aSendWithAnUnknownKindIsAnsweredInvalidWithItsCid() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let s = try await authed(server, alice)
            s.send(#"{"type":"send","cid":"c-bogus","conv":\#(conv),"kind":"bogus","text":"x"}"#)
            let e = await s.next { if case .error(let e) = $0 { return e }; return nil }
            #expect(e?.code == .invalid)
            #expect(e?.cid == "c-bogus")
            // Any send whose cid can be read gets it back, whatever else is wrong.
            s.send(#"{"type":"send","cid":"c-type","conv":"twelve","kind":"text","text":"x"}"#)
            let e2 = await s.next { if case .error(let e) = $0 { return e }; return nil }
            #expect(e2?.code == .badFrame)
            #expect(e2?.cid == "c-type")
            s.close()
        }
    }

    @Test func badFrameNamesTheField() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let s = try await authed(server, alice)
            for (text, field) in [(#"{"type":"send","cid":"a","conv":1.5,"kind":"text","text":"x"}"#, "conv"),
                                  (#"{"type":"send","cid":"b","conv":1,"kind":"text","text":"\ud800"}"#, "text")] {
                s.send(text)
                let e = await s.next { if case .error(let e) = $0 { return e }; return nil }
                #expect(e?.code == .badFrame, "\(text)")
                #expect(e?.message.contains("'\(field)'") == true, "\(String(describing: e?.message))")
            }
            s.send(.ping(.init(ref: "alive")))
            #expect(await s.next { if case .pong(let p) = $0 { return p.ref }; return nil } == "alive")
            s.close()
        }
    }

    @Test func aNonMembersAttachmentDownloadReadsAsAMissingOne() async throws {
        try await withServer { server in
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let eve = try await server.user("eve")
            let conv = try await alice.client.createDirectConversation(with: bob.id).id
            let ref = try await alice.client.uploadAttachment(to: conv, name: "secret.txt", contentType: "text/plain", data: Data("s".utf8))
            let token = try #require(await eve.client.session).accessToken
            let existing = try await rawRequest(.GET, server.baseURL + "/v1/attachments/\(ref.id)", bearer: token)
            let missing = try await rawRequest(.GET, server.baseURL + "/v1/attachments/\(ref.id)x", bearer: token)
            #expect(existing.status == 404 && missing.status == 404)
            #expect(existing.body == missing.body)
        }
    }
}
