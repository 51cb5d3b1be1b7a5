import Foundation
import IMCore
@testable import IMClient
import Testing

/// The SDK's fast paths (`send` written by hand, `ack` and plain `msg` read by hand) against Foundation's
/// `JSONEncoder`/`JSONDecoder` (`FrameCodec`), which stay the reference.
@Suite struct FastFrameTests {
    static let sends: [ClientFrame.Send] = [
        .init(cid: "c", conv: 7, text: "hello"),
        .init(cid: "ü/\"\\\n\r\t\u{08}\u{0C}\u{01}\u{1F}", conv: Int64.max, text: "emoji 🐦 and \u{2028} and </script>"),
        .init(cid: "c2", conv: -3, kind: .custom, data: .object(["z": .null, "a": .array([.number(1), .number(-2.5), .bool(false)]),
                                                                  "Zed": .string("x"), "é": .object(["k": .string("v")])])),
        .init(cid: "a", conv: 1, kind: .attachment, text: "caption", attachment: "att/1"),
        .init(cid: "q", conv: 1, text: "@bob see", replyTo: 5, mentions: [2, 30], mentionAll: true),
        .init(cid: "q2", conv: 1, text: "", replyTo: 0, mentions: [], mentionAll: false),
        .init(cid: "", conv: 0),
    ]

    @Test(arguments: sends) func sendMatchesJSONEncoderByteForByte(_ s: ClientFrame.Send) throws {
        let reference = FrameCodec.encode(ClientFrame.send(s))
        if s.data == nil {
            let fast = try #require(FastFrames.encode(.send(s)))
            #expect(fast == reference)
            #expect(try FrameCodec.decodeClient(fast).get() == .send(s))
        } else {
            #expect(FastFrames.encode(.send(s)) == nil, "data is left to JSONEncoder")
        }
        #expect(FastFrames.encode(.ping(.init(ref: "p"))) == nil)
    }

    /// Frames the reader takes, ones it hands to `JSONDecoder` (nested values, unknown keys, nulls, floats, duplicates),
    /// and malformed ones: `decodeServer` must give what `JSONDecoder` gives, or fail where it fails.
    static let texts: [String] = {
        var t = FastFrameTests.messages.map { FrameCodec.encode(.msg($0)) }
        t += [
            #"{"cid":"c1","conv":7,"duplicate":false,"seq":9,"ts":1,"type":"ack"}"#,
            #"  { "type" : "ack" , "cid" : "c\"1\\\/\u00e9\ud83d\udc26" , "conv" : -7 , "seq" : 0 , "ts" : -0 , "duplicate" : true }  "#,
            #"{"type":"ack","cid":"c1","conv":7,"seq":9,"ts":1,"duplicate":false,"node":"n2"}"#,
            #"{"type":"ack","cid":"c1","conv":7,"seq":9,"ts":1}"#,
            #"{"type":"ack","cid":"c1","conv":7,"seq":9,"ts":1,"duplicate":null}"#,
            #"{"type":"ack","cid":"c1","conv":7,"seq":9.5,"ts":1,"duplicate":false}"#,
            #"{"type":"ack","cid":"c1","conv":7,"seq":9e0,"ts":1,"duplicate":false}"#,
            #"{"type":"ack","cid":"c1","conv":07,"seq":9,"ts":1,"duplicate":false}"#,
            #"{"type":"ack","cid":"c1","conv":9223372036854775807,"seq":-9223372036854775808,"ts":1,"duplicate":false}"#,
            #"{"type":"ack","cid":"c1","conv":9223372036854775808,"seq":9,"ts":1,"duplicate":false}"#,
            #"{"type":"ack","cid":"c1","cid":"c2","conv":7,"seq":9,"ts":1,"duplicate":false}"#,
            #"{"type":"ack","cid":"c1","conv":7,"seq":9,"ts":1,"duplicate":false}x"#,
            #"{"type":"ack","cid":"c1","conv":7,"seq":9,"ts":1,"duplicate":false,}"#,
            #"{"type":"ack","cid":"c1","conv":7,"seq":9,"ts":1,"duplicate":fals}"#,
            #"{"type":"ack","cid":"c\ud83d","conv":7,"seq":9,"ts":1,"duplicate":false}"#,
            #"{"type":"ack","cid":"c\x","conv":7,"seq":9,"ts":1,"duplicate":false}"#,
            "{\"type\":\"ack\",\"cid\":\"c\u{01}\",\"conv\":7,\"seq\":9,\"ts\":1,\"duplicate\":false}",
            #"{"type":"ack","cid":"c1","conv":7,"seq":9,"ts":1,"duplicate":false,"text":"x","sender":2}"#,
            #"{"type":"msg","cid":"c1","conv":7,"seq":9,"ts":1,"sender":5,"kind":"text","text":"hi","duplicate":true}"#,
            #"{"type":"msg","cid":"c1","conv":7,"seq":9,"ts":1,"sender":5,"kind":"poem","text":"hi"}"#,
            #"{"type":"msg","cid":"c1","conv":7,"seq":9,"ts":1,"sender":5,"kind":"text","text":null}"#,
            #"{"type":"msg","cid":"c1","conv":7,"seq":9,"ts":1,"sender":5,"kind":"text","mentions":[ 1 , -2,3 ]}"#,
            #"{"type":"msg","cid":"c1","conv":7,"seq":9,"ts":1,"sender":5,"kind":"text","mentions":[1,]}"#,
            #"{"type":"msg","cid":"c1","conv":7,"seq":9,"ts":1,"kind":"text"}"#,
            #"{"type":"msg","cid":"c1","conv":7,"seq":9,"ts":1,"sender":5,"kind":"text","ttl":60,"labels":["x"]}"#,
            #"{"type":"ready","user":5,"session":"s1","serverTime":42}"#,
            #"{"type":"synced","cursors":{"1":2},"more":[]}"#,
            #"{"type":"error","code":"rate_limited","message":"slow","cid":"x","retryAfter":0.5}"#,
            #"{"type":"pong"}"#,
            #"{}"#, "", "[]", "{", #"{"type":"ack""#, "null",
        ]
        return t
    }()

