import Foundation
import IMCore
import Logging
import NIOCore
import NIOWebSocket

/// The real-time WebSocket connection of an ``IMClient``'s session.
///
/// - ``connect()`` opens the socket, authenticates, syncs every missed message and returns once caught up.
///   It throws if that first attempt fails; after it succeeded once, drops (or a server `reconnect`) are
///   retried automatically with exponential backoff and jitter until ``disconnect()``.
/// - Each reconnect refreshes the access token if needed, authenticates, syncs from the cursors (repeating
///   while the server reports `more`) and then re-sends every unacknowledged send with its original `cid`,
///   so the server stores it once and the waiting caller receives the eventual ack.
/// - Messages reach ``events`` exactly once and in seq order per conversation: any `msg` with a seq at or
///   below the conversation's cursor is dropped. Cursors are saved through the ``CursorStore``.
/// - Sends, recalls and edits need a started connection: before ``connect()`` or after ``disconnect()``
///   they throw `IMError(.unavailable)`; while reconnecting they are queued and written once caught up.
///   A connection keeps itself alive while started: call ``disconnect()`` or ``close()`` when done.
/// - ``events`` lives as long as this object: ``disconnect()`` only ends the current connection (it emits
///   `.connectionState(.disconnected)` and ``connect()`` may be called again). The stream finishes on
///   ``close()`` or when the object is released. It buffers without limit, so keep consuming it.
public actor IMConnection {
    /// Behaviour of an ``IMConnection``.
    public struct Configuration: Sendable {
        /// Send coalesced `delivered` receipts for messages received from others.
        public var sendDeliveredReceipts: Bool
        /// How long received messages are collected before one `delivered` receipt per conversation is sent.
        public var deliveredReceiptDelay: Duration
        /// First reconnect delay; doubled after each failed attempt (with jitter).
        public var initialReconnectDelay: Duration
        /// Upper bound of the reconnect delay.
        public var maxReconnectDelay: Duration
        /// Base delay before reconnecting when the server sent `reconnect` (jittered up to twice as long).
        public var serverReconnectDelay: Duration
        /// Time allowed from opening the socket to the server's `ready`.
        public var handshakeTimeout: Duration
        /// Time allowed for the WebSocket close handshake before the socket is closed anyway.
        public var closeTimeout: Duration
        /// Interval of WebSocket pings that detect a dead connection (nil: none).
        public var pingInterval: Duration?
        /// When a send written on the socket has had no answer for this long, a `ping` asks whether the connection
        /// is alive; no `pong` within the same time ends the socket, and the sends go again (same cid) after the
        /// reconnect. A server that fell silent (its host lost with the address clients reached it by) is noticed
        /// in seconds instead of at the next WebSocket ping (nil: off).
        public var silenceProbe: Duration?
        /// A socket on which nothing has arrived for this long is probed the same way (a `ping`, then `silenceProbe`
        /// for its `pong`), so a connection that only receives notices a silent server too; the WebSocket ping
        /// never ended such a socket in the drills (nil: off).
        public var idleProbe: Duration?
        /// Messages per conversation per sync request (nil: the server's default).
        public var syncLimit: Int?
        /// Largest inbound WebSocket frame/message accepted, in bytes.
        public var maxMessageSize: Int
        /// Outgoing frames larger than this are split into WebSocket continuation fragments.
        public var outboundFragmentSize: Int
        /// Sends whose encoded frame is larger than this fail at once with `too_large` instead of being written
        /// (the server closes the socket for frames over 4× its limit, which would otherwise repeat on every resend).
        public var maxOutgoingFrameBytes: Int
        /// How many times one send/recall/edit is written at most (first write, re-sends after reconnects, and
        /// retries after `rate_limited`/`unavailable`/`internal` errors) before it fails.
        public var maxSendAttempts: Int

        /// Creates a configuration (all values have defaults).
        public init(
            sendDeliveredReceipts: Bool = true,
            deliveredReceiptDelay: Duration = .milliseconds(250),
            initialReconnectDelay: Duration = .milliseconds(200),
            maxReconnectDelay: Duration = .seconds(10),
            serverReconnectDelay: Duration = .milliseconds(500),
            handshakeTimeout: Duration = .seconds(10),
            closeTimeout: Duration = .seconds(2),
            pingInterval: Duration? = .seconds(30),
            silenceProbe: Duration? = .seconds(3),
            idleProbe: Duration? = .seconds(15),
            syncLimit: Int? = nil,
            maxMessageSize: Int = 4 << 20,
            outboundFragmentSize: Int = 64 << 10,
            maxOutgoingFrameBytes: Int = 256 << 10,
            maxSendAttempts: Int = 6
        ) {
            self.sendDeliveredReceipts = sendDeliveredReceipts
            self.deliveredReceiptDelay = deliveredReceiptDelay
            self.initialReconnectDelay = initialReconnectDelay
            self.maxReconnectDelay = maxReconnectDelay
            self.serverReconnectDelay = serverReconnectDelay
            self.handshakeTimeout = handshakeTimeout
            self.closeTimeout = closeTimeout
            self.pingInterval = pingInterval
            self.silenceProbe = silenceProbe
            self.idleProbe = idleProbe
            self.syncLimit = syncLimit
            self.maxMessageSize = maxMessageSize
            self.outboundFragmentSize = max(1024, outboundFragmentSize)
            self.maxOutgoingFrameBytes = maxOutgoingFrameBytes
            self.maxSendAttempts = max(1, maxSendAttempts)
        }
    }

    /// Everything the connection reports (see ``IMEvent``). One consumer; finishes on ``close()`` or release.
    public nonisolated let events: AsyncStream<IMEvent>
    /// The REST client whose session this connection uses.
    public nonisolated let client: IMClient
    /// The configuration this connection was made with.
    public nonisolated let configuration: Configuration
    /// The current state (also reported as `.connectionState` events).
    public private(set) var state: IMConnectionState = .disconnected(reason: "not connected")
    /// The authenticated user, from the server's `ready` (nil before the first one).
    public private(set) var userID: UserID?

    private let eventsContinuation: AsyncStream<IMEvent>.Continuation
    private let cursorStore: any CursorStore
    private let logger: Logger

    // The run: the supervisor loop that (re)connects until disconnect() or a fatal error.
    private var runTask: Task<Void, Never>?
    private var wantConnected = false
    private var connectedThisRun = false
    private var stopReason: String?
    private var lastRunError: IMError?
    private var isClosed = false
    private var connectWaiters: [UUID: CheckedContinuation<Void, any Error>] = [:]

    // The current socket.
    private enum Phase { case idle, authenticating, syncing, connected }
    private var phase: Phase = .idle
    private var socket: Socket?
    private var generation = 0

    // Cursors.
    private var cursorMap: [ConversationID: Int64] = [:]
    private var cursorsLoaded = false
    private var syncRoundAdvanced = false
    private var cursorsDirty = false
    private var persistTask: Task<Void, Never>?

    // Sends awaiting their ack, and pings awaiting their pong.
    private var pending: [String: PendingSend] = [:]
    private var sendCounter: UInt64 = 0
    private var pings: [String: CheckedContinuation<Void, any Error>] = [:]
    /// The silence probe's pings in flight (ref → socket generation).
    private var probes: [String: Int] = [:]

    // Receipts waiting for a connected socket / the coalescing delay.
    private var deliveredToSend: [ConversationID: Int64] = [:]
    private var readToSend: [ConversationID: Int64] = [:]
    private var deliveredTask: Task<Void, Never>?

    /// Creates a connection for `client`'s session; nothing happens until ``connect()``.
    public init(client: IMClient, cursorStore: any CursorStore = InMemoryCursorStore(), configuration: Configuration = .init()) {
        self.client = client
        self.cursorStore = cursorStore
        self.configuration = configuration
        self.logger = client.logger
        (self.events, self.eventsContinuation) = AsyncStream.makeStream(of: IMEvent.self, bufferingPolicy: .unbounded)
    }

    deinit {
        eventsContinuation.finish()
    }

    // MARK: Public API

    /// Connects (if not already) and returns once authenticated and caught up. Throws the error of the first
    /// attempt when it fails (`.unauthorized` when not logged in or the session is revoked, `.unavailable`
    /// when the server cannot be reached). Cancelling the caller before the connection is up disconnects.
    public func connect() async throws {
        guard !isClosed else { throw IMError(.unavailable, "this connection was closed") }
        while let run = runTask, !wantConnected { await run.value }   // a disconnect in progress finishes first
        if phase == .connected { return }
        if !cursorsLoaded {
            let loaded: [ConversationID: Int64]
            do {
                loaded = try await cursorStore.load()
            } catch {
                throw (error as? IMError) ?? IMError(.internal, "cannot load cursors: \(error)")
            }
            if !cursorsLoaded {
                for (conversation, seq) in loaded where seq > (cursorMap[conversation] ?? 0) { cursorMap[conversation] = seq }
                cursorsLoaded = true
            }
        }
        guard !isClosed else { throw IMError(.unavailable, "this connection was closed") }
        if runTask == nil {
            wantConnected = true
            connectedThisRun = false
            stopReason = nil
            lastRunError = nil
            runTask = Task { await self.runLoop() }
        }
        let id = UUID()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (waiter: CheckedContinuation<Void, any Error>) in
                if phase == .connected {
                    waiter.resume()
                } else if runTask == nil {
                    waiter.resume(throwing: lastRunError ?? IMError(.unavailable, "not connected"))
                } else {
                    connectWaiters[id] = waiter
                }
            }
        } onCancel: {
            Task { await self.connectCancelled(id) }
        }
    }

    /// Ends the current connection: sends a WebSocket close (forcing the socket shut after `closeTimeout`),
    /// stops reconnecting and fails unacknowledged sends with `.unavailable`. ``events`` stays open and
    /// ``connect()`` may be called again. Waits until the socket is closed and the cursors are saved.
    public func disconnect() async {
        guard let run = runTask else {
            await persistTask?.value
            return
        }
        var forceClose: Task<Void, Never>?
        if wantConnected {
            wantConnected = false
            stopReason = "disconnected by the client"
            run.cancel()
            if let socket {
                socket.closeReason = "disconnected by the client"
                let attempt = socket.task
                if socket.ready {
                    socket.closeGracefully()
                    let limit = configuration.closeTimeout
                    forceClose = Task {
                        try? await Task.sleep(for: limit)
                        if !Task.isCancelled { attempt?.cancel() }
                    }
                } else {
                    attempt?.cancel()
                }
            }
        }
        await run.value
        forceClose?.cancel()
        await persistTask?.value
    }

    /// Disconnects and finishes ``events``; the object cannot be connected again.
    public func close() async {
        isClosed = true
        await disconnect()
        eventsContinuation.finish()
    }

    /// Sends a text message and returns the server's ack (awaited across reconnects). `replyTo` quotes message
    /// seq of the same conversation; `mentions` names members (`mentionAll`: everyone, group owners and admins only).
    @discardableResult
    public func send(conversation: ConversationID, text: String, replyTo: Int64? = nil, mentions: [UserID] = [],
                     mentionAll: Bool = false, cid: String = ClientIDs.next()) async throws -> ServerFrame.Ack {
        try await submit(cid: cid, .send(.init(cid: cid, conv: conversation, kind: .text, text: text, replyTo: replyTo,
                                               mentions: mentions.isEmpty ? nil : mentions, mentionAll: mentionAll ? true : nil)))
    }

    /// Sends an application-defined JSON payload (kind `custom`) and returns the ack.
    @discardableResult
    public func send(conversation: ConversationID, data: JSONValue, cid: String = ClientIDs.next()) async throws -> ServerFrame.Ack {
        try await submit(cid: cid, .send(.init(cid: cid, conv: conversation, kind: .custom, data: data)))
    }

    /// Sends an uploaded attachment (see ``IMClient/uploadAttachment(to:name:contentType:data:)``) with an optional caption.
    @discardableResult
    public func send(conversation: ConversationID, attachment: AttachmentRef, caption: String? = nil,
                     cid: String = ClientIDs.next()) async throws -> ServerFrame.Ack {
        try await submit(cid: cid, .send(.init(cid: cid, conv: conversation, kind: .attachment, text: caption,
                                               attachment: attachment.id)))
    }

    /// Recalls message `seq` (stored as a `recall` message targeting it) and returns the ack.
    @discardableResult
    public func recall(conversation: ConversationID, seq: Int64, cid: String = ClientIDs.next()) async throws -> ServerFrame.Ack {
        try await submit(cid: cid, .recall(.init(cid: cid, conv: conversation, seq: seq)))
    }

    /// Replaces the text of message `seq` (stored as an `edit` message targeting it) and returns the ack.
    @discardableResult
    public func edit(conversation: ConversationID, seq: Int64, text: String,
                     cid: String = ClientIDs.next()) async throws -> ServerFrame.Ack {
        try await submit(cid: cid, .edit(.init(cid: cid, conv: conversation, seq: seq, text: text)))
    }

    /// Adds the emoji `emoji` on message `seq` (or takes it back with `remove`); stored as a `reaction` message
    /// that every member's devices receive in order (apply it with ``Message/applyingReaction(_:)``).
    @discardableResult
    public func react(conversation: ConversationID, seq: Int64, emoji: String, remove: Bool = false,
                      cid: String = ClientIDs.next()) async throws -> ServerFrame.Ack {
        try await submit(cid: cid, .react(.init(cid: cid, conv: conversation, seq: seq, emoji: emoji, remove: remove ? true : nil)))
    }

    /// Reports that the user has read `conversation` up to `seq`. Sent now when connected, otherwise on the next
    /// connect (only the highest seq per conversation is kept).
    public func markRead(conversation: ConversationID, seq: Int64) {
        readToSend[conversation] = max(readToSend[conversation] ?? 0, seq)
        flushReadReceipts()
    }

    /// Tells the conversation's members that the user is (or stopped) typing. Dropped when not connected.
    public func typing(conversation: ConversationID, active: Bool) {
        guard phase == .connected, let socket else { return }
        socket.send(FrameCodec.encode(ClientFrame.typing(.init(conv: conversation, active: active))))
    }

    /// Sends an application-level `ping` and returns the round-trip time once the `pong` arrives.
    /// Throws `.unavailable` when not connected or when the connection drops first.
    public func ping() async throws -> Duration {
        guard let socket, socket.ready else { throw IMError(.unavailable, "not connected") }
        let ref = UUID().uuidString
        let start = ContinuousClock.now
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (waiter: CheckedContinuation<Void, any Error>) in
                pings[ref] = waiter
                socket.send(FrameCodec.encode(ClientFrame.ping(.init(ref: ref))))
            }
        } onCancel: {
            Task { await self.pingCancelled(ref) }
        }
        return ContinuousClock.now - start
    }

    /// The highest seq received per conversation.
    public var cursors: [ConversationID: Int64] { cursorMap }

    /// The highest seq received in `conversation` (0 when none).
    public func cursor(for conversation: ConversationID) -> Int64 { cursorMap[conversation] ?? 0 }

    /// The number of sends/recalls/edits still waiting for their ack.
    public var pendingSendCount: Int { pending.count }

    /// Testing aid: kills the current socket at once (no waiting for a close handshake), as a network drop would,
    /// so the reconnect/resync/resend logic runs. Unlike ``disconnect()`` the connection then reconnects.
    public func dropConnectionForTesting() {
        guard let socket else { return }
        socket.closeReason = "connection dropped for testing"
        socket.task?.cancel()
    }

    // MARK: Run loop

    private enum AttemptEnd {
        case closed(reason: String, serverRequested: Bool, reachedConnected: Bool)
        case authRejected(IMError, token: String)
        /// The server ended a socket that was authenticated (4001/4002): refresh once, as after a rejection.
        case authEnded(IMError, token: String)
        case fatal(IMError)
    }

    private func runLoop() async {
        var failures = 0
        var refreshedAfterRejection = false
        var finalError: IMError?
        var reason = "disconnected"
        attempts: while wantConnected, !Task.isCancelled {
            setState(.connecting)
            let end = await runAttempt()
            let delay: Duration
            switch end {
            case .fatal(let error):
                finalError = error
                reason = "\(error)"
                break attempts
            case .authRejected(let error, let token), .authEnded(let error, let token):
                if case .authEnded = end { refreshedAfterRejection = false }
                reason = "authentication rejected: \(error)"
                guard wantConnected, !Task.isCancelled else { break attempts }
                if refreshedAfterRejection {
                    finalError = error
                    break attempts
                }
                refreshedAfterRejection = true
                do {
                    try await client.refreshAfterRejection(of: token)
                    continue attempts
                } catch let error as IMError where error.code == .unauthorized || error.code == .forbidden {
                    finalError = error
                    reason = "\(error)"
                    break attempts
                } catch {
                    delay = backoff(failures)
                    failures += 1
                }
            case .closed(let why, let serverRequested, let reachedConnected):
                reason = why
                guard wantConnected, !Task.isCancelled else { break attempts }
                if reachedConnected {
                    refreshedAfterRejection = false
                    failures = 0
                }
                if !connectedThisRun, !serverRequested {
                    finalError = IMError(.unavailable, why)
                    break attempts
                }
                if serverRequested {
                    delay = jittered(configuration.serverReconnectDelay, factor: 1...2)
                } else {
                    delay = backoff(failures)
                    failures += 1
                }
            }
            setState(.disconnected(reason: reason))
            logger.debug("reconnecting", metadata: ["reason": "\(reason)", "delay": "\(delay)"])
            do {
                try await Task.sleep(for: delay)
            } catch {
                break attempts
            }
        }
        finishRun(error: finalError, reason: stopReason ?? reason)
    }

    /// One socket: open, authenticate, sync, then read until it closes.
    private func runAttempt() async -> AttemptEnd {
        let token: String
        do {
            token = try await client.accessToken()
        } catch let error as IMError where error.code == .unauthorized || error.code == .forbidden {
            return .fatal(error)
        } catch {
            return .closed(reason: "cannot obtain an access token: \(error)", serverRequested: false, reachedConnected: false)
        }
        guard wantConnected, !Task.isCancelled else {
            return .closed(reason: stopReason ?? "cancelled", serverRequested: false, reachedConnected: false)
        }

        generation += 1
        let socket = Socket(generation: generation, token: token)
        socket.send(FrameCodec.encode(ClientFrame.auth(.init(token: token))))
        self.socket = socket
        phase = .authenticating

        let url = client.transport.endpoint.webSocketURL
        let tls = client.transport.tls
        let options = WebSocketConnection.Options(maxMessageSize: configuration.maxMessageSize,
                                                  fragmentSize: configuration.outboundFragmentSize,
                                                  pingInterval: configuration.pingInterval,
                                                  closeTimeout: configuration.closeTimeout,
                                                  connectTimeout: configuration.handshakeTimeout)
        let logger = self.logger
        let generation = socket.generation
        // The attempt runs on this actor (the task inherits its isolation): each read burst resumes it once, and
        // its frames are decoded and handled in order without another hop.
        let attempt = Task<(reason: String, code: WebSocketErrorCode?), Never> {
            let ws: WebSocketConnection
            do {
                ws = try await WebSocketConnection.connect(url: url, tls: tls.webSocket, serverName: tls.webSocketServerName,
                                                           options: options, logger: logger)
            } catch {
                return ("connection failed: \(error)", nil)
            }
            return await withTaskCancellationHandler {
                if self.attach(ws, generation: generation) {
                    reading: for await texts in ws.inbound {
                        var frames: [ServerFrame] = []
                        frames.reserveCapacity(texts.count)
                        for text in texts {
                            do {
                                frames.append(try FastFrames.decode(text) ?? FrameCodec.decodeServer(text))
                            } catch {
                                logger.warning("ignoring an undecodable frame", metadata: ["error": "\(error)", "frame": "\(text.prefix(200))"])
                            }
                        }
                        if self.receive(frames, generation: generation) == .stop {
                            ws.close(reason: "client disconnect")
                            break reading
                        }
                    }
                } else {
                    ws.abort(reason: "the attempt was given up")
                }
                let end = (try? await ws.ended.get()) ?? .init(reason: "connection closed", code: nil)
                return (end.reason, end.code)
            } onCancel: {
                ws.abort(reason: "closed by the client")
            }
        }
        socket.task = attempt
        let handshakeTimeout = configuration.handshakeTimeout
        let watchdog = Task {
            try? await Task.sleep(for: handshakeTimeout)
            if !Task.isCancelled { self.handshakeTimedOut(generation: socket.generation) }
        }
        // The attempt's end, or the handshake watchdog giving up on it, whichever comes first: on the watchdog the
        // attempt is left to end on its own (its socket's generation is stale, so nothing it does counts).
        let (transportReason, closeCode) = await withCheckedContinuation { (c: CheckedContinuation<(reason: String, code: WebSocketErrorCode?), Never>) in
            let once = LockedBox<CheckedContinuation<(reason: String, code: WebSocketErrorCode?), Never>?>(c)
            socket.abandon = { reason in once.withLock { $0.take() }?.resume(returning: (reason, nil)) }
            Task {
                let ended = await attempt.value
                once.withLock { $0.take() }?.resume(returning: ended)
            }
        }
        socket.abandon = nil
        watchdog.cancel()
        socketEnded(socket)

        if let fatal = socket.fatal { return .fatal(fatal) }
        if let rejection = socket.authRejection { return .authRejected(rejection, token: socket.token) }
        // 4001: the login session ended (the refresh fails too, and the run ends unauthorized);
        // 4002: the access token expired (refresh, then reconnect). See docs/protocol.md.
        if let code = closeCode, code == Self.sessionEndedCode || code == Self.tokenExpiredCode {
            return .authEnded(IMError(.unauthorized, socket.closeReason ?? transportReason), token: socket.token)
        }
        return .closed(reason: socket.closeReason ?? transportReason, serverRequested: socket.serverRequestedReconnect,
                       reachedConnected: socket.reachedConnected)
    }

    private func handshakeTimedOut(generation: Int) {
        guard let socket, socket.generation == generation, !socket.ready else { return }
        socket.closeReason = "no answer to authentication within \(configuration.handshakeTimeout)"
        socket.task?.cancel()
        socket.abandon?(socket.closeReason ?? "handshake timed out")
    }

    /// Bookkeeping when a socket is gone: sends become unsent (to be re-sent), pings fail.
    private func socketEnded(_ ended: Socket) {
        guard socket === ended else { return }
        ended.reauthTask?.cancel()
        ended.probeTask?.cancel()
        probes = probes.filter { $0.value != ended.generation }
        socket = nil
        phase = .idle
        for cid in pending.keys { pending[cid]?.sentOn = nil }
        failPings(IMError(.unavailable, "connection lost"))
        deliveredTask?.cancel()
        deliveredTask = nil
    }

    private func finishRun(error: IMError?, reason: String) {
        runTask = nil
        wantConnected = false
        phase = .idle
        lastRunError = error
        let failure = error ?? IMError(.unavailable, reason)
        let waiters = connectWaiters
        connectWaiters = [:]
        for waiter in waiters.values { waiter.resume(throwing: failure) }
        let unacknowledged = pending
        pending = [:]
        for entry in unacknowledged.values {
            entry.waiter?.resume(throwing: IMError(failure.code, "not acknowledged before the connection stopped: \(failure.message)"))
        }
        failPings(failure)
        deliveredTask?.cancel()
        deliveredTask = nil
        setState(.disconnected(reason: reason))
    }

    private func connectCancelled(_ id: UUID) async {
        guard let waiter = connectWaiters.removeValue(forKey: id) else { return }
        waiter.resume(throwing: CancellationError())
        if !connectedThisRun, connectWaiters.isEmpty, wantConnected {
            await disconnect()
        }
    }

    private func backoff(_ failures: Int) -> Duration {
        let base = seconds(configuration.initialReconnectDelay) * pow(2, Double(min(failures, 30)))
        let capped = min(base, seconds(configuration.maxReconnectDelay))
        return jittered(.seconds(capped), factor: 0.5...1)
    }

    private func jittered(_ duration: Duration, factor: ClosedRange<Double>) -> Duration {
        .seconds(seconds(duration) * Double.random(in: factor))
    }

    private func seconds(_ duration: Duration) -> Double {
        duration.inSeconds
    }

    private func setState(_ new: IMConnectionState) {
        guard state != new else { return }
        state = new
        eventsContinuation.yield(.connectionState(new))
    }

    // MARK: Inbound frames

    private enum ReadAction: Sendable { case proceed, stop }

    /// The frames of one read burst, in order; stops at the first that ends the socket.
    private func receive(_ frames: [ServerFrame], generation: Int) -> ReadAction {
        for frame in frames where receive(frame, generation: generation) == .stop { return .stop }
        return .proceed
    }

    /// The socket's connection is up: what was queued before it (the `auth`) goes out. False when the attempt is
    /// stale (the handshake watchdog gave up on it, or the run ended).
    private func attach(_ ws: WebSocketConnection, generation: Int) -> Bool {
        guard let socket, socket.generation == generation else { return false }
        socket.attach(ws)
        return true
    }

    private func receive(_ frame: ServerFrame, generation: Int) -> ReadAction {
        guard let socket, socket.generation == generation else { return .stop }
        socket.lastReceivedAt = .now
        switch frame {
        case .ready(let ready):
            scheduleReauthentication(on: socket, expiry: ready.exp)
            // A second `ready` answers a fresh token sent on the open socket: nothing else changes.
            guard !socket.ready else { break }
            socket.ready = true
            userID = ready.user
            phase = .syncing
            requestSync(on: socket)
        case .synced(let synced):
            guard phase == .syncing else { break }
            if !synced.more.isEmpty {
                if syncRoundAdvanced {
                    requestSync(on: socket)
                    break
                }
                logger.warning("sync reported more messages but delivered none new; treating as caught up",
                               metadata: ["more": "\(synced.more)"])
            }
            becomeConnected(socket)
        case .msg(let message):
            receive(message)
        case .ack(let ack):
            pending.removeValue(forKey: ack.cid)?.waiter?.resume(returning: ack)
            eventsContinuation.yield(.ack(ack))
        case .error(let error):
            eventsContinuation.yield(.error(error))
            if !socket.ready {
                let failure = IMError(error.code, error.message)
                switch error.code {
                case .unauthorized, .notAuthenticated: socket.authRejection = failure
                case .forbidden: socket.fatal = failure
                default: break
                }
                socket.closeReason = "authentication failed: \(failure)"
                return .stop
            }
            if let cid = error.cid, pending[cid] != nil {
                rejected(cid, error)
            } else if error.cid == nil, phase == .syncing, error.code == .rateLimited {
                // Syncs are rate-limited per connection: ask again when the server says.
                let generation = socket.generation
                let delay = Duration.milliseconds(Int64(max(0.05, error.retryAfter ?? 1) * 1000))
                Task { [weak self] in
                    try? await Task.sleep(for: delay)
                    await self?.retrySync(generation: generation)
                }
            } else if error.cid == nil, phase == .syncing {
                // The sync was refused (nothing else is sent while syncing): retry on a new socket.
                socket.closeReason = "sync failed: \(IMError(error.code, error.message))"
                return .stop
            }
        case .reconnect(let reconnect):
            socket.serverRequestedReconnect = true
            socket.closeReason = "server asked to reconnect: \(reconnect.reason)"
            return .stop
        case .pong(let pong):
            if let ref = pong.ref { probes.removeValue(forKey: ref); pings.removeValue(forKey: ref)?.resume() }
        case .receipt(let receipt):
            eventsContinuation.yield(.receipt(receipt))
        case .typing(let typing):
            eventsContinuation.yield(.typing(typing))
        case .presence(let presence):
            eventsContinuation.yield(.presence(presence))
        case .draft(let draft):
            eventsContinuation.yield(.draft(draft))
        }
        return .proceed
    }

    private func receive(_ message: Message) {
        guard message.seq > (cursorMap[message.conversation] ?? 0) else { return }   // already delivered
        cursorMap[message.conversation] = message.seq
        syncRoundAdvanced = true
        markCursorsDirty()
        eventsContinuation.yield(.message(message))
        if configuration.sendDeliveredReceipts, message.sender != userID {
            deliveredToSend[message.conversation] = max(deliveredToSend[message.conversation] ?? 0, message.seq)
            scheduleDeliveredReceipts()
        }
    }

    /// WebSocket close codes from docs/protocol.md.
    static let sessionEndedCode = WebSocketErrorCode(codeNumber: 4001)
    static let tokenExpiredCode = WebSocketErrorCode(codeNumber: 4002)

    /// Before the socket's access token expires, sends a fresh one on it (`auth` again) so the server keeps it open.
    private func scheduleReauthentication(on socket: Socket, expiry: Int64?) {
        socket.reauthTask?.cancel()
        guard let expiry else { return }
        let left = Double(expiry) - Date().timeIntervalSince1970
        // Early enough to refresh in time; late enough that `accessToken()` (refreshing within its margin) renews it.
        let margin = min(seconds(client.configuration.refreshMargin) / 2, max(left / 2, 0))
        let delay = max(left - margin, 0)
        let generation = socket.generation
        socket.reauthTask = Task { [weak self] in
            try? await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
            guard !Task.isCancelled else { return }
            await self?.reauthenticate(generation: generation)
        }
    }

    private func reauthenticate(generation: Int) async {
        guard let token = try? await client.accessToken() else { return }   // the server will close with 4002; we refresh then
        guard let socket, socket.generation == generation, socket.ready else { return }
        socket.token = token
        socket.send(FrameCodec.encode(ClientFrame.auth(.init(token: token))))
    }

    private func retrySync(generation: Int) {
        guard let socket, socket.generation == generation, phase == .syncing else { return }
        requestSync(on: socket)
    }

    private func requestSync(on socket: Socket) {
        syncRoundAdvanced = false
        let frame = ClientFrame.sync(.init(cursors: cursorMap, limit: configuration.syncLimit))
        socket.send(FrameCodec.encode(frame))
    }

    private func becomeConnected(_ socket: Socket) {
        phase = .connected
        socket.reachedConnected = true
        connectedThisRun = true
        setState(.connected)
        let waiters = connectWaiters
        connectWaiters = [:]
        for waiter in waiters.values { waiter.resume() }
        for cid in pending.sorted(by: { $0.value.order < $1.value.order }).map(\.key) {
            write(pendingSend: cid, on: socket)
        }
        flushReadReceipts()
        flushDeliveredReceipts()
        startSilenceProbe(socket)
    }

    // MARK: Silence probe

    /// One task per socket: every half probe interval, whether a send written on it has waited a whole interval.
    private func startSilenceProbe(_ socket: Socket) {
        guard let probe = configuration.silenceProbe else { return }
        let generation = socket.generation
        socket.probeTask = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: probe / 2)
                guard let self, await self.probeIfSilent(generation: generation, after: probe) else { return }
            }
        }
    }

    /// False once the socket is gone.
    private func probeIfSilent(generation: Int, after probe: Duration) -> Bool {
        guard let socket, socket.generation == generation, phase == .connected else { return false }
        guard !probes.values.contains(generation) else { return true }
        let now = ContinuousClock.now
        let waiting = pending.values.contains { $0.sentOn == generation && ($0.writtenAt.map { now - $0 >= probe } ?? false) }
        let idle = configuration.idleProbe.map { now - socket.lastReceivedAt >= $0 } ?? false
        guard waiting || idle else { return true }
        let ref = "probe-" + UUID().uuidString
        probes[ref] = generation
        socket.send(FrameCodec.encode(ClientFrame.ping(.init(ref: ref))))
        Task {
            try? await Task.sleep(for: probe)
            self.probeExpired(ref)
        }
        return true
    }

    private func probeExpired(_ ref: String) {
        guard let generation = probes.removeValue(forKey: ref), let socket, socket.generation == generation else { return }
        let probe = configuration.silenceProbe ?? .zero
        socket.closeReason = "no answer from the server: a send waited \(probe), or nothing arrived for \(configuration.idleProbe ?? .zero), and a ping another \(probe)"
        logger.debug("silence probe unanswered; reconnecting", metadata: ["generation": "\(generation)"])
        socket.task?.cancel()
    }

    // MARK: Outbound

    private struct PendingSend {
        let order: UInt64
        let frame: String
        var waiter: CheckedContinuation<ServerFrame.Ack, any Error>?
        /// The socket generation it was last written on (nil: needs writing), and when.
        var sentOn: Int?
        var writtenAt: ContinuousClock.Instant?
        var attempts = 0
        /// After a retryable rejection: not to be written before this instant (a timer writes it then).
        var notBefore: ContinuousClock.Instant?
        var lastError: IMError?
    }

    private func submit(cid: String, _ frame: ClientFrame) async throws -> ServerFrame.Ack {
        if let invalid = Validation.clientID(cid) { throw invalid }
        guard runTask != nil, wantConnected else { throw IMError(.unavailable, "not connected; call connect() first") }
        guard pending[cid] == nil else { throw IMError(.conflict, "a send with cid '\(cid)' is already pending") }
        let text = FastFrames.encode(frame) ?? FrameCodec.encode(frame)
        guard text.utf8.count <= configuration.maxOutgoingFrameBytes else {
            throw IMError(.tooLarge, "frame of \(text.utf8.count) bytes exceeds \(configuration.maxOutgoingFrameBytes) bytes")
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (waiter: CheckedContinuation<ServerFrame.Ack, any Error>) in
                sendCounter += 1
                pending[cid] = PendingSend(order: sendCounter, frame: text, waiter: waiter)
                if phase == .connected, let socket { write(pendingSend: cid, on: socket) }
            }
        } onCancel: {
            Task { await self.sendCancelled(cid) }
        }
    }

    private func write(pendingSend cid: String, on socket: Socket) {
        guard var entry = pending[cid], entry.sentOn != socket.generation else { return }
        if let notBefore = entry.notBefore, notBefore > .now { return }   // its retry timer writes it
        guard entry.attempts < configuration.maxSendAttempts else {
            pending[cid] = nil
            let last = entry.lastError.map { " (last error: \($0))" } ?? ""
            entry.waiter?.resume(throwing: IMError(entry.lastError?.code ?? .unavailable,
                                                   "not acknowledged after \(entry.attempts) attempts\(last)"))
            return
        }
        socket.send(entry.frame)
        entry.sentOn = socket.generation
        entry.writtenAt = .now
        entry.attempts += 1
        entry.notBefore = nil
        pending[cid] = entry
    }

    /// The server refused a send. `rate_limited`, `unavailable` and `internal` are retried with the same cid
    /// after `retryAfter` (or a backoff); anything else fails the caller.
    private func rejected(_ cid: String, _ error: ServerFrame.ErrorFrame) {
        guard var entry = pending[cid] else { return }
        var message = error.message
        if let retryAfter = error.retryAfter { message += " (retry after \(retryAfter)s)" }
        let failure = IMError(error.code, message)
        let retryable: Set<ErrorCode> = [.rateLimited, .unavailable, .internal]
        guard retryable.contains(error.code), entry.attempts < configuration.maxSendAttempts else {
            pending[cid] = nil
            entry.waiter?.resume(throwing: retryable.contains(error.code)
                ? IMError(error.code, "\(message) (gave up after \(entry.attempts) attempts)") : failure)
            return
        }
        let delay: Duration = error.retryAfter.map { .seconds(max(0.05, $0)) }
            ?? .seconds(min(10, 0.5 * pow(2, Double(entry.attempts - 1))))
        entry.lastError = failure
        entry.sentOn = nil
        entry.notBefore = .now + delay
        pending[cid] = entry
        logger.debug("send refused; retrying", metadata: ["cid": "\(cid)", "error": "\(failure)", "delay": "\(delay)"])
        Task {
            try? await Task.sleep(for: delay)
            self.retryDue(cid)
        }
    }

    private func retryDue(_ cid: String) {
        guard var entry = pending[cid], entry.sentOn == nil else { return }
        entry.notBefore = nil
        pending[cid] = entry
        if phase == .connected, let socket { write(pendingSend: cid, on: socket) }
    }

    /// The caller stopped waiting. A send never written is dropped; one already written stays pending (without
    /// a waiter) so it is re-sent with the same cid after a reconnect and the server's copy stays unique.
    private func sendCancelled(_ cid: String) {
        guard var entry = pending[cid], let waiter = entry.waiter else { return }
        waiter.resume(throwing: CancellationError())
        entry.waiter = nil
        pending[cid] = entry.attempts > 0 ? entry : nil
    }

    private func pingCancelled(_ ref: String) {
        pings.removeValue(forKey: ref)?.resume(throwing: CancellationError())
    }

    private func failPings(_ error: IMError) {
        let waiting = pings
        pings = [:]
        for waiter in waiting.values { waiter.resume(throwing: error) }
    }

    private func flushReadReceipts() {
        guard phase == .connected, let socket, !readToSend.isEmpty else { return }
        for (conversation, seq) in readToSend.sorted(by: { $0.key < $1.key }) {
            socket.send(FrameCodec.encode(ClientFrame.receipt(.init(conv: conversation, kind: .read, seq: seq))))
        }
        readToSend = [:]
    }

    private func scheduleDeliveredReceipts() {
        guard deliveredTask == nil, phase == .connected else { return }
        let delay = configuration.deliveredReceiptDelay
        deliveredTask = Task {
            try? await Task.sleep(for: delay)
            guard !Task.isCancelled else { return }
            self.deliveredTimerFired()
        }
    }

    private func deliveredTimerFired() {
        deliveredTask = nil
        flushDeliveredReceipts()
    }

    private func flushDeliveredReceipts() {
        guard phase == .connected, let socket, !deliveredToSend.isEmpty else { return }
        for (conversation, seq) in deliveredToSend.sorted(by: { $0.key < $1.key }) {
            socket.send(FrameCodec.encode(ClientFrame.receipt(.init(conv: conversation, kind: .delivered, seq: seq))))
        }
        deliveredToSend = [:]
    }

    // MARK: Cursor persistence

    private func markCursorsDirty() {
        cursorsDirty = true
        guard persistTask == nil else { return }
        persistTask = Task { await self.persistCursors() }
    }

    /// Saves the latest cursors until no change is left unsaved (changes made during a save coalesce into the next).
    private func persistCursors() async {
        while cursorsDirty {
            cursorsDirty = false
            do {
                try await cursorStore.save(cursorMap)
            } catch {
                logger.warning("cannot save cursors", metadata: ["error": "\(error)"])
            }
        }
        persistTask = nil
    }

    // MARK: Socket plumbing

    /// State of one socket; owned by the actor.
    private final class Socket {
        let generation: Int
        /// The access token the socket authenticated with (the newest one sent on it).
        var token: String
        var reauthTask: Task<Void, Never>?
        var probeTask: Task<Void, Never>?
        var lastReceivedAt = ContinuousClock.now
        /// The connection once it is up; frames sent before that wait in `queued`.
        private var ws: WebSocketConnection?
        private var queued: [String] = []
        private var closeWhenAttached = false
        var task: Task<(reason: String, code: WebSocketErrorCode?), Never>?
        /// Stops waiting for `task`: a connection attempt stuck before the upgrade answer (a proxy still dialling a
        /// dead server) does not heed cancellation, and the run would wait on it for as long as TCP lasts.
        var abandon: (@Sendable (String) -> Void)?
        var ready = false
        var reachedConnected = false
        var authRejection: IMError?
        var fatal: IMError?
        var closeReason: String?
        var serverRequestedReconnect = false

        init(generation: Int, token: String) {
            self.generation = generation
            self.token = token
        }

        func send(_ text: String) {
            if let ws { ws.send(text) } else { queued.append(text) }
        }

        /// The WebSocket close handshake, after what is queued.
        func closeGracefully() {
            if let ws { ws.close(reason: "client disconnect") } else { closeWhenAttached = true }
        }

        func attach(_ connection: WebSocketConnection) {
            ws = connection
            for text in queued { connection.send(text) }
            queued = []
            if closeWhenAttached { connection.close(reason: "client disconnect") }
        }
    }
}
