import IMCore

/// What one node tells the others on the cluster's PostgreSQL NOTIFY channel. Pure values and their text form;
/// sending and listening are `ClusterService`'s.
///
/// One notice per payload, fields separated by single spaces, the sender's node id second:
/// - `a NODE C:F-L …` messages F through L of conversation C were committed (a doorbell, sent after the commit)
/// - `m NODE C …` the members of these conversations changed
/// - `b NODE U …` these users' block lists changed
/// - `s NODE U SID REASON…` the sessions of user U ended: all of them when SID is `*`, else that login session
/// - `r NODE C U KIND SEQ` user U's `read` or `delivered` cursor in conversation C advanced to SEQ (already stored)
/// - `t NODE C U 1|0` user U started (1) or stopped (0) typing in conversation C (ephemeral: never stored)
/// - `p NODE U online|offline [LASTSEEN]` user U came online on NODE, or is now offline on every node
/// - `d NODE U C` user U saved or deleted the draft of conversation C (already stored; its text may be too long for
///   a notice, so the other nodes read it)
///
/// Across one release of difference (a rolling upgrade), a newer release may add fields as `name=value` anywhere
/// after NODE (in `s` only before U, since the reason runs to the end); an older node skips fields of that shape,
/// and ignores a kind it does not know. A field that changes what an older node must do needs a new kind.
enum ClusterNotice: Sendable, Hashable {
    case appended([ConversationID: ClosedRange<Int64>])
    case membersChanged([ConversationID])
    case blocksChanged([UserID])
    case sessionsEnded(user: UserID, sid: String?, reason: String)
    case receipt(ServerFrame.Receipt)
    case typing(ServerFrame.Typing)
    case presence(ServerFrame.Presence)
    case draft(user: UserID, conv: ConversationID)

    /// PostgreSQL refuses payloads of 8000 bytes or more; stay clear of it.
    static let maxPayloadBytes = 7_900

    static func isNodeID(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 64 && s.unicodeScalars.allSatisfy(ServerConfig.isNodeIDScalar)
    }

    /// The seq ranges of a committed batch, per conversation.
    static func ranges(of messages: [Message]) -> [ConversationID: ClosedRange<Int64>] {
        var out: [ConversationID: ClosedRange<Int64>] = [:]
        for m in messages {
            if let r = out[m.conversation] {
                out[m.conversation] = min(r.lowerBound, m.seq)...max(r.upperBound, m.seq)
            } else {
                out[m.conversation] = m.seq...m.seq
            }
        }
        return out
    }

    // MARK: Encoding

    /// The payloads for this notice from `node`, each under `maxPayloadBytes` (long lists go in several).
    func payloads(from node: String, limit: Int = ClusterNotice.maxPayloadBytes) -> [String] {
        switch self {
        case .appended(let ranges):
            return Self.pack("a \(node)", ranges.keys.sorted().map { c in
                let r = ranges[c]!
                return "\(c):\(r.lowerBound)-\(r.upperBound)"
            }, limit: limit)
        case .membersChanged(let convs):
            return Self.pack("m \(node)", Set(convs).sorted().map(String.init), limit: limit)
        case .blocksChanged(let users):
            return Self.pack("b \(node)", Set(users).sorted().map(String.init), limit: limit)
        case .sessionsEnded(let user, let sid, let reason):
            let head = "s \(node) \(user) \(sid ?? "*")"
            // Reasons are the server's own short sentences; cut one that would not fit rather than lose the notice.
            var text = head + " " + reason.replacingOccurrences(of: "\n", with: " ")
            while text.utf8.count > limit { text.removeLast() }
            return [text]
        case .receipt(let r):
            return ["r \(node) \(r.conv) \(r.user) \(r.kind.rawValue) \(r.seq)"]
        case .typing(let t):
            return ["t \(node) \(t.conv) \(t.user) \(t.active ? 1 : 0)"]
        case .presence(let p):
            return ["p \(node) \(p.user) \(p.status.rawValue)" + (p.lastSeen.map { " \($0)" } ?? "")]
        case .draft(let user, let conv):
            return ["d \(node) \(user) \(conv)"]
        }
    }

    private static func pack(_ head: String, _ items: [String], limit: Int) -> [String] {
        var out: [String] = []
        var current = head
        for item in items {
            if current != head, current.utf8.count + 1 + item.utf8.count > limit {
                out.append(current)
                current = head
            }
            current += " " + item
        }
        if current != head { out.append(current) }
        return out
    }

