import Foundation
import IMClient
import IMCore

/// What a soak run saw: every send accounted for, and the longest stretch the service was unreachable.
public struct SoakReport: Sendable, CustomStringConvertible {
    public var pairs: Int
    public var sent = 0
    public var acked = 0
    public var failed = 0
    public var delivered = 0
    /// Messages a receiver was shown more than once.
    public var duplicates = 0
    /// Acknowledged messages a receiver never saw.
    public var undelivered = 0
    /// Acknowledged messages missing from the server's history afterwards (or stored with another seq).
    public var lost = 0
    /// Messages a receiver was shown after one with a higher seq (new ones only; a duplicate is counted above).
    public var outOfOrder = 0
    /// The longest time between two consecutive acks on any sender (the service was not taking messages).
    public var longestAckGap = 0.0
    /// When the longest gap began (seconds since 1970, UTC): to find what happened then in the hosts' logs.
    public var longestAckGapStart: Double?
    /// The longest time a connection spent between `disconnected` and `connected` again.
    public var longestDisconnect = 0.0
    public var reconnects = 0
    public var seconds = 0.0

    public var ok: Bool { failed == 0 && duplicates == 0 && undelivered == 0 && lost == 0 && outOfOrder == 0 && acked == sent }

    public var description: String {
        String(format: "soak: pairs=%d sent=%d acked=%d failed=%d delivered=%d duplicates=%d undelivered=%d lost=%d out-of-order=%d reconnects=%d longest-ack-gap=%.2fs%@ longest-disconnect=%.2fs seconds=%.1f %@",
               pairs, sent, acked, failed, delivered, duplicates, undelivered, lost, outOfOrder, reconnects, longestAckGap,
               longestAckGapStart.map { " gap-at=" + Self.clock($0) } ?? "", longestDisconnect, seconds, ok ? "OK" : "PROBLEM")
    }

    /// `HH:MM:SS.mmm` UTC.
    static func clock(_ t: Double) -> String {
        let whole = Int(t.rounded(.down))
        let ms = Int(((t - Double(whole)) * 1000).rounded(.down))
        let day = whole % 86_400
        return String(format: "%02d:%02d:%02d.%03dZ", day / 3600, day % 3600 / 60, day % 60, ms)
    }
}

/// Pairs of users sending at a steady rate for a while, through whatever happens to the server meanwhile (an
/// upgrade, a restart); then counts every message on both sides and against the server's history.
public struct SoakRun: Sendable {
    public var baseURL: String
    public var pairs: Int
    public var seconds: Double
    public var ratePerSender: Double
    public var password: String
    public var prefix: String
    public var trustedCA: String?
    /// Creates the accounts through the admin API (see `LoadGenerator.admin`).
    public var admin: AdminAccounts?
    /// Time allowed after the run for outstanding sends to be acknowledged and delivered.
    public var settle: Double
    /// Where the receiving half of each pair connects (another cluster member); nil: `baseURL`.
    public var peerURL: String?

    public init(baseURL: String, pairs: Int, seconds: Double, ratePerSender: Double, password: String, prefix: String,
                trustedCA: String? = nil, admin: AdminAccounts? = nil, settle: Double = 60, peerURL: String? = nil) {
        self.baseURL = baseURL; self.pairs = max(1, pairs); self.seconds = seconds; self.ratePerSender = max(0.1, ratePerSender)
        self.password = password; self.prefix = prefix; self.trustedCA = trustedCA; self.admin = admin; self.settle = settle
        self.peerURL = peerURL
    }

