import Foundation
import IMCore
import Testing

/// During a rolling upgrade clients meet servers one release apart: a frame from a newer release carries fields
/// the older one does not know, and the older one must read the rest as it always did.
@Suite struct MixedVersionFrameTests {
    @Test func aClientFrameWithAnUnknownFieldDecodesAsWithout() throws {
        let plain = #"{"type":"send","cid":"c1","conv":7,"kind":"text","text":"hi","replyTo":3}"#
        let newer = #"{"type":"send","cid":"c1","conv":7,"kind":"text","text":"hi","replyTo":3,"expiresIn":60,"future":{"a":[1,2]}}"#
        let a = try FrameCodec.decodeClient(plain).get()
        let b = try FrameCodec.decodeClient(newer).get()
        #expect(a == b)
        #expect(try FrameCodec.decodeClient(#"{"type":"ping","ref":"r","trace":"t-1"}"#).get() == .ping(.init(ref: "r")))
    }

    @Test func aServerFrameWithAnUnknownFieldDecodesAsWithout() throws {
        let message = Message(conversation: 7, seq: 9, sender: 5, cid: "c1", kind: .text, text: "hi", ts: 1_733_000_000_000)
        // The fast encoder's text, as a server sends it, with a field a newer server might add.
        var text = FrameCodec.encode(.msg(message))
        #expect(text.hasSuffix("}"))
        text.removeLast()
        text += #","ttl":60,"labels":["x"]}"#
        #expect(try FrameCodec.decodeServer(text) == .msg(message))
        let ack = #"{"type":"ack","cid":"c1","conv":7,"seq":9,"ts":1,"duplicate":false,"node":"n2"}"#
        #expect(try FrameCodec.decodeServer(ack) == .ack(.init(cid: "c1", conv: 7, seq: 9, ts: 1, duplicate: false)))
    }

    /// `ready` as it was before `exp` (commit 2508469's parent): what an older client decodes.
    struct ReadyBeforeExp: Decodable, Equatable { var user: UserID; var session: String; var serverTime: Int64 }
    /// `send` as it was before replies and mentions (commit fdd848d's parent): what an older server decodes.
    struct SendBeforeReplies: Decodable, Equatable {
        var cid: String; var conv: ConversationID; var kind: MessageKind; var text: String?; var data: JSONValue?; var attachment: String?
    }

    /// Encoded by this release, decoded with the shapes an earlier release had: the fields it knew come through.
    @Test func thisReleasesFramesDecodeWithAnEarlierReleasesShapes() throws {
        let ready = FrameCodec.encode(ServerFrame.ready(.init(user: 5, session: "s1", serverTime: 42, exp: 1_800_000_000)))
        #expect(ready.contains(#""exp":1800000000"#))
        #expect(try JSONDecoder().decode(ReadyBeforeExp.self, from: Data(ready.utf8)) == ReadyBeforeExp(user: 5, session: "s1", serverTime: 42))

        let send = FrameCodec.encode(ClientFrame.send(.init(cid: "c1", conv: 7, text: "hi @bob", replyTo: 3, mentions: [6], mentionAll: false)))
        #expect(send.contains(#""mentions":[6]"#))
        #expect(try JSONDecoder().decode(SendBeforeReplies.self, from: Data(send.utf8))
                == SendBeforeReplies(cid: "c1", conv: 7, kind: .text, text: "hi @bob", data: nil, attachment: nil))

        // And the other way: an earlier release's frames, without the later fields, decode here.
        #expect(try FrameCodec.decodeServer(#"{"type":"ready","user":5,"session":"s1","serverTime":42}"#)
                == .ready(.init(user: 5, session: "s1", serverTime: 42, exp: nil)))
        #expect(try FrameCodec.decodeClient(#"{"type":"send","cid":"c1","conv":7,"kind":"text","text":"hi"}"#).get()
                == .send(.init(cid: "c1", conv: 7, text: "hi")))
    }
}
