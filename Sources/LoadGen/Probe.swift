import Crypto
import Foundation
import IMClient
import IMCore

/// What `warbler probe` found.
public struct ProbeReport: Sendable, CustomStringConvertible {
    public var members: Int
    public var urls: Int
    public var groupMessages: Int
    public var attachmentBytes: Int
    public var resumed: Int
    /// Everything that went wrong; empty when the install delivered everything once, in order.
    public var problems: [String]
    public var ok: Bool { problems.isEmpty }

    public var description: String {
        var s = "group of \(members) over \(urls) address(es): \(groupMessages) messages each reached every other member once, in order; "
        s += "a \(attachmentBytes)-byte attachment read back identical by every member; "
        s += "a member moved to another address resumed \(resumed) missed messages once, in order"
        return problems.isEmpty ? s : "PROBLEMS:\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
    }
}

/// An end-to-end check of a live install, as a company's users would exercise it: a group whose members are
/// spread over the given addresses (one node, or several members of a cluster), everyone sending at once; an
/// attachment uploaded through one address and read back through the others; and a member that drops and comes
/// back through another address, resuming from the last message it showed. Every message must reach every
/// other member exactly once and in order (by seq, and by each sender's own order).
public struct DeliveryProbe: Sendable {
    public var urls: [String]
    public var members: Int
    public var messagesPerMember: Int
    public var attachmentBytes: Int
    public var password: String
    public var prefix: String
    public var trustedCA: String?
    public var admin: AdminAccounts?
    /// How long to wait for deliveries before calling what is missing lost.
    public var timeout: Double

    public init(urls: [String], members: Int = 4, messagesPerMember: Int = 25, attachmentBytes: Int = 600_000, password: String,
                prefix: String, trustedCA: String? = nil, admin: AdminAccounts? = nil, timeout: Double = 60) {
        self.urls = urls; self.members = max(2, members); self.messagesPerMember = max(1, messagesPerMember)
        self.attachmentBytes = max(1, attachmentBytes); self.password = password; self.prefix = prefix
        self.trustedCA = trustedCA; self.admin = admin; self.timeout = timeout
    }

    /// One member's view: the messages its connection showed in the group.
    final class Seen: @unchecked Sendable {
        private let lock = NSLock()
        private var messages: [Message] = []
        func add(_ m: Message) { lock.lock(); messages.append(m); lock.unlock() }
        var all: [Message] { lock.lock(); defer { lock.unlock() }; return messages }
    }

    struct Member: Sendable {
        let name: String
        let url: String
        let client: IMClient
        let id: UserID
    }

    func login(_ name: String, url: String) async throws -> Member {
        let client = try IMClient(baseURL: url, trustedCACertificatePath: trustedCA, deviceName: "probe")
        if let admin {
            try await admin.ensure(name, password: password, baseURL: urls[0], trustedCA: trustedCA)
            _ = try await client.login(username: name, password: password)
        } else {
            do {
                _ = try await client.register(username: name, password: password)
            } catch let e as IMError where e.code == .conflict {
                _ = try await client.login(username: name, password: password)
            } catch let e as IMError where e.code == .registrationClosed {
                throw IMError(.registrationClosed, "registration is closed on this server: pass --admin NAME --admin-password-file FILE so the probe creates its accounts")
            }
        }
        guard let id = await client.currentUser?.id else { throw IMError(.internal, "no user after login") }
        return Member(name: name, url: url, client: client, id: id)
    }

    /// Starts a connection for `member` at `cursor` that records what it shows of `group`.
    func listen(_ member: Member, group: ConversationID, cursor: Int64, into seen: Seen) async throws -> (IMConnection, Task<Void, Never>) {
        let conn = member.client.makeConnection(cursorStore: InMemoryCursorStore([group: cursor]),
                                                configuration: IMConnection.Configuration(sendDeliveredReceipts: false))
        try await conn.connect()
        let task = Task {
            for await e in conn.events {
                if case .message(let m) = e, m.conversation == group { seen.add(m) }
            }
        }
        return (conn, task)
    }

