import Foundation
import NIOCore

/// One SMTP reply: its three-digit code and the text of each line (multi-line replies joined by the decoder).
public struct SMTPReply: Sendable, Equatable, CustomStringConvertible {
    public var code: Int
    public var lines: [String]

    public init(code: Int, lines: [String]) {
        self.code = code
        self.lines = lines
    }

    public var isPositive: Bool { (200..<400).contains(code) }
    public var isPermanentFailure: Bool { (500..<600).contains(code) }

    /// `550 5.1.1 no such user` (multi-line text joined with " / ").
    public var description: String {
        let text = lines.filter { !$0.isEmpty }.joined(separator: " / ")
        return text.isEmpty ? "\(code)" : "\(code) \(text)"
    }

    /// The EHLO keywords (upper case) with their parameters: `AUTH` → ["PLAIN", "LOGIN"], `STARTTLS` → [].
    public var extensions: [String: [String]] {
        var result: [String: [String]] = [:]
        for line in lines.dropFirst() {
            var words = line.split(separator: " ").map(String.init)
            guard !words.isEmpty else { continue }
            var keyword = words.removeFirst().uppercased()
            // Old servers advertise `AUTH=LOGIN PLAIN`.
            if keyword.hasPrefix("AUTH=") {
                words.insert(String(keyword.dropFirst(5)), at: 0)
                keyword = "AUTH"
            }
            result[keyword, default: []].append(contentsOf: words.map { $0.uppercased() })
        }
        return result
    }
}

/// Splits the byte stream into replies. A reply is lines `NNN-text` ended by one `NNN text` (or a bare `NNN`).
struct SMTPReplyDecoder: ByteToMessageDecoder {
    typealias InboundOut = SMTPReply

    struct Malformed: Error, CustomStringConvertible {
        var line: String
        var description: String { "the server sent a line that is not an SMTP reply: '\(line.prefix(120))'" }
    }

    static let maxLine = 4096
    private var pending: [String] = []
    private var pendingCode: Int?

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let lf = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > Self.maxLine { throw Malformed(line: String(buffer: buffer)) }
            return .needMoreData
        }
        let length = lf - buffer.readerIndex
        var line = buffer.readString(length: length) ?? ""
        buffer.moveReaderIndex(forwardBy: 1)
        if line.hasSuffix("\r") { line.removeLast() }
        if let reply = try Self.feed(line, pending: &pending, pendingCode: &pendingCode) {
            context.fireChannelRead(Self.wrapInboundOut(reply))
        }
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }

    /// Adds one line; returns the reply it completes, if it does.
    static func feed(_ line: String, pending: inout [String], pendingCode: inout Int?) throws -> SMTPReply? {
        let bytes = Array(line.utf8)
        guard bytes.count >= 3, bytes[0..<3].allSatisfy({ $0 >= 48 && $0 <= 57 }),
              bytes.count == 3 || bytes[3] == UInt8(ascii: " ") || bytes[3] == UInt8(ascii: "-"),
              let code = Int(String(decoding: bytes[0..<3], as: UTF8.self)) else {
            throw Malformed(line: line)
        }
        if let pendingCode, pendingCode != code { throw Malformed(line: line) }
        let text = bytes.count > 4 ? String(decoding: bytes[4...], as: UTF8.self) : ""
        pending.append(text)
        if bytes.count > 3, bytes[3] == UInt8(ascii: "-") {
            pendingCode = code
            return nil
        }
        let reply = SMTPReply(code: code, lines: pending)
        pending = []
        pendingCode = nil
        return reply
    }
}

/// How to log in, chosen from what the server's EHLO offers: PLAIN when it can, else LOGIN.
public enum SMTPAuthMechanism: String, Sendable, Equatable {
    case plain = "PLAIN"
    case login = "LOGIN"

    public static func choose(offered: [String]) -> SMTPAuthMechanism? {
        let set = Set(offered.map { $0.uppercased() })
        if set.contains("PLAIN") { return .plain }
        if set.contains("LOGIN") { return .login }
        return nil
    }
}

