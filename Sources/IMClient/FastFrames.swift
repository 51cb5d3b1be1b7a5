import IMCore

/// The SDK's hot path without Foundation's `JSONEncoder`/`JSONDecoder` (their generic metadata lookups, dynamic
/// casts and allocations were a large part of what the SDK cost per message): `send` frames are written by hand,
/// `ack` and plain `msg` frames read by hand. Anything else goes through `FrameCodec` as before.
/// `FastFrameTests` (IMServerTests) checks both against `JSONEncoder`/`JSONDecoder`.
enum FastFrames {
    /// The frame's text when it is a `send` without `data` (the same bytes `FrameCodec.encode` writes), else nil.
    static func encode(_ frame: ClientFrame) -> String? {
        guard case .send(let s) = frame, s.data == nil else { return nil }
        return FastJSON.send(s)
    }

    /// The frame when it is one the reader takes, else nil (then `FrameCodec.decodeServer`).
    static func decode(_ text: String) -> ServerFrame? { FastFrameReader.serverFrame(text) }
}

/// Reads `ack` and `msg` frames exactly as `JSONDecoder` would, or answers nil: any frame of another type, any key it
/// does not know (a newer server's), a `null`, a nested value (`data`, `attachment`, `reactions`, `forwardedFrom`), a
/// key given twice, a number that is not a plain integer in `Int64`'s range, or anything malformed makes it answer
/// nil, and the caller decodes the text with `JSONDecoder` as before (which also gives the error).
struct FastFrameReader {
    private let b: UnsafeBufferPointer<UInt8>
    private var i = 0

    private init(_ bytes: UnsafeBufferPointer<UInt8>) { b = bytes }

    /// The frame in `text`, or nil when it is not one this reader takes (see the type's comment).
    static func serverFrame(_ text: String) -> ServerFrame? {
        var text = text
        return text.withUTF8 { bytes in
            var reader = FastFrameReader(bytes)
            return reader.frame()
        }
    }

    // Keys, as bits of `seen`.
    private static let kType = 1 << 0, kCid = 1 << 1, kConv = 1 << 2, kSeq = 1 << 3, kTs = 1 << 4, kDuplicate = 1 << 5,
                       kSender = 1 << 6, kKind = 1 << 7, kText = 1 << 8, kTarget = 1 << 9, kEditedAt = 1 << 10,
                       kRecalled = 1 << 11, kReplyTo = 1 << 12, kMentions = 1 << 13, kMentionAll = 1 << 14

    private mutating func frame() -> ServerFrame? {
        var seen = 0
        var type: String?, cid: String?, conv: Int64?, seq: Int64?, ts: Int64?, duplicate: Bool?, sender: Int64?
        var kind: MessageKind?, text: String?, target: Int64?, editedAt: Int64?, recalled: Bool?, replyTo: Int64?
        var mentions: [Int64]?, mentionAll: Bool?
        skipSpace()
        guard take(0x7B) else { return nil }   // {
        skipSpace()
        if !take(0x7D) {
            while true {
                skipSpace()
                guard let key = plainKey() else { return nil }
                skipSpace()
                guard take(0x3A) else { return nil }   // :
                skipSpace()
                let bit: Int
                switch key {
                case "type": bit = Self.kType; guard let v = string() else { return nil }; type = v
                case "cid": bit = Self.kCid; guard let v = string() else { return nil }; cid = v
                case "conv": bit = Self.kConv; guard let v = integer() else { return nil }; conv = v
                case "seq": bit = Self.kSeq; guard let v = integer() else { return nil }; seq = v
                case "ts": bit = Self.kTs; guard let v = integer() else { return nil }; ts = v
                case "duplicate": bit = Self.kDuplicate; guard let v = boolean() else { return nil }; duplicate = v
                case "sender": bit = Self.kSender; guard let v = integer() else { return nil }; sender = v
                case "kind":
                    bit = Self.kKind
                    guard let v = string(), let k = MessageKind(rawValue: v) else { return nil }
                    kind = k
                case "text": bit = Self.kText; guard let v = string() else { return nil }; text = v
                case "target": bit = Self.kTarget; guard let v = integer() else { return nil }; target = v
                case "editedAt": bit = Self.kEditedAt; guard let v = integer() else { return nil }; editedAt = v
                case "recalled": bit = Self.kRecalled; guard let v = boolean() else { return nil }; recalled = v
                case "replyTo": bit = Self.kReplyTo; guard let v = integer() else { return nil }; replyTo = v
                case "mentionAll": bit = Self.kMentionAll; guard let v = boolean() else { return nil }; mentionAll = v
                case "mentions":
                    bit = Self.kMentions
                    guard let v = integers() else { return nil }
                    mentions = v
                default: return nil
                }
                guard seen & bit == 0 else { return nil }
                seen |= bit
                skipSpace()
                if take(0x2C) { continue }   // ,
                guard take(0x7D) else { return nil }   // }
                break
            }
        }
        skipSpace()
        guard i == b.count else { return nil }
        switch type {
        case "ack":
            guard let cid, let conv, let seq, let ts, let duplicate else { return nil }
            return .ack(.init(cid: cid, conv: conv, seq: seq, ts: ts, duplicate: duplicate))
        case "msg":
            guard let conv, let seq, let sender, let cid, let kind, let ts else { return nil }
            return .msg(Message(conversation: conv, seq: seq, sender: sender, cid: cid, kind: kind, text: text, target: target,
                                ts: ts, editedAt: editedAt, recalled: recalled, replyTo: replyTo, mentions: mentions,
                                mentionAll: mentionAll))
        default:
            return nil
        }
    }