    func waitFor(_ seen: Seen, count: Int, where include: @escaping @Sendable (Message) -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if seen.all.filter(include).count >= count { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return false
    }

    /// Problems in what `who` saw of the texts tagged `tag` (`tag:sender:k`): each expected (sender, k) once, seqs
    /// rising, each sender's k rising.
    static func check(_ who: String, _ messages: [Message], tag: String, expected: Set<String>) -> [String] {
        var problems: [String] = []
        let tagged = messages.filter { $0.text?.hasPrefix(tag + ":") == true }
        let seqs = tagged.map(\.seq)
        if seqs != seqs.sorted() || Set(seqs).count != seqs.count { problems.append("\(who) saw messages out of order or twice (seqs \(seqs.prefix(20))…)") }
        let keys = tagged.compactMap { $0.text.map { String($0.dropFirst(tag.count + 1)) } }
        if Set(keys).count != keys.count { problems.append("\(who) saw \(keys.count - Set(keys).count) message(s) twice") }
        let missing = expected.subtracting(keys)
        if !missing.isEmpty { problems.append("\(who) never got \(missing.count) message(s), e.g. \(missing.sorted().prefix(3))") }
        var lastK: [String: Int] = [:]
        for key in keys {
            let parts = key.split(separator: ":")
            guard parts.count == 2, let k = Int(parts[1]) else { continue }
            if let prev = lastK[String(parts[0])], k <= prev { problems.append("\(who) saw \(parts[0])'s message \(k) after \(prev)"); break }
            lastK[String(parts[0])] = k
        }
        return problems
    }

    public func run(progress: @Sendable (String) -> Void = { _ in }) async throws -> ProbeReport {
        guard !urls.isEmpty else { throw IMError.invalid("give at least one address to probe") }
        let runTag = "\(prefix)-\(Int(Date().timeIntervalSince1970) % 1_000_000)"
        var problems: [String] = []

        // 1. Members spread over the addresses, one group.
        var team: [Member] = []
        for i in 0..<members { team.append(try await login("\(prefix)-m\(i)", url: urls[i % urls.count])) }
        let group = try await team[0].client.createGroup(name: "probe \(runTag)", members: team.dropFirst().map(\.id)).id
        let start = try await team[0].client.conversation(group).lastSeq
        var seen: [Seen] = []
        var conns: [(IMConnection, Task<Void, Never>)] = []
        for m in team {
            let s = Seen()
            seen.append(s)
            conns.append(try await listen(m, group: group, cursor: start, into: s))
        }
        progress("\(members) members connected over \(urls.count) address(es); group \(group)")

        // 2. Everyone sends at once.
        let tag = runTag + "-g", n = messagesPerMember
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for (i, (conn, _)) in conns.enumerated() {
                let name = team[i].name
                tasks.addTask { for k in 0..<n { _ = try await conn.send(conversation: group, text: "\(tag):\(name):\(k)") } }
            }
            try await tasks.waitForAll()
        }
        for (i, m) in team.enumerated() {
            let others = Set(team.filter { $0.name != m.name }.flatMap { o in (0..<n).map { "\(o.name):\($0)" } })
            let mine = m.name
            _ = await waitFor(seen[i], count: (members - 1) * n) { $0.text?.hasPrefix(tag + ":") == true && $0.sender != m.id }
            let fromOthers = seen[i].all.filter { $0.sender != m.id }
            problems += Self.check("\(mine) (on \(m.url))", fromOthers, tag: tag, expected: others)
        }
        progress("group messages checked")

        // 3. An attachment through one address, read back through every member's own.
        var bytes = [UInt8](repeating: 0, count: attachmentBytes)
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
        let digest = Data(SHA256.hash(data: bytes))
        let ref = try await team[0].client.uploadAttachment(to: group, name: "probe-\(runTag).bin", contentType: "application/octet-stream",
                                                            data: Data(bytes))
        _ = try await conns[0].0.send(conversation: group, attachment: ref, caption: tag + "-file")
        for (i, m) in team.enumerated().dropFirst() {
            let got = await waitFor(seen[i], count: 1) { $0.attachment?.id == ref.id }
            if !got { problems.append("\(m.name) (on \(m.url)) never got the attachment message"); continue }
            do {
                let d = try await m.client.downloadAttachment(ref.id)
                if Data(SHA256.hash(data: d.data)) != digest {
                    problems.append("\(m.name) (on \(m.url)) read back \(d.data.count) bytes that differ from the \(bytes.count) sent")
                }
            } catch {
                problems.append("\(m.name) (on \(m.url)) could not download the attachment: \(error)")
            }
        }
        progress("attachment checked")

        // 4. Member 1 drops; messages go on; it comes back through another address from the last message it showed.
        let mover = team[1]
        let shown = seen[1].all.map(\.seq).max() ?? start
        await conns[1].0.close()
        conns[1].1.cancel()
        let missed = 20, tag2 = runTag + "-r"
        for k in 0..<missed { _ = try await conns[0].0.send(conversation: group, text: "\(tag2):\(team[0].name):\(k)") }
        let elsewhere = urls[(urls.firstIndex(of: mover.url).map { $0 + 1 } ?? 0) % urls.count]
        let moved = try await login(mover.name, url: elsewhere)
        let resumedSeen = Seen()
        let (conn2, task2) = try await listen(moved, group: group, cursor: shown, into: resumedSeen)
        _ = await waitFor(resumedSeen, count: missed) { $0.text?.hasPrefix(tag2 + ":") == true }
        try? await Task.sleep(for: .milliseconds(300))   // time for a duplicate to show, were there one
        let after = resumedSeen.all
        if after.contains(where: { $0.seq <= shown }) { problems.append("\(mover.name) was sent messages it had already shown (at or before seq \(shown))") }
        problems += Self.check("\(mover.name) (back on \(elsewhere))", after, tag: tag2, expected: Set((0..<missed).map { "\(team[0].name):\($0)" }))
        progress("resume on another address checked")

        await conn2.close(); task2.cancel()
        for (i, (c, t)) in conns.enumerated() where i != 1 { await c.close(); t.cancel() }
        return ProbeReport(members: members, urls: urls.count, groupMessages: members * n, attachmentBytes: attachmentBytes,
                           resumed: after.filter { $0.text?.hasPrefix(tag2 + ":") == true }.count, problems: problems)
    }
}