/// The mail itself: RFC 5322 headers, a UTF-8 text body in quoted-printable, CRLF line ends.
public enum MailMessage {
    /// Builds the message text (headers and body, CRLF line ends, not yet dot-stuffed).
    public static func render(from: String, to: [String], subject: String, body: String, date: Date,
                              messageID: String) -> String {
        var headers = [
            "Date: \(rfc5322Date(date))",
            "From: \(from)",
            "To: \(to.joined(separator: ", "))",
            "Subject: \(encodeHeader(subject))",
            "Message-ID: <\(messageID)>",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=UTF-8",
            "Content-Transfer-Encoding: quoted-printable",
            "Auto-Submitted: auto-generated",
            "X-Mailer: warbler-alertd",
        ]
        headers.append("")
        return headers.joined(separator: "\r\n") + "\r\n" + quotedPrintable(body)
    }

    /// A unique id, `<random>@<the sender's domain>`.
    public static func makeMessageID(from: String) -> String {
        let domain = from.split(separator: "@").last.map(String.init) ?? "warbler.invalid"
        return "\(UUID().uuidString.lowercased())@\(domain)"
    }

    /// `Sun, 29 Nov 2026 18:10:15 +0000`, in English whatever the locale.
    public static func rfc5322Date(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&t, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        return String(format: "%@, %02d %@ %04d %02d:%02d:%02d +0000",
                      days[Int(parts.tm_wday)], Int(parts.tm_mday), months[Int(parts.tm_mon)],
                      Int(parts.tm_year) + 1900, Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec))
    }

    /// The text as is when it is printable ASCII; otherwise RFC 2047 encoded-words (`=?UTF-8?B?…?=`, each at most
    /// 75 characters, never splitting a character), folded onto continuation lines.
    public static func encodeHeader(_ text: String) -> String {
        let clean = text.replacingOccurrences(of: "\r", with: " ").replacingOccurrences(of: "\n", with: " ")
        if clean.utf8.allSatisfy({ $0 >= 32 && $0 < 127 }) { return clean }
        // 75 - "=?UTF-8?B?".count - "?=".count = 63 base64 characters, so at most 45 bytes per word.
        var words: [String] = []
        var chunk: [UInt8] = []
        for ch in clean {
            let bytes = Array(String(ch).utf8)
            if chunk.count + bytes.count > 45 {
                words.append("=?UTF-8?B?\(Data(chunk).base64EncodedString())?=")
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty { words.append("=?UTF-8?B?\(Data(chunk).base64EncodedString())?=") }
        return words.joined(separator: "\r\n ")
    }

    /// RFC 2045 quoted-printable of UTF-8 text; line breaks become CRLF, lines are soft-broken at 76 characters.
    public static func quotedPrintable(_ text: String) -> String {
        let normalized = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        var out: [String] = []
        for line in normalized.split(separator: "\n", omittingEmptySubsequences: false) {
            let bytes = Array(line.utf8)
            var encoded = ""
            var width = 0
            for (i, b) in bytes.enumerated() {
                let last = i == bytes.count - 1
                let token: String
                if (b == 32 || b == 9) && last {
                    token = String(format: "=%02X", b)
                } else if (b >= 33 && b <= 126 && b != 61) || b == 32 || b == 9 {
                    token = String(UnicodeScalar(b))
                } else {
                    token = String(format: "=%02X", b)
                }
                // Leave room for the soft break's "=" unless this is the line's last token.
                let room = last ? 76 : 75
                if width + token.count > room {
                    encoded += "=\r\n"
                    width = 0
                }
                encoded += token
                width += token.count
            }
            out.append(encoded)
        }
        if out.last == "" { out.removeLast() }
        return out.joined(separator: "\r\n") + "\r\n"
    }

    /// The DATA payload: every line that starts with "." gets another (RFC 5321 4.5.2), ends in CRLF "." CRLF.
    public static func dotStuffed(_ message: String) -> String {
        var text = message.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        if !text.hasSuffix("\n") { text += "\n" }
        let lines = text.dropLast().split(separator: "\n", omittingEmptySubsequences: false)
        let stuffed = lines.map { $0.hasPrefix(".") ? "." + $0 : String($0) }
        return stuffed.joined(separator: "\r\n") + "\r\n.\r\n"
    }
}
