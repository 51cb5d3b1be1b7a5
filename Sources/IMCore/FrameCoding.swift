import Foundation

private enum TypeKey: String, CodingKey { case type }

extension ClientFrame: Codable {
    public var type: String {
        switch self {
        case .auth: "auth"
        case .sync: "sync"
        case .send: "send"
        case .receipt: "receipt"
        case .typing: "typing"
        case .recall: "recall"
        case .edit: "edit"
        case .react: "react"
        case .ping: "ping"
        }
    }

    public init(from decoder: any Decoder) throws {
        let type = try decoder.container(keyedBy: TypeKey.self).decode(String.self, forKey: .type)
        switch type {
        case "auth": self = .auth(try Auth(from: decoder))
        case "sync": self = .sync(try Sync(from: decoder))
        case "send": self = .send(try Send(from: decoder))
        case "receipt": self = .receipt(try ReceiptUpdate(from: decoder))
        case "typing": self = .typing(try TypingUpdate(from: decoder))
        case "recall": self = .recall(try Recall(from: decoder))
        case "edit": self = .edit(try Edit(from: decoder))
        case "react": self = .react(try React(from: decoder))
        case "ping": self = .ping(try Ping(from: decoder))
        default: throw FrameDecodingError.unknownType(type)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: TypeKey.self)
        try c.encode(type, forKey: .type)
        switch self {
        case .auth(let v): try v.encode(to: encoder)
        case .sync(let v): try v.encode(to: encoder)
        case .send(let v): try v.encode(to: encoder)
        case .receipt(let v): try v.encode(to: encoder)
        case .typing(let v): try v.encode(to: encoder)
        case .recall(let v): try v.encode(to: encoder)
        case .edit(let v): try v.encode(to: encoder)
        case .react(let v): try v.encode(to: encoder)
        case .ping(let v): try v.encode(to: encoder)
        }
    }
}

extension ServerFrame: Codable {
    public var type: String {
        switch self {
        case .ready: "ready"
        case .ack: "ack"
        case .msg: "msg"
        case .synced: "synced"
        case .receipt: "receipt"
        case .typing: "typing"
        case .presence: "presence"
        case .error: "error"
        case .reconnect: "reconnect"
        case .pong: "pong"
        case .draft: "draft"
        }
    }

    public init(from decoder: any Decoder) throws {
        let type = try decoder.container(keyedBy: TypeKey.self).decode(String.self, forKey: .type)
        switch type {
        case "ready": self = .ready(try Ready(from: decoder))
        case "ack": self = .ack(try Ack(from: decoder))
        case "msg": self = .msg(try Message(from: decoder))
        case "synced": self = .synced(try Synced(from: decoder))
        case "receipt": self = .receipt(try Receipt(from: decoder))
        case "typing": self = .typing(try Typing(from: decoder))
        case "presence": self = .presence(try Presence(from: decoder))
        case "error": self = .error(try ErrorFrame(from: decoder))
        case "reconnect": self = .reconnect(try Reconnect(from: decoder))
        case "pong": self = .pong(try ClientFrame.Ping(from: decoder))
        case "draft": self = .draft(try Draft(from: decoder))
        default: throw FrameDecodingError.unknownType(type)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: TypeKey.self)
        try c.encode(type, forKey: .type)
        switch self {
        case .ready(let v): try v.encode(to: encoder)
        case .ack(let v): try v.encode(to: encoder)
        case .msg(let v): try v.encode(to: encoder)
        case .synced(let v): try v.encode(to: encoder)
        case .receipt(let v): try v.encode(to: encoder)
        case .typing(let v): try v.encode(to: encoder)
        case .presence(let v): try v.encode(to: encoder)
        case .error(let v): try v.encode(to: encoder)
        case .reconnect(let v): try v.encode(to: encoder)
        case .pong(let v): try v.encode(to: encoder)
        case .draft(let v): try v.encode(to: encoder)
        }
    }
}

/// Why a frame could not be decoded.
public enum FrameDecodingError: Error, Sendable, Equatable {
    case unknownType(String)
}