    @Test(arguments: texts) func decodeServerAgreesWithJSONDecoder(_ text: String) {
        let reference = try? FrameCodec.decodeServer(text)
        if let fast = FastFrames.decode(text) {
            #expect(reference == fast, "\(text): JSONDecoder gave \(String(describing: reference))")
        }
    }

    @Test func hotFramesTakeTheFastPath() {
        let ack = ServerFrame.ack(.init(cid: "c\"1", conv: 3, seq: 4, ts: 5, duplicate: true))
        #expect(FastFrames.decode(FrameCodec.encode(ack)) == ack)
        let m = Message(conversation: 1, seq: 2, sender: 3, cid: "c", kind: .text, text: "héllo \"🐦\"\n", ts: 1_796_212_345_678,
                        replyTo: 1, mentions: [3], mentionAll: false)
        #expect(FastFrames.decode(FrameCodec.encode(.msg(m))) == .msg(m))
        #expect(FastFrames.decode(#"{"cid":"c1","conv":7,"duplicate":false,"seq":9,"ts":1,"type":"ack"}"#)
                == .ack(.init(cid: "c1", conv: 7, seq: 9, ts: 1, duplicate: false)))
        // Nested values, unknown keys and other frames go to JSONDecoder.
        #expect(FastFrames.decode(FrameCodec.encode(.msg(Self.messages[2]))) == nil)
        #expect(FastFrames.decode(#"{"type":"ack","cid":"c1","conv":7,"seq":9,"ts":1,"duplicate":false,"node":"n2"}"#) == nil)
        #expect(FastFrames.decode(#"{"type":"ready","user":5,"session":"s1","serverTime":42}"#) == nil)
    }

    /// The shapes a server writes (as `FastJSONTests` in IMCoreTests has them).
    static let messages: [Message] = [
        Message(conversation: 1, seq: 2, sender: 3, cid: "c", kind: .text, text: "hello", ts: 1_796_212_345_678),
        Message(conversation: 9_007_199_254_740_993, seq: Int64.max, sender: -1, cid: "ü/\"\\\n\r\t\u{08}\u{0C}\u{01}\u{1F}", kind: .text,
                text: "emoji 🐦 and \u{2028} and </script>", ts: 0),
        Message(conversation: 1, seq: 1, sender: 1, cid: "x", kind: .custom,
                data: .object(["z": .null, "a": .array([.number(1), .number(-2.5)]), "é": .object(["k": .string("v")])]), ts: 5),
        Message(conversation: 4, seq: 5, sender: 6, cid: "a", kind: .attachment, text: "caption",
                attachment: AttachmentRef(id: "id1", name: "plan \"v2\".pdf", contentType: "application/pdf", size: 123), ts: 7),
        Message(conversation: 4, seq: 6, sender: 6, cid: "r", kind: .recall, target: 5, ts: 8, editedAt: 9, recalled: true),
        Message(conversation: 4, seq: 7, sender: 6, cid: "q", kind: .text, text: "@bob see above", ts: 10, replyTo: 5,
                mentions: [2, 30], mentionAll: true, reactions: [Reaction(emoji: "👍", users: [2, 6])]),
        Message(conversation: 4, seq: 8, sender: Int64.min, cid: "e", kind: .edit, text: "", target: 7, ts: -11, mentions: []),
        Message(conversation: 4, seq: 9, sender: 6, cid: "f/1", kind: .text, text: "copied", ts: 12, editedAt: 13,
                forwardedFrom: ForwardedFrom(sender: 3, ts: 1_796_212_345_678)),
    ]
}

/// `ClientIDs.next()`, the default `cid` of every send: unique within the process (across tasks), valid for the
/// protocol, one random UUID as the prefix.
@Suite struct ClientIDTests {
    @Test func idsAreValidAndUniqueAcrossConcurrentTasks() async throws {
        let ids = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<8 { group.addTask { (0..<2_000).map { _ in ClientIDs.next() } } }
            var all: [String] = []
            for await chunk in group { all += chunk }
            return all
        }
        #expect(ids.count == 16_000)
        #expect(Set(ids).count == ids.count, "no id twice")
        for id in ids.prefix(50) + ids.suffix(50) {
            #expect(Validation.clientID(id) == nil, "\(id) is a valid cid")
            #expect(id.utf8.count <= 53)
        }
        // One random prefix per process: a UUID, then the counter.
        let prefix = try #require(ids.first.map { String($0.prefix(37)) })
        #expect(ids.allSatisfy { $0.hasPrefix(prefix) })
        #expect(UUID(uuidString: String(prefix.dropLast())) != nil)
    }
}
