import Foundation
import IMCore
import Testing

@Suite struct FrameCodingTests {
    @Test func clientFramesRoundTrip() throws {
        let frames: [ClientFrame] = [
            .auth(.init(token: "t")),
            .sync(.init(cursors: [1: 5, 2: 0], limit: 10)),
            .send(.init(cid: "c1", conv: 3, kind: .text, text: "hi")),
            .send(.init(cid: "c2", conv: 3, kind: .custom, data: .object(["a": .array([.number(1), .bool(true), .null])]))),
            .receipt(.init(conv: 3, kind: .read, seq: 9)),
            .typing(.init(conv: 3, active: true)),
            .recall(.init(cid: "r", conv: 3, seq: 2)),
            .edit(.init(cid: "e", conv: 3, seq: 2, text: "fixed")),
            .ping(.init(ref: "p")),
        ]
        for f in frames {
            let text = FrameCodec.encode(f)
            #expect(try FrameCodec.decodeClient(text).get() == f, "\(text)")
        }
    }

    @Test func serverFramesRoundTrip() throws {
        let m = Message(conversation: 1, seq: 2, sender: 3, cid: "x", kind: .attachment, text: "cap",
                        attachment: AttachmentRef(id: "a", name: "n.png", contentType: "image/png", size: 10), ts: 99)
        let frames: [ServerFrame] = [
            .ready(.init(user: 1, session: "s", serverTime: 5)),
            .ack(.init(cid: "x", conv: 1, seq: 2, ts: 99, duplicate: false)),
            .msg(m),
            .synced(.init(cursors: ["1": 2], more: [4])),
            .receipt(.init(conv: 1, user: 2, kind: .delivered, seq: 3)),
            .typing(.init(conv: 1, user: 2, active: false)),
            .presence(.init(user: 2, status: .offline, lastSeen: 7)),
            .error(.init(code: .rateLimited, message: "slow", cid: "x", retryAfter: 0.5)),
            .reconnect(.init(reason: "bye")),
            .pong(.init(ref: nil)),
        ]
        for f in frames {
            let text = FrameCodec.encode(f)
            #expect(try FrameCodec.decodeServer(text) == f, "\(text)")
        }
    }

    @Test func wireShapeIsFlatWithType() {
        let text = FrameCodec.encode(ClientFrame.send(.init(cid: "c", conv: 7, text: "hello")))
        #expect(text == #"{"cid":"c","conv":7,"kind":"text","text":"hello","type":"send"}"#)
    }