    // MARK: Tokens

    private mutating func skipSpace() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
    }

    private mutating func take(_ byte: UInt8) -> Bool {
        guard i < b.count, b[i] == byte else { return false }
        i += 1
        return true
    }

    /// A key without escapes (every key this reader knows is plain ASCII); nil for anything else.
    private mutating func plainKey() -> String? {
        guard take(0x22) else { return nil }
        let start = i
        while i < b.count, b[i] != 0x22 {
            guard b[i] != 0x5C, b[i] >= 0x20 else { return nil }
            i += 1
        }
        guard i < b.count else { return nil }
        let key = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)   // short: no allocation
        i += 1
        return key
    }

    /// A JSON string, unescaped; nil when malformed (a raw control character, a bad escape, a lone surrogate).
    private mutating func string() -> String? {
        guard take(0x22) else { return nil }
        let start = i
        while i < b.count {
            let c = b[i]
            if c == 0x22 {
                let s = String(decoding: UnsafeBufferPointer(rebasing: b[start..<i]), as: UTF8.self)
                i += 1
                return s
            }
            if c == 0x5C { break }
            guard c >= 0x20 else { return nil }
            i += 1
        }
        // Escapes: collect the bytes.
        var out = Array(UnsafeBufferPointer(rebasing: b[start..<i]))
        while i < b.count {
            let c = b[i]
            i += 1
            switch c {
            case 0x22:
                return String(decoding: out, as: UTF8.self)
            case 0x5C:
                guard i < b.count else { return nil }
                let e = b[i]
                i += 1
                switch e {
                case 0x22, 0x5C, 0x2F: out.append(e)
                case 0x62: out.append(0x08)
                case 0x66: out.append(0x0C)
                case 0x6E: out.append(0x0A)
                case 0x72: out.append(0x0D)
                case 0x74: out.append(0x09)
                case 0x75:
                    guard let u = hex4() else { return nil }
                    var scalar: UInt32 = u
                    if (0xD800...0xDBFF).contains(u) {
                        guard take(0x5C), take(0x75), let low = hex4(), (0xDC00...0xDFFF).contains(low) else { return nil }
                        scalar = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(u) {
                        return nil
                    }
                    guard let us = Unicode.Scalar(scalar) else { return nil }
                    out.append(contentsOf: UTF8.encode(us)!)
                default:
                    return nil
                }
            default:
                guard c >= 0x20 else { return nil }
                out.append(c)
            }
        }
        return nil
    }

    private mutating func hex4() -> UInt32? {
        guard i + 4 <= b.count else { return nil }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = b[i]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: return nil
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    /// A plain integer (`-?(0|[1-9][0-9]*)`) in Int64's range, not followed by a fraction or exponent.
    private mutating func integer() -> Int64? {
        let negative = take(0x2D)
        guard i < b.count, (0x30...0x39).contains(b[i]) else { return nil }
        if b[i] == 0x30, i + 1 < b.count, (0x30...0x39).contains(b[i + 1]) { return nil }   // leading zero
        var magnitude: UInt64 = 0
        while i < b.count, (0x30...0x39).contains(b[i]) {
            let (m, o1) = magnitude.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(UInt64(b[i] - 0x30))
            guard !o1, !o2 else { return nil }
            magnitude = s
            i += 1
        }
        if i < b.count, b[i] == 0x2E || b[i] == 0x65 || b[i] == 0x45 { return nil }   // . e E: leave it to JSONDecoder
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        guard magnitude <= UInt64(Int64.max) else { return nil }
        return Int64(magnitude)
    }

    private mutating func boolean() -> Bool? {
        if match("true") { return true }
        if match("false") { return false }
        return nil
    }

    private mutating func match(_ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard i + n <= b.count else { return false }
        let p = word.utf8Start
        for k in 0..<n where b[i + k] != p[k] { return false }
        i += n
        return true
    }

    /// `[int, …]`.
    private mutating func integers() -> [Int64]? {
        guard take(0x5B) else { return nil }
        var out: [Int64] = []
        skipSpace()
        if take(0x5D) { return out }
        while true {
            skipSpace()
            guard let v = integer() else { return nil }
            out.append(v)
            skipSpace()
            if take(0x2C) { continue }
            guard take(0x5D) else { return nil }
            return out
        }
    }
}