/// A client frame that could not be decoded: the error to answer with and the `cid` to answer it under.
public struct ClientFrameDecodingFailure: Error, Sendable, Hashable {
    public var error: IMError
    public var cid: String?
    public init(error: IMError, cid: String?) { self.error = error; self.cid = cid }
}

/// Encodes and decodes frames as compact JSON.
public enum FrameCodec {
    public static func encode(_ frame: ServerFrame) -> String {
        switch frame {
        case .msg(let m): FastJSON.msg(m)
        case .ack(let a): FastJSON.ack(a)
        default: encodeJSON(frame)
        }
    }

    /// The same text as `encode`, always through `JSONEncoder` (the reference the fast path is tested against).
    public static func encodeWithJSONEncoder(_ frame: ServerFrame) -> String { encodeJSON(frame) }
    public static func encode(_ frame: ClientFrame) -> String { encodeJSON(frame) }

    static func encodeJSON<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding our own frame types cannot fail: they hold only strings, numbers and finite JSON.
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// Decodes a client frame, mapping failures to the error the server answers with.
    public static func decodeClient(_ text: String) -> Result<ClientFrame, IMError> {
        decodeClientFrame(text).mapError(\.error)
    }

    /// Decodes a client frame; a failure carries the error to answer with and, when the frame is a send, recall
    /// or edit whose `cid` can be read, that `cid` (every such frame is answered with its `cid`).
    public static func decodeClientFrame(_ text: String) -> Result<ClientFrame, ClientFrameDecodingFailure> {
        do {
            return .success(try JSONDecoder().decode(ClientFrame.self, from: Data(text.utf8)))
        } catch {
            let fields = TopLevelFields(text)
            let type = fields?.string("type")
            let cid = ["send", "recall", "edit", "react"].contains(type ?? "") ? fields?.string("cid") : nil
            return .failure(ClientFrameDecodingFailure(error: describe(error, fields: fields), cid: cid))
        }
    }

    /// The `cid` of a send, recall or edit frame, read without decoding the rest (for frames refused before
    /// decoding, such as oversized ones).
    public static func clientID(in text: String) -> String? {
        guard let fields = TopLevelFields(text), ["send", "recall", "edit", "react"].contains(fields.string("type") ?? "") else { return nil }
        return fields.string("cid")
    }

    static func describe(_ error: any Error, fields: TopLevelFields?) -> IMError {
        func path(_ ctx: DecodingError.Context) -> String { ctx.codingPath.map(\.stringValue).joined(separator: ".") }
        switch error {
        case FrameDecodingError.unknownType(let t):
            return IMError(.unknownType, "unknown frame type '\(t.prefix(40))'")
        case DecodingError.keyNotFound(let key, _):
            return IMError(.badFrame, "missing field '\(key.stringValue)'")
        case DecodingError.typeMismatch(_, let ctx) where !ctx.codingPath.isEmpty:
            return IMError(.badFrame, "wrong type at '\(path(ctx))'")
        case DecodingError.valueNotFound(_, let ctx) where !ctx.codingPath.isEmpty:
            return IMError(.badFrame, "null at '\(path(ctx))'")
        case DecodingError.dataCorrupted(let ctx) where ctx.codingPath.last?.stringValue == "kind":
            let given = fields?.string("kind").map { " '\($0.prefix(40))'" } ?? ""
            return IMError(.invalid, "unknown kind\(given) at '\(path(ctx))'")
        case DecodingError.dataCorrupted(let ctx) where !ctx.codingPath.isEmpty:
            return IMError(.badFrame, "invalid value at '\(path(ctx))'")
        default:
            // The decoder could not say where (a number that is not an integer, a lone UTF-16 surrogate):
            // find the field ourselves.
            if let fields, let (name, why) = fields.firstBadField() { return IMError(.badFrame, "\(why) at '\(name)'") }
            return IMError(.badFrame, "frame is not a JSON object with a 'type'")
        }
    }
    public static func decodeServer(_ text: String) throws -> ServerFrame {
        try JSONDecoder().decode(ServerFrame.self, from: Data(text.utf8))
    }
}