    final class Tally: @unchecked Sendable {
        private let lock = NSLock()
        var acks: [String: Int64] = [:]          // cid → seq
        var ackTimes: [Double] = []
        var failed = 0
        var seen: [String: Int] = [:]            // cid → times shown to the receiver
        var lastSeq: Int64 = 0                    // the highest seq the receiver was shown
        var outOfOrder = 0
        var disconnectedAt: Double?
        var longestDisconnect = 0.0
        var reconnects = 0
        func with<T>(_ body: (Tally) -> T) -> T { lock.lock(); defer { lock.unlock() }; return body(self) }
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    public func run(progress: @Sendable (String) -> Void = { _ in }) async throws -> SoakReport {
        let gen = LoadGenerator(baseURL: baseURL, pairs: pairs, messagesPerSender: 0, window: 1, password: password, prefix: prefix,
                                trustedCA: trustedCA, admin: admin, peerURL: peerURL)
        struct Pair: Sendable { let a: IMClient; let b: IMClient; let sender: IMConnection; let receiver: IMConnection; let conv: ConversationID; let start: Int64 }
        var setup: [Pair] = []
        for i in 0..<pairs {
            let a = try await gen.account("\(prefix)-a\(i)")
            let b = try await gen.account("\(prefix)-b\(i)", receiving: true)
            guard let bID = await b.currentUser?.id else { throw IMError(.internal, "no user after login") }
            let conv = try await a.createDirectConversation(with: bID).id
            let last = try await a.conversation(conv).lastSeq
            // Reconnect promptly: this run measures how long the server is away, not the client's backoff.
            var config = IMConnection.Configuration(sendDeliveredReceipts: false)
            config.initialReconnectDelay = .milliseconds(100)
            config.maxReconnectDelay = .milliseconds(500)
            config.serverReconnectDelay = .milliseconds(100)
            config.maxSendAttempts = 1000
            let sender = a.makeConnection(cursorStore: InMemoryCursorStore([conv: last]), configuration: config)
            let receiver = b.makeConnection(cursorStore: InMemoryCursorStore([conv: last]), configuration: config)
            try await sender.connect()
            try await receiver.connect()
            setup.append(Pair(a: a, b: b, sender: sender, receiver: receiver, conv: conv, start: last))
        }
        let run = "\(prefix)-\(Int(Date().timeIntervalSince1970))"
        let tallies = setup.map { _ in Tally() }
        let started = Self.now()
        let interval = 1.0 / ratePerSender
        let perSender = Int((seconds * ratePerSender).rounded(.down))
        progress("soak: \(pairs) pairs, \(perSender) messages each at \(ratePerSender)/s")

        // Each task says whether it was the bound.
        await withTaskGroup(of: Bool.self) { group in
            for (p, t) in zip(setup, tallies) {
                // Receiver: counts what it is shown, and how long it was disconnected.
                group.addTask {
                    for await e in p.receiver.events {
                        switch e {
                        case .message(let m) where m.cid.hasPrefix(run):
                            let done = t.with { t -> Bool in
                                if t.seen[m.cid] == nil {
                                    if m.seq < t.lastSeq { t.outOfOrder += 1 }
                                    t.lastSeq = max(t.lastSeq, m.seq)
                                }
                                t.seen[m.cid, default: 0] += 1
                                return t.seen.count >= perSender
                            }
                            if done { return false }
                        case .connectionState(.disconnected):
                            t.with { if $0.disconnectedAt == nil { $0.disconnectedAt = Self.now() } }
                        case .connectionState(.connected):
                            t.with { t in
                                if let d = t.disconnectedAt { t.longestDisconnect = max(t.longestDisconnect, Self.now() - d); t.reconnects += 1 }
                                t.disconnectedAt = nil
                            }
                        default: break
                        }
                    }
                    return false
                }
                // Sender: one message every `interval`, each awaited in its own task (sends survive reconnects).
                group.addTask {
                    await withTaskGroup(of: Void.self) { sends in
                        for i in 0..<perSender {
                            let due = started + Double(i) * interval
                            let wait = due - Self.now()
                            if wait > 0 { try? await Task.sleep(for: .seconds(wait)) }
                            let cid = "\(run)-\(i)"
                            sends.addTask {
                                do {
                                    let ack = try await p.sender.send(conversation: p.conv, text: "soak \(i)", cid: cid)
                                    t.with { $0.acks[cid] = ack.seq; $0.ackTimes.append(Self.now()) }
                                } catch {
                                    t.with { $0.failed += 1 }
                                }
                            }
                        }
                    }
                    return false
                }
            }
            // Bounded: whatever has not arrived `settle` seconds after the last send is counted as missing.
            group.addTask { try? await Task.sleep(for: .seconds(seconds + settle)); return true }
            // Wait for the senders and receivers, or the bound, whichever first: a receiver still missing a
            // message, or a send still being retried, must not hold the run past it.
            while let wasBound = await group.next() {
                if wasBound { break }
                if tallies.allSatisfy({ t in t.with { $0.acks.count + $0.failed >= perSender && $0.seen.count >= $0.acks.count } }) { break }
            }
            group.cancelAll()
        }
        progress("soak: sending ended after \(String(format: "%.1f", Self.now() - started)) s; reading the server's history")
        var report = SoakReport(pairs: pairs)
        report.seconds = Self.now() - started
        for (p, t) in zip(setup, tallies) {
            let (acks, times, failed, seen, longest, reconnects) = t.with { ($0.acks, $0.ackTimes.sorted(), $0.failed, $0.seen, $0.longestDisconnect, $0.reconnects) }
            report.outOfOrder += t.with { $0.outOfOrder }
            report.sent += perSender
            report.acked += acks.count
            report.failed += failed
            report.delivered += seen.count
            report.duplicates += seen.values.filter { $0 > 1 }.count
            report.undelivered += acks.keys.filter { seen[$0] == nil }.count
            report.longestDisconnect = max(report.longestDisconnect, longest)
            report.reconnects += reconnects
            let wall = Date().timeIntervalSince1970 - Self.now()
            for (x, y) in zip(times, times.dropFirst()) where y - x > report.longestAckGap {
                report.longestAckGap = y - x
                report.longestAckGapStart = wall + x
            }
            // The server's history: every acknowledged message stored once, with its acknowledged seq.
            var stored: [String: [Int64]] = [:]
            var before: Int64?
            while true {
                let page = try await p.a.history(p.conv, before: before, limit: 200)
                for m in page.messages where m.cid.hasPrefix(run) { stored[m.cid, default: []].append(m.seq) }
                guard page.hasMore, let last = page.messages.last, last.seq > p.start else { break }
                before = last.seq
            }
            report.lost += acks.filter { stored[$0.key] != [$0.value] }.count
            report.duplicates += stored.values.filter { $0.count > 1 }.count
        }
        progress("soak: counted; closing the connections")
        // Bounded (and not a task group, which would wait for it): a connection whose server vanished mid-run must
        // not hold the report.
        let closed = LockedBox(false)
        Task {
            for p in setup {
                await p.sender.close(); await p.receiver.close()
                try? await p.a.shutdown(); try? await p.b.shutdown()
            }
            closed.withLock { $0 = true }
        }
        for _ in 0..<150 where !closed.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(100)) }
        if !closed.withLock({ $0 }) { progress("soak: some connections did not close within 15 s; leaving them") }
        return report
    }
}