    @Test(arguments: [
        ("", ErrorCode.badFrame),
        ("[]", .badFrame),
        (#"{"cid":"c"}"#, .badFrame),
        (#"{"type":"launch"}"#, .unknownType),
        (#"{"type":"send","conv":1,"kind":"text"}"#, .badFrame),
        (#"{"type":"send","cid":"c","conv":"one","kind":"text"}"#, .badFrame),
        (#"{"type":"send","cid":"c","conv":1,"kind":"poem"}"#, .invalid),   // protocol.md: a wrong kind is `invalid` (issue 9, item 18)
    ])
    func malformedFramesGetPreciseErrors(text: String, code: ErrorCode) {
        guard case .failure(let e) = FrameCodec.decodeClient(text) else {
            Issue.record("decoded \(text)")
            return
        }
        #expect(e.code == code, "\(text): \(e)")
    }

    @Test func missingFieldIsNamed() {
        guard case .failure(let e) = FrameCodec.decodeClient(#"{"type":"send","conv":1,"kind":"text"}"#) else { return }
        #expect(e.message.contains("cid"))
    }
}

@Suite struct ValidationTests {
    @Test func usernames() {
        #expect(Validation.username("alice") == nil)
        #expect(Validation.username("a.b_c-9") == nil)
        #expect(Validation.username("al") != nil)
        #expect(Validation.username("Alice") != nil)
        #expect(Validation.username("_alice") != nil)
        #expect(Validation.username(String(repeating: "a", count: 33)) != nil)
    }

    @Test func passwords() {
        #expect(Validation.password("12345678") == nil)
        #expect(Validation.password("short") != nil)
        #expect(Validation.password(String(repeating: "x", count: 2000)) != nil)
    }

    @Test func roleOrder() {
        #expect(MemberRole.member < .admin)
        #expect(MemberRole.admin < .owner)
    }
}

@Suite struct FastJSONTests {
    static let samples: [Message] = [
        Message(conversation: 1, seq: 2, sender: 3, cid: "c", kind: .text, text: "hello", ts: 1_796_212_345_678),
        Message(conversation: 9_007_199_254_740_993, seq: Int64.max, sender: -1, cid: "ü/\"\\\n\r\t\u{08}\u{0C}\u{01}\u{1F}", kind: .text,
                text: "emoji 🐦 and \u{2028} and </script>", ts: 0),
        Message(conversation: 1, seq: 1, sender: 1, cid: "x", kind: .custom,
                data: .object(["z": .null, "a": .array([.number(1), .number(-2.5), .number(0.1), .number(1e-7), .number(1e21), .bool(true)]),
                               "Zed": .string("caps sort first"), "é": .object(["k": .string("v")])]), ts: 5),
        Message(conversation: 4, seq: 5, sender: 6, cid: "a", kind: .attachment, text: "caption",
                attachment: AttachmentRef(id: "id1", name: "plan \"v2\".pdf", contentType: "application/pdf", size: 123), ts: 7),
        Message(conversation: 4, seq: 6, sender: 6, cid: "r", kind: .recall, target: 5, ts: 8, editedAt: 9, recalled: true),
        Message(conversation: 4, seq: 7, sender: 6, cid: "q", kind: .text, text: "@bob see above", ts: 10, replyTo: 5,
                mentions: [2, 30], mentionAll: true, reactions: [Reaction(emoji: "👍", users: [2, 6]), Reaction(emoji: "🇨🇳", users: [9])]),
        Message(conversation: 4, seq: 8, sender: 6, cid: "e", kind: .reaction, text: "👍", data: .object(["op": .string("remove")]),
                target: 7, ts: 11, mentions: [], reactions: []),
        Message(conversation: 4, seq: 9, sender: 6, cid: "f/1", kind: .text, text: "copied", ts: 12, editedAt: 13,
                forwardedFrom: ForwardedFrom(sender: 3, ts: 1_796_212_345_678)),
    ]

    @Test(arguments: samples) func msgMatchesJSONEncoderByteForByte(_ m: Message) throws {
        #expect(FrameCodec.encode(.msg(m)) == FrameCodec.encodeWithJSONEncoder(.msg(m)))
        #expect(try FrameCodec.decodeServer(FrameCodec.encode(.msg(m))) == .msg(m))
    }

    @Test func ackMatchesJSONEncoder() {
        for a in [ServerFrame.Ack(cid: "c\"1", conv: 3, seq: 4, ts: 5, duplicate: true), .init(cid: "", conv: 0, seq: 0, ts: -1, duplicate: false)] {
            #expect(FrameCodec.encode(.ack(a)) == FrameCodec.encodeWithJSONEncoder(.ack(a)))
        }
    }
}

@Suite struct ReactionTests {
    func event(_ seq: Int64, by user: UserID, _ emoji: String, on target: Int64, remove: Bool = false) -> Message {
        Message(conversation: 1, seq: seq, sender: user, cid: "r\(seq)", kind: .reaction, text: emoji,
                data: .object(["op": .string(remove ? "remove" : "add")]), target: target, ts: seq)
    }

    @Test func reactionsApplyInOrderIdempotentlyAndOnlyToTheirTarget() {
        var m = Message(conversation: 1, seq: 5, sender: 9, cid: "m", kind: .text, text: "hi", ts: 1)
        m = m.applyingReaction(event(6, by: 1, "👍", on: 5))
        m = m.applyingReaction(event(7, by: 2, "👍", on: 5))
        m = m.applyingReaction(event(8, by: 1, "👍", on: 5))          // again: no change
        m = m.applyingReaction(event(9, by: 2, "🎉", on: 5))
        m = m.applyingReaction(event(10, by: 3, "🎉", on: 4))         // another message: ignored
        #expect(m.reactions == [Reaction(emoji: "🎉", users: [2]), Reaction(emoji: "👍", users: [1, 2])], "emoji in UTF-8 order")
        m = m.applyingReaction(event(11, by: 1, "👍", on: 5, remove: true))
        m = m.applyingReaction(event(12, by: 2, "🎉", on: 5, remove: true))
        m = m.applyingReaction(event(13, by: 7, "😀", on: 5, remove: true))   // removing what is absent: nothing
        #expect(m.reactions == [Reaction(emoji: "👍", users: [2])])
        m = m.applyingReaction(event(14, by: 2, "👍", on: 5, remove: true))
        #expect(m.reactions == nil)
    }

    @Test func mentionsNameUsersOrEveryoneButNeverTheSender() {
        let m = Message(conversation: 1, seq: 1, sender: 9, cid: "m", kind: .text, text: "@a", ts: 1, mentions: [1, 9])
        #expect(m.isMentioning(1) && !m.isMentioning(2) && !m.isMentioning(9))
        let all = Message(conversation: 1, seq: 2, sender: 9, cid: "n", kind: .text, text: "@all", ts: 1, mentionAll: true)
        #expect(all.isMentioning(2) && !all.isMentioning(9))
    }

    @Test func reactionEmojiValidation() {
        #expect(Validation.reactionEmoji("👍") == nil)
        #expect(Validation.reactionEmoji("👍🏽") == nil)
        #expect(Validation.reactionEmoji("🇨🇳") == nil)
        #expect(Validation.reactionEmoji("") != nil)
        #expect(Validation.reactionEmoji("a b") != nil)
        #expect(Validation.reactionEmoji(String(repeating: "x", count: 9)) != nil)
    }
}

@Suite struct SearchRulesTests {
    @Test func termsSplitOnWhitespaceWithoutRepeats() throws {
        #expect(try Search.terms("  预算  Budget budget 会议 ") == ["预算", "Budget", "会议"])
        #expect(throws: IMError.self) { try Search.terms("   ") }
        #expect(throws: IMError.self) { try Search.terms(String(repeating: "x", count: 201)) }
        #expect(throws: IMError.self) { try Search.terms("a b c d e f g h i") }
    }

    @Test func highlightMarksEveryMatchIgnoringCaseAndMergesOverlaps() {
        let segments = Search.highlight("明天开会讨论预算, Budget and BUDGETS", terms: ["预算", "budget", "dget a"])
        #expect(segments == [
            API.Segment(text: "明天开会讨论", match: false), API.Segment(text: "预算", match: true), API.Segment(text: ", ", match: false),
            API.Segment(text: "Budget a", match: true), API.Segment(text: "nd ", match: false), API.Segment(text: "BUDGET", match: true),
            API.Segment(text: "S", match: false),
        ])
        #expect(segments.map(\.text).joined() == "明天开会讨论预算, Budget and BUDGETS")
        #expect(Search.highlight("nothing here", terms: ["zz"]) == [API.Segment(text: "nothing here", match: false)])
    }

    @Test func cursorTokensRoundTripAndBadOnesAreRefused() throws {
        let c = Search.Cursor(ts: 1_700_000_000_000, conversation: 12, seq: 40)
        #expect(try Search.Cursor(token: c.token) == c)
        #expect(throws: IMError.self) { try Search.Cursor(token: "nope") }
    }
}
