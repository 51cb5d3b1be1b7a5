import Foundation
import IMClient
import IMCore

/// Figures from one load run.
public struct LoadReport: Sendable, CustomStringConvertible {
    public var pairs: Int
    public var sent: Int
    public var acked: Int
    public var delivered: Int
    public var errors: Int
    /// Messages delivered more than once (the same `cid` twice at a receiver).
    public var duplicates: Int = 0
    public var seconds: Double
    public var ackLatency: Percentiles
    public var deliverLatency: Percentiles
    /// CPU seconds (user + system) this load generator's process used while it sent: with `delivered`, what each
    /// message cost the generator itself, so a saturated generator is visible beside the server's figures.
    public var generatorCPUSeconds: Double = 0

    public var sendsPerSecond: Double { seconds > 0 ? Double(acked) / seconds : 0 }
    /// Sent messages no receiver got.
    public var lost: Int { max(0, sent - (delivered - duplicates)) }
    /// Every message acknowledged and delivered exactly once.
    public var ok: Bool { sent == acked && acked == delivered && lost == 0 && duplicates == 0 && errors == 0 }
    /// Generator CPU per delivered message, in microseconds.
    public var generatorMicrosPerMessage: Double { delivered > 0 ? generatorCPUSeconds / Double(delivered) * 1e6 : 0 }

    public var description: String {
        """
        pairs=\(pairs) sent=\(sent) acked=\(acked) delivered=\(delivered) errors=\(errors) lost=\(lost) duplicates=\(duplicates) seconds=\(String(format: "%.2f", seconds))
        durable messages/s: \(String(format: "%.0f", sendsPerSecond))
        send->ack ms:     \(ackLatency)
        send->deliver ms: \(deliverLatency)
        load generator CPU: \(String(format: "%.0f", generatorMicrosPerMessage)) µs per delivered message (\(String(format: "%.0f", seconds > 0 ? generatorCPUSeconds / seconds * 100 : 0)) % of one core)
        \(ok ? "correct: sent = acked = delivered, lost 0, duplicates 0" : "NOT CORRECT: some messages were lost, failed or delivered twice")
        """
    }
}

/// Latency percentiles in milliseconds.
public struct Percentiles: Sendable, CustomStringConvertible {
    public var p50 = 0.0, p90 = 0.0, p99 = 0.0, max = 0.0
    public var count = 0

    public init(_ samples: [Double]) {
        guard !samples.isEmpty else { return }
        let s = samples.sorted()
        func at(_ q: Double) -> Double { s[Swift.min(s.count - 1, Int((Double(s.count) * q).rounded(.down)))] }
        p50 = at(0.5); p90 = at(0.9); p99 = at(0.99); max = s.last!; count = s.count
    }

    public var description: String {
        String(format: "p50=%.2f p90=%.2f p99=%.2f max=%.2f (n=%d)", p50, p90, p99, max, count)
    }
}

/// Pairs of users on live WebSocket connections; one of each pair sends to the other with a window of
/// sends in flight. Measures durable sends per second, send→ack and send→deliver latency.
public struct LoadGenerator: Sendable {
    public var baseURL: String
    public var pairs: Int
    public var messagesPerSender: Int
    public var window: Int
    public var password: String
    public var prefix: String
    /// A CA certificate (PEM) to trust for https/wss, such as an install's /etc/warbler/tls/ca.crt.
    public var trustedCA: String?
    /// An admin account that creates the benchmark accounts through the admin API, for a server whose registration
    /// is closed (`auth.registration: admin`, the installer's default) or limited per address.
    public var admin: AdminAccounts?
    /// Where the receiving half of each pair connects (another cluster member); nil: `baseURL`.
    public var peerURL: String?

    public init(baseURL: String, pairs: Int, messagesPerSender: Int, window: Int, password: String, prefix: String,
                trustedCA: String? = nil, admin: AdminAccounts? = nil, peerURL: String? = nil) {
        self.baseURL = baseURL; self.pairs = pairs; self.messagesPerSender = messagesPerSender
        self.window = max(1, window); self.password = password; self.prefix = prefix; self.trustedCA = trustedCA
        self.admin = admin; self.peerURL = peerURL
    }

