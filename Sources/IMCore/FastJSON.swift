/// A hand-written JSON writer for the frames on the hot path (`msg`, `ack`). Foundation's `JSONEncoder` spends
/// most of its time in generic metadata lookups and dynamic casts; this writes the same text (sorted keys,
/// unescaped slashes) directly. `FrameCodingTests` checks it against `JSONEncoder` byte for byte; the SDK writes
/// its `send` frames with it too (`FastFrameTests`).
public struct FastJSON {
    var out: [UInt8] = []

    public init(capacity: Int = 256) { out.reserveCapacity(capacity) }

    public var string: String { String(decoding: out, as: UTF8.self) }

    public mutating func raw(_ s: StaticString) {
        s.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    public mutating func int(_ v: Int64) {
        if v < 0 { out.append(0x2D) }
        var n = v.magnitude
        var digits: (UInt64, UInt64) = (0, 0)   // up to 20 digits, written backwards without allocating
        var count = 0
        repeat {
            let d = UInt64(n % 10)
            if count < 16 { digits.0 |= d << (4 * UInt64(count)) } else { digits.1 |= d << (4 * UInt64(count - 16)) }
            n /= 10
            count += 1
        } while n > 0
        for k in stride(from: count - 1, through: 0, by: -1) {
            let d = k < 16 ? (digits.0 >> (4 * UInt64(k))) & 0xF : (digits.1 >> (4 * UInt64(k - 16))) & 0xF
            out.append(UInt8(0x30 + d))
        }
    }

    mutating func bool(_ b: Bool) { b ? raw("true") : raw("false") }

    mutating func double(_ d: Double) {
        if d.rounded() == d && abs(d) < 9_007_199_254_740_992 { int(Int64(d)); return }
        out.append(contentsOf: Array("\(d)".utf8))
    }

    public mutating func string(_ s: String) {
        out.append(0x22)
        for b in s.utf8 {
            switch b {
            case 0x22: out.append(0x5C); out.append(0x22)
            case 0x5C: out.append(0x5C); out.append(0x5C)
            case 0x0A: out.append(0x5C); out.append(0x6E)
            case 0x0D: out.append(0x5C); out.append(0x72)
            case 0x09: out.append(0x5C); out.append(0x74)
            case 0x08: out.append(0x5C); out.append(0x62)
            case 0x0C: out.append(0x5C); out.append(0x66)
            case 0..<0x20:
                let hex: StaticString = "0123456789abcdef"
                out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hex.utf8Start[Int(b >> 4)], hex.utf8Start[Int(b & 0xF)]])
            default: out.append(b)
            }
        }
        out.append(0x22)
    }

    mutating func value(_ v: JSONValue) {
        switch v {
        case .null: raw("null")
        case .bool(let b): bool(b)
        case .number(let d): double(d)
        case .string(let s): string(s)
        case .array(let a):
            out.append(0x5B)
            for (i, e) in a.enumerated() {
                if i > 0 { out.append(0x2C) }
                value(e)
            }
            out.append(0x5D)
        case .object(let o):
            out.append(0x7B)
            // JSONEncoder's .sortedKeys orders keys by their UTF-8 bytes; so do we.
            for (i, k) in o.keys.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }).enumerated() {
                if i > 0 { out.append(0x2C) }
                string(k)
                out.append(0x3A)
                value(o[k]!)
            }
            out.append(0x7D)
        }
    }

    /// A `msg` frame: keys in sorted order, absent optionals omitted, exactly as `JSONEncoder` writes it.
    /// A `send` frame (without `data`), as `JSONEncoder` with sorted keys and unescaped slashes writes it.
    public static func send(_ s: ClientFrame.Send) -> String {
        var w = FastJSON(capacity: 112 + (s.text?.utf8.count ?? 0))
        w.raw("{")
        if let a = s.attachment { w.raw("\"attachment\":"); w.string(a); w.raw(",") }
        w.raw("\"cid\":"); w.string(s.cid)
        w.raw(",\"conv\":"); w.int(s.conv)
        w.raw(",\"kind\":"); w.string(s.kind.rawValue)
        if let a = s.mentionAll { w.raw(a ? ",\"mentionAll\":true" : ",\"mentionAll\":false") }
        if let ms = s.mentions {
            w.raw(",\"mentions\":[")
            for (i, u) in ms.enumerated() { if i > 0 { w.raw(",") }; w.int(u) }
            w.raw("]")
        }
        if let r = s.replyTo { w.raw(",\"replyTo\":"); w.int(r) }
        if let t = s.text { w.raw(",\"text\":"); w.string(t) }
        w.raw(",\"type\":\"send\"}")
        return w.string
    }

    static func msg(_ m: Message) -> String {
        var w = FastJSON()
        w.raw("{")
        if let a = m.attachment {
            w.raw("\"attachment\":{\"contentType\":"); w.string(a.contentType)
            w.raw(",\"id\":"); w.string(a.id)
            w.raw(",\"name\":"); w.string(a.name)
            w.raw(",\"size\":"); w.int(a.size)
            w.raw("},")
        }
        w.raw("\"cid\":"); w.string(m.cid)
        w.raw(",\"conv\":"); w.int(m.conversation)
        if let d = m.data { w.raw(",\"data\":"); w.value(d) }
        if let e = m.editedAt { w.raw(",\"editedAt\":"); w.int(e) }
        if let f = m.forwardedFrom { w.raw(",\"forwardedFrom\":{\"sender\":"); w.int(f.sender); w.raw(",\"ts\":"); w.int(f.ts); w.raw("}") }
        w.raw(",\"kind\":"); w.string(m.kind.rawValue)
        if let a = m.mentionAll { w.raw(",\"mentionAll\":"); w.bool(a) }
        if let ms = m.mentions {
            w.raw(",\"mentions\":[")
            for (i, u) in ms.enumerated() { if i > 0 { w.raw(",") }; w.int(u) }
            w.raw("]")
        }
        if let rs = m.reactions {
            w.raw(",\"reactions\":[")
            for (i, r) in rs.enumerated() {
                if i > 0 { w.raw(",") }
                w.raw("{\"emoji\":"); w.string(r.emoji); w.raw(",\"users\":[")
                for (j, u) in r.users.enumerated() { if j > 0 { w.raw(",") }; w.int(u) }
                w.raw("]}")
            }
            w.raw("]")
        }
        if let r = m.recalled { w.raw(",\"recalled\":"); w.bool(r) }
        if let r = m.replyTo { w.raw(",\"replyTo\":"); w.int(r) }
        w.raw(",\"sender\":"); w.int(m.sender)
        w.raw(",\"seq\":"); w.int(m.seq)
        if let t = m.target { w.raw(",\"target\":"); w.int(t) }
        if let t = m.text { w.raw(",\"text\":"); w.string(t) }
        w.raw(",\"ts\":"); w.int(m.ts)
        w.raw(",\"type\":\"msg\"}")
        return w.string
    }

    static func ack(_ a: ServerFrame.Ack) -> String {
        var w = FastJSON(capacity: 96)
        w.raw("{\"cid\":"); w.string(a.cid)
        w.raw(",\"conv\":"); w.int(a.conv)
        w.raw(",\"duplicate\":"); w.bool(a.duplicate)
        w.raw(",\"seq\":"); w.int(a.seq)
        w.raw(",\"ts\":"); w.int(a.ts)
        w.raw(",\"type\":\"ack\"}")
        return w.string
    }
}
