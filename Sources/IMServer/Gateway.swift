import Foundation
import HummingbirdWebSocket
import IMCore
import IMStorage
import Logging
import NIOWebSocket

/// Runs one WebSocket connection: authentication, the inbound frame loop, and the ordered outbound writer.
struct Gateway: Sendable {
    let service: IMService
    let tokens: TokenService
    let metrics: ServerMetrics
    let config: ServerConfig
    var hub: Hub { service.hub }
    var storage: any Storage { service.storage }

    /// Messages larger than the configured frame limit (up to this multiple of it) get an error frame and the
    /// connection lives on; beyond it the connection is closed with 1009.
    static let hardLimitFactor = 4

    func handle(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, logger: Logger) async {
        var messages = inbound.messages(maxSize: config.limits.frameBytes * Self.hardLimitFactor).makeAsyncIterator()
        let authTimer = Task {
            try await Task.sleep(for: .seconds(10))
            try? await outbound.close(.policyViolation, reason: "authenticate within 10 seconds")
        }
        defer { authTimer.cancel() }

        // 1. The first frame must be `auth`.
        let claims: AccessClaims
        do {
            guard let first = try await messages.next() else { return }
            guard case .text(let text) = first, case .success(.auth(let auth)) = FrameCodec.decodeClient(text) else {
                await closeWith(outbound, IMError(.notAuthenticated, "the first frame must be {\"type\":\"auth\",\"token\":ACCESS_TOKEN}"))
                return
            }
            switch tokens.verifyAccess(auth.token, now: nowMillis()) {
            case .success(let c): claims = c
            case .failure(let e): await closeWith(outbound, e); return
            }
            guard let user = try await storage.user(id: claims.sub), !user.disabled else {
                await closeWith(outbound, IMError(.unauthorized, "this account is disabled"))
                return
            }
        } catch {
            return
        }
        authTimer.cancel()

        let session = Session(user: claims.sub)
        guard hub.register(session) else {
            try? await outbound.writeTextMessage(FrameCodec.encode(.reconnect(.init(reason: "server is restarting"))))
            try? await outbound.close(.goingAway, reason: "server is restarting")
            return
        }
        let log = logger.with("im.user", "\(claims.sub)").with("im.conn", session.id)
        log.debug("connected")
        session.enqueue(.frame(.ready(.init(user: claims.sub, session: session.id, serverTime: nowMillis()))))

        // 2. Writer and reader run side by side; when either ends, the connection ends.
        // (The writer closing the socket ends the reader's stream too.)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.writer(session: session, outbound: outbound, logger: log) }
            await self.reader(session: session, messages: &messages, logger: log)
            session.finish()
            group.cancelAll()
        }
        hub.unregister(session)
        try? await outbound.close(.normalClosure, reason: nil)
        log.debug("disconnected")
    }

    private func closeWith(_ outbound: WebSocketOutboundWriter, _ e: IMError) async {
        metrics.errors.increment()
        try? await outbound.writeTextMessage(FrameCodec.encode(.error(.init(code: e.code, message: e.message))))
        try? await outbound.close(.policyViolation, reason: e.code.rawValue)
    }

    // MARK: Reader

    private func reader(session: Session, messages: inout WebSocketInboundMessageStream.AsyncIterator, logger: Logger) async {
        var bucket = TokenBucket(rate: config.limits.sendsPerSecond, burst: config.limits.sendBurst)
        await withDiscardingTaskGroup { acks in
            while true {
                let next: WebSocketMessage?
                do { next = try await messages.next() } catch { logger.debug("read ended: \(error)"); return }
                guard let next else { return }
                guard case .text(let text) = next else {
                    fail(session, IMError(.badFrame, "frames must be JSON text, not binary"))
                    continue
                }
                guard text.utf8.count <= config.limits.frameBytes else {
                    fail(session, IMError(.tooLarge, "frame is \(text.utf8.count) bytes; the limit is \(config.limits.frameBytes)"))
                    continue
                }
                let frame: ClientFrame
                switch FrameCodec.decodeClient(text) {
                case .success(let f): frame = f
                case .failure(let e): fail(session, e); continue
                }
                do {
                    try await handle(frame, session: session, bucket: &bucket, acks: &acks, logger: logger)
                } catch let e as IMError {
                    fail(session, e, cid: frame.cid)
                } catch {
                    logger.error("frame failed: \(error)")
                    fail(session, IMError(.internal, "internal error; retry"), cid: frame.cid)
                }
            }
        }
    }

    private func fail(_ session: Session, _ e: IMError, cid: String? = nil, retryAfter: Double? = nil) {
        metrics.errors.increment()
        session.enqueue(.frame(.error(.init(code: e.code, message: e.message, cid: cid, retryAfter: retryAfter))))
    }

    private func handle(_ frame: ClientFrame, session: Session, bucket: inout TokenBucket, acks: inout DiscardingTaskGroup, logger: Logger) async throws {
        let user = session.user
        switch frame {
        case .auth:
            throw IMError.invalid("already authenticated")
        case .ping(let p):
            session.enqueue(.frame(.pong(p)))
        case .sync(let s):
            session.enqueue(.sync(s))
        case .send, .recall, .edit:
            if let wait = bucket.take() {
                metrics.errors.increment()
                let wait2 = (wait * 1000).rounded(.up) / 1000
                session.enqueue(.frame(.error(.init(code: .rateLimited, message: "more than \(Int(config.limits.sendsPerSecond)) sends per second; slow down",
                                                    cid: frame.cid, retryAfter: wait2))))
                return
            }
            let arrival = ContinuousClock.now
            let message: NewMessage
            switch frame {
            case .send(let f): message = try await service.prepare(f, from: user)
            case .recall(let f): message = try await service.prepareRecall(f, from: user)
            case .edit(let f): message = try await service.prepareEdit(f, from: user)
            default: return
            }
            hub.noteArrival(sender: user, cid: message.cid, at: arrival)
            // Submitting here, in frame order, keeps one connection's sends in order; the ack waits in a child task.
            let ticket = await storage.submit(message)
            acks.addTask {
                let frame: ServerFrame
                do {
                    switch try await ticket.result() {
                    case .success(let r):
                        frame = .ack(.init(cid: message.cid, conv: r.message.conversation, seq: r.message.seq, ts: r.message.ts, duplicate: r.duplicate))
                        if r.duplicate {
                            metrics.sendDuplicates.increment()
                            _ = hub.takeArrival(sender: user, cid: message.cid)
                        } else {
                            metrics.recordSend()
                        }
                        metrics.sendToAck.record(arrival.duration(to: .now))
                    case .failure(let e):
                        _ = hub.takeArrival(sender: user, cid: message.cid)
                        metrics.errors.increment()
                        frame = .error(.init(code: e.code, message: e.message, cid: message.cid))
                    }
                } catch {
                    _ = hub.takeArrival(sender: user, cid: message.cid)
                    logger.error("storage failed: \(error)")
                    metrics.errors.increment()
                    frame = .error(.init(code: .unavailable, message: "storage is unavailable; retry the send with the same cid", cid: message.cid))
                }
                session.enqueue(.frame(frame))
            }
        case .receipt(let r):
            try await service.receipt(user, r)
        case .typing(let t):
            try await service.typing(user, t)
        }
    }

    // MARK: Writer

    /// Writes frames in order. Messages go out per conversation in strictly increasing seq with no duplicates:
    /// anything at or below the connection's cursor is dropped, and a gap is filled from storage first.
    private func writer(session: Session, outbound: WebSocketOutboundWriter, logger: Logger) async {
        var cursors: [ConversationID: Int64] = [:]
        var synced = false
        var held: [(Message, ContinuousClock.Instant?, String)] = []

        func write(_ f: ServerFrame) async throws {
            try await outbound.writeTextMessage(FrameCodec.encode(f))
        }

        func deliver(_ m: Message, arrival: ContinuousClock.Instant?, frame: String) async throws {
            let cur = cursors[m.conversation] ?? (m.seq - 1)   // a conversation joined after sync starts here
            if m.seq <= cur { return }
            var at = cur
            while m.seq > at + 1 {
                let fill = try await storage.messages(conversation: m.conversation, after: at, limit: Int(min(500, m.seq - at - 1)))
                guard !fill.isEmpty else { break }
                for f in fill where f.seq < m.seq {
                    try await write(.msg(f))
                    metrics.deliveries.increment()
                    at = f.seq
                }
                if fill.last.map({ $0.seq >= m.seq - 1 }) ?? true { break }
            }
            try await outbound.writeTextMessage(frame)
            metrics.deliveries.increment()
            if let arrival, m.sender != session.user { metrics.sendToDeliver.record(arrival.duration(to: .now)) }
            cursors[m.conversation] = m.seq
        }

        do {
            for await o in session.stream {
                session.dequeued()
                switch o {
                case .frame(let f):
                    try await write(f)
                case .message(let m, let arrival, let frame):
                    if synced { try await deliver(m, arrival: arrival, frame: frame) } else { held.append((m, arrival, frame)) }
                case .sync(let req):
                    let limit = max(1, min(req.limit ?? 500, 1000))
                    var more: [ConversationID] = []
                    for conv in try await storage.conversationIDs(for: session.user) {
                        let from = max(req.cursors[String(conv)] ?? 0, 0)
                        let batch = try await storage.messages(conversation: conv, after: from, limit: limit + 1)
                        for m in batch.prefix(limit) { try await write(.msg(m)); metrics.deliveries.increment() }
                        let reached = batch.prefix(limit).last?.seq ?? from
                        cursors[conv] = max(cursors[conv] ?? 0, reached)
                        if batch.count > limit { more.append(conv) }
                    }
                    try await write(.synced(.init(cursors: Dictionary(uniqueKeysWithValues: cursors.map { (String($0.key), $0.value) }), more: more)))
                    if !synced {
                        synced = true
                        for (m, a, f) in held { try await deliver(m, arrival: a, frame: f) }
                        held = []
                    }
                case .close(let reason):
                    try? await outbound.close(.goingAway, reason: reason)
                    return
                }
            }
        } catch {
            logger.debug("write ended: \(error)")
        }
    }
}

extension ClientFrame {
    /// The client message id a frame carries, if any, so errors can name the send they answer.
    var cid: String? {
        switch self {
        case .send(let f): f.cid
        case .recall(let f): f.cid
        case .edit(let f): f.cid
        default: nil
        }
    }
}

extension Logger {
    func with(_ key: String, _ value: String) -> Logger {
        var l = self
        l[metadataKey: key] = .string(value)
        return l
    }
}