    static func nanos() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// User + system CPU time of this process so far, in seconds.
    static func processCPUSeconds() -> Double {
        var usage = rusage()
        #if os(Linux)
        let who = __rusage_who_t(RUSAGE_SELF.rawValue)
        #else
        let who = RUSAGE_SELF
        #endif
        guard getrusage(who, &usage) == 0 else { return 0 }
        func s(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return s(usage.ru_utime) + s(usage.ru_stime)
    }

    func account(_ name: String, receiving: Bool = false) async throws -> IMClient {
        let client = try IMClient(baseURL: receiving ? (peerURL ?? baseURL) : baseURL, trustedCACertificatePath: trustedCA, deviceName: "bench")
        if let admin {
            try await admin.ensure(name, password: password, baseURL: baseURL, trustedCA: trustedCA)
            _ = try await client.login(username: name, password: password)
            return client
        }
        do {
            _ = try await client.register(username: name, password: password)
        } catch let e as IMError where e.code == .conflict {
            _ = try await client.login(username: name, password: password)
        } catch let e as IMError where e.code == .registrationClosed {
            throw IMError(.registrationClosed, "registration is closed on this server: pass --admin NAME --admin-password-file FILE "
                          + "(an install's first admin is in /etc/warbler/secrets/admin-password) so the benchmark creates its accounts")
        }
        return client
    }

    struct Pair: Sendable {
        let sender: IMConnection
        let receiver: IMConnection
        let conversation: ConversationID
        let clients: [IMClient]
    }

    public func run() async throws -> LoadReport {
        // Set up every pair first: logins cost a bcrypt each and are not what is measured.
        var setup: [Pair] = []
        let runTag = String(Int(Date().timeIntervalSince1970) % 1_000_000)
        for i in 0..<pairs {
            let a = try await account("\(prefix)-a\(i)")
            let b = try await account("\(prefix)-b\(i)", receiving: true)
            guard let bID = await b.currentUser?.id else { throw IMError(.internal, "no user after login") }
            let conv = try await a.createDirectConversation(with: bID).id
            let last = try await a.conversation(conv).lastSeq
            let quiet = IMConnection.Configuration(sendDeliveredReceipts: false)
            // Start both ends at the conversation's current end: earlier runs' messages are not part of this one.
            let sender = a.makeConnection(cursorStore: InMemoryCursorStore([conv: last]), configuration: quiet)
            let receiver = b.makeConnection(cursorStore: InMemoryCursorStore([conv: last]), configuration: quiet)
            try await sender.connect()
            try await receiver.connect()
            setup.append(Pair(sender: sender, receiver: receiver, conversation: conv, clients: [a, b]))
        }
        let pairsReady = setup
        let tag = "\(prefix)-\(runTag)"
        let n = messagesPerSender
        let w = window

        let started = Self.nanos()
        let cpuStarted = Self.processCPUSeconds()
        let results = await withTaskGroup(of: (acks: [Double], delivers: [Double], errors: Int, duplicates: Int).self) { group in
            for p in pairsReady {
                // Receiver: collect send→deliver latency from the timestamp in each text.
                group.addTask {
                    // Bounded: a receiver that stops hearing gives up after two minutes and reports what it got.
                    let collected = LatencyBox()
                    let marker = tag + ":"
                    let markerBytes = marker.utf8.count
                    await withTaskGroup(of: Void.self) { race in
                        race.addTask {
                            for await e in p.receiver.events {
                                if case .message(let m) = e, let t = m.text, t.hasPrefix(marker),
                                   let sentAt = UInt64(Substring(t.utf8.dropFirst(markerBytes))) {
                                    if collected.append(Double(Self.nanos() - sentAt) / 1e6, cid: m.cid) >= n { return }
                                }
                            }
                        }
                        race.addTask { try? await Task.sleep(for: .seconds(120)) }
                        await race.next()
                        race.cancelAll()
                    }
                    return ([], collected.values, 0, collected.duplicates)
                }
                // Sender: keep `window` sends in flight, as `window` tasks each sending one message after the
                // other (a task per send cost the generator a task's creation and teardown per message).
                group.addTask {
                    let quota = SendQuota(n)
                    return await withTaskGroup(of: (acks: [Double], errors: Int).self) { workers in
                        for _ in 0..<Swift.min(w, n) {
                            workers.addTask {
                                var acks: [Double] = []
                                var errors = 0
                                acks.reserveCapacity(n / w + 1)
                                while quota.take() {
                                    let t0 = Self.nanos()
                                    do {
                                        _ = try await p.sender.send(conversation: p.conversation, text: "\(tag):\(t0)")
                                        acks.append(Double(Self.nanos() - t0) / 1e6)
                                    } catch {
                                        errors += 1
                                    }
                                }
                                return (acks, errors)
                            }
                        }
                        var acks: [Double] = []
                        var errors = 0
                        acks.reserveCapacity(n)
                        for await r in workers { acks += r.acks; errors += r.errors }
                        return (acks, [], errors, 0)
                    }
                }
            }
            var acks: [Double] = [], delivers: [Double] = [], errors = 0, duplicates = 0
            for await r in group { acks += r.acks; delivers += r.delivers; errors += r.errors; duplicates += r.duplicates }
            return (acks, delivers, errors, duplicates)
        }
        let seconds = Double(Self.nanos() - started) / 1e9
        let cpu = Self.processCPUSeconds() - cpuStarted
        for p in pairsReady {
            await p.sender.close()
            await p.receiver.close()
            for c in p.clients { try? await c.shutdown() }
        }
        return LoadReport(pairs: pairs, sent: pairs * n, acked: results.0.count, delivered: results.1.count, errors: results.2,
                          duplicates: results.3, seconds: seconds, ackLatency: Percentiles(results.0), deliverLatency: Percentiles(results.1),
                          generatorCPUSeconds: cpu)
    }
}

/// How many sends of one sender are left to start, shared by its window's tasks.
final class SendQuota: @unchecked Sendable {
    private let lock = NSLock()
    private var left: Int
    init(_ count: Int) { left = count }
    /// Whether one more send may start (and counts it).
    func take() -> Bool { lock.lock(); defer { lock.unlock() }; guard left > 0 else { return false }; left -= 1; return true }
}

/// Samples appended from one task and read after it ends; counts a `cid` seen twice as a duplicate delivery.
final class LatencyBox: @unchecked Sendable {
    private let lock = NSLock()
    private var samples: [Double] = []
    private var cids: Set<String> = []
    private var twice = 0
    /// Adds a delivery; returns how many distinct messages have arrived.
    func append(_ v: Double, cid: String) -> Int {
        lock.lock(); defer { lock.unlock() }
        samples.append(v)
        if !cids.insert(cid).inserted { twice += 1 }
        return cids.count
    }
    var values: [Double] { lock.lock(); defer { lock.unlock() }; return samples }
    var duplicates: Int { lock.lock(); defer { lock.unlock() }; return twice }
}

/// Creates benchmark accounts through the admin API, logging the admin in once.
public actor AdminAccounts {
    let username: String
    let password: String
    private var client: IMClient?

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    /// The admin from the command line: its name and a file holding its password (nil when neither is given).
    public static func from(username: String?, passwordFile: String?) throws -> AdminAccounts? {
        guard let username, let passwordFile else { return nil }
        guard let text = try? String(contentsOfFile: passwordFile, encoding: .utf8) else {
            throw IMError.invalid("cannot read \(passwordFile); check the path and that this user may read it (it is root's)")
        }
        return AdminAccounts(username: username, password: text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Makes sure `name` exists with `password` (an account left by an earlier run is kept as it is).
    func ensure(_ name: String, password userPassword: String, baseURL: String, trustedCA: String?) async throws {
        let admin: IMClient
        if let client { admin = client } else {
            admin = try IMClient(baseURL: baseURL, trustedCACertificatePath: trustedCA, deviceName: "bench-admin")
            _ = try await admin.login(username: username, password: password)
            client = admin
        }
        do {
            _ = try await admin.adminCreateUser(username: name, password: userPassword)
        } catch let e as IMError where e.code == .conflict {}
    }
}