    // MARK: Decoding

    /// Reads a payload; nil when it is not one of ours (or is malformed), which the listener ignores.
    static func decode(_ payload: String) -> (node: String, notice: ClusterNotice)? {
        let parts = payload.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count >= 3, isNodeID(String(parts[1])) else { return nil }
        let node = String(parts[1])
        // Mixed versions: a field a newer release adds is `name=value`, and a node skips those it does not know.
        // In `s`, whose reason runs to the end of the line, they come before the user.
        var fields = parts.dropFirst(2)
        if parts[0] == "s" {
            while let f = fields.first, isExtension(f) { fields = fields.dropFirst() }
        } else {
            fields = ArraySlice(fields.filter { !isExtension($0) })
        }
        guard !fields.isEmpty else { return nil }
        switch parts[0] {
        case "a":
            var ranges: [ConversationID: ClosedRange<Int64>] = [:]
            for f in fields {
                let cs = f.split(separator: ":")
                guard cs.count == 2, let c = ConversationID(cs[0]) else { return nil }
                let bounds = cs[1].split(separator: "-")
                guard bounds.count == 2, let lo = Int64(bounds[0]), let hi = Int64(bounds[1]), lo >= 1, lo <= hi else { return nil }
                ranges[c] = ranges[c].map { min($0.lowerBound, lo)...max($0.upperBound, hi) } ?? lo...hi
            }
            return (node, .appended(ranges))
        case "m":
            let ids = fields.compactMap { ConversationID($0) }
            guard ids.count == fields.count else { return nil }
            return (node, .membersChanged(ids))
        case "b":
            let ids = fields.compactMap { UserID($0) }
            guard ids.count == fields.count else { return nil }
            return (node, .blocksChanged(ids))
        case "s":
            guard fields.count >= 2, let user = UserID(fields[fields.startIndex]) else { return nil }
            let sid = String(fields[fields.startIndex + 1])
            let reason = fields.dropFirst(2).joined(separator: " ")
            return (node, .sessionsEnded(user: user, sid: sid == "*" ? nil : sid, reason: reason))
        case "r":
            let f = Array(fields)
            guard f.count == 4, let c = ConversationID(f[0]), let u = UserID(f[1]), let kind = ReceiptKind(rawValue: String(f[2])),
                  let seq = Int64(f[3]), seq >= 0 else { return nil }
            return (node, .receipt(.init(conv: c, user: u, kind: kind, seq: seq)))
        case "t":
            let f = Array(fields)
            guard f.count == 3, let c = ConversationID(f[0]), let u = UserID(f[1]), f[2] == "1" || f[2] == "0" else { return nil }
            return (node, .typing(.init(conv: c, user: u, active: f[2] == "1")))
        case "p":
            let f = Array(fields)
            guard f.count == 2 || f.count == 3, let u = UserID(f[0]), let status = PresenceStatus(rawValue: String(f[1])) else { return nil }
            var lastSeen: Int64?
            if f.count == 3 {
                guard let t = Int64(f[2]) else { return nil }
                lastSeen = t
            }
            return (node, .presence(.init(user: u, status: status, lastSeen: lastSeen)))
        case "d":
            let f = Array(fields)
            guard f.count == 2, let u = UserID(f[0]), let c = ConversationID(f[1]) else { return nil }
            return (node, .draft(user: u, conv: c))
        default:
            return nil
        }
    }

    /// `name=value` with a name of lower-case letters, digits, `-` and `_`: a field from a newer release.
    static func isExtension(_ field: Substring) -> Bool {
        guard let eq = field.firstIndex(of: "="), eq != field.startIndex else { return false }
        return field[..<eq].unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" }
    }

    // MARK: Coalescing

    /// Merges neighbouring doorbells (queued while a send was in flight) into one; keeps every other notice, and
    /// the order between kinds, as it was.
    static func coalesce(_ notices: [ClusterNotice]) -> [ClusterNotice] {
        var out: [ClusterNotice] = []
        for n in notices {
            if case .appended(let new) = n, case .appended(var merged)? = out.last {
                for (c, r) in new {
                    merged[c] = merged[c].map { min($0.lowerBound, r.lowerBound)...max($0.upperBound, r.upperBound) } ?? r
                }
                out[out.count - 1] = .appended(merged)
            } else {
                out.append(n)
            }
        }
        return out
    }
}
