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
        }
    }
}

/// Why a frame could not be decoded.
public enum FrameDecodingError: Error, Sendable, Equatable {
    case unknownType(String)
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
        do {
            return .success(try JSONDecoder().decode(ClientFrame.self, from: Data(text.utf8)))
        } catch FrameDecodingError.unknownType(let t) {
            return .failure(IMError(.unknownType, "unknown frame type '\(t.prefix(40))'"))
        } catch let DecodingError.keyNotFound(key, _) {
            return .failure(IMError(.badFrame, "missing field '\(key.stringValue)'"))
        } catch let DecodingError.typeMismatch(_, ctx) {
            return .failure(IMError(.badFrame, "wrong type at '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))'"))
        } catch let DecodingError.valueNotFound(_, ctx) {
            return .failure(IMError(.badFrame, "null at '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))'"))
        } catch let DecodingError.dataCorrupted(ctx) where !ctx.codingPath.isEmpty {
            return .failure(IMError(.badFrame, "invalid value at '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))'"))
        } catch {
            return .failure(IMError(.badFrame, "frame is not a JSON object with a 'type'"))
        }
    }

    public static func decodeServer(_ text: String) throws -> ServerFrame {
        try JSONDecoder().decode(ServerFrame.self, from: Data(text.utf8))
    }
}
