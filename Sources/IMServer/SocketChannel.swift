import Hummingbird
import HummingbirdCore
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket

/// The listener's HTTP/1 channel: requests go to Hummingbird's responder, and an upgrade to the chat socket becomes
/// a `SocketHandler` on the event loop.
///
/// Hummingbird's own WebSocket channel runs each socket in a task for the socket's whole life (its connection task,
/// its WebSocket handler's and its auto-ping task), and every frame in or out is a hop between that task and the
/// event loop. Here, once upgraded, a socket is only NIO handlers and our objects: its frames are read, assembled,
/// answered (ping, close) and written on the event loop, and Swift concurrency wakes only when a frame is to be
/// handled (docs/benchmarks.md, "Memory per authenticated idle WebSocket").
struct SocketChannel: ServerChildChannel, HTTPChannelHandler {
    enum Negotiated: Sendable {
        /// Upgraded: the socket runs on its own, on the event loop.
        case socket
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        /// An upgrade this server refuses (another path, a foreign origin): a 400, then the connection closes.
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
    }

    struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        let channel: any Channel
    }

    struct Settings: Sendable {
        /// The socket's path.
        var path = "/v1/ws"
        /// The largest frame, and the largest message its fragments may add up to (beyond: closed with 1009).
        var maxMessageBytes: Int
        var pingInterval: TimeAmount? = .seconds(30)
        var closeTimeout: TimeAmount = .seconds(5)
        var idleTimeout: TimeAmount?
    }

    let responder: Responder
    let settings: Settings
    /// Whether an upgrade request may become a socket (its path is `settings.path`).
    let admits: @Sendable (HTTPRequestHead) -> Bool
    /// The handler of a new socket's messages.
    let accept: @Sendable (SocketOut, Logger) -> any SocketDelegate

    init(responder: @escaping Responder, settings: Settings,
         admits: @escaping @Sendable (HTTPRequestHead) -> Bool, accept: @escaping @Sendable (SocketOut, Logger) -> any SocketDelegate) {
        self.responder = Self.redirectingLateUpgrades(responder)
        self.settings = settings
        self.admits = admits
        self.accept = accept
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let attempted = NIOLoopBoundBox(false, eventLoop: channel.eventLoop)
            let settings = self.settings
            let admits = self.admits, accept = self.accept
            let upgrader = NIOTypedWebSocketServerUpgrader<Negotiated>(
                maxFrameSize: settings.maxMessageBytes,
                shouldUpgrade: { channel, head in
                    attempted.value = true
                    let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
                    let ok = path == settings.path && admits(head)
                    return channel.eventLoop.makeSucceededFuture(ok ? HTTPHeaders() : nil)
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        let handler = SocketHandler(settings: settings, logger: logger, accept: accept)
                        try channel.pipeline.syncOperations.addHandler(handler)
                        return Negotiated.socket
                    }
                })
            let idleTimeout = settings.idleTimeout
            let upgrades = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandler(
                            HTTPConnectionStateHandler(idleTimeout: idleTimeout.map { .nanoseconds($0.nanoseconds) }, logger: logger))
                        let http = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                        return attempted.value ? Negotiated.refused(http) : Negotiated.http(http)
                    }
                })
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<Negotiated>(upgradeConfiguration: upgrades)
            configuration.enablePipelining = false            // NIOAsyncChannel handles requests in order
            configuration.enableErrorHandling = false         // Hummingbird answers parse errors
            configuration.enableResponseHeaderValidation = false
            let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(configuration: configuration)
            return Value(negotiated: negotiated, channel: channel)
        }
    }

    /// Returns at once for a socket (it needs no task); serves HTTP requests until the connection closes.
    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.negotiated.get() {
            case .socket:
                return
            case .http(let http):
                await handleHTTP(asyncChannel: http, logger: logger)
            case .refused(let http):
                try await http.executeThenClose { _, outbound in
                    try await outbound.write(contentsOf: [
                        .head(HTTPResponse(status: .badRequest, headerFields: [.connection: "close", .contentLength: "0"])),
                        .end(nil),
                    ])
                }
            }
        } catch {
            logger.trace("connection ended before or during its upgrade: \(error)")
        }
    }

    /// NIO upgrades only a connection's first request: a later one asking for an upgrade is sent back to the same
    /// address with the connection closed, so that it comes again as the first request of a new one.
    static func redirectingLateUpgrades(_ responder: @escaping Responder) -> Responder {
        struct RedirectThenClose: Error {}
        return { request, writer, channel in
            guard request.headers[.upgrade]?.lowercased() == "websocket" else {
                return try await responder(request, writer, channel)
            }
            let location = request.uri.query.map { "\(request.uri.path)?\($0)" } ?? request.uri.path
            try await writer.writeResponse(HTTPResponse(status: .temporaryRedirect, headerFields: [.connection: "close", .location: location]))
            throw RedirectThenClose()
        }
    }
}

/// What reads a socket's messages. Called on the socket's event loop.
protocol SocketDelegate: AnyObject, Sendable {
    /// A whole message (its fragments joined). False asks the socket to stop reading until `SocketOut.resumeReading()`.
    func received(_ message: WebSocketMessage) -> Bool
    /// The socket is closed, or closing (a close frame came or went): no more messages come. Called once.
    func readerEnded()
}

/// Writes to one socket, from any thread. A write after the socket's close frame fails; a write does not wait,
/// unless the socket's send buffer is full, when it waits for it to drain (the writer's backpressure).
struct SocketOut: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<SocketHandler>

    func writeTextMessage(_ text: String) async throws {
        guard channel.isActive else { throw ChannelError.ioOnClosedChannel }
        guard !channel.isWritable else { return channel.writeAndFlush(Self.frame(text), promise: nil) }
        let written = channel.eventLoop.makePromise(of: Void.self)
        channel.writeAndFlush(Self.frame(text), promise: written)
        try await written.futureResult.get()
    }

    private static func frame(_ text: String) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: text))
    }

    /// Whether a write now would not wait (the socket's send buffer has room).
    var isWritable: Bool { channel.isWritable }

    /// Writes without waiting; false when the socket is closed.
    func send(_ text: String) -> Bool {
        guard channel.isActive else { return false }
        channel.writeAndFlush(Self.frame(text), promise: nil)
        return true
    }

    /// Sends a close frame (once; a second close does nothing); the connection closes when the client answers, or
    /// after the close timeout.
    func close(_ code: WebSocketErrorCode, reason: String?) {
        let handler = self.handler
        channel.eventLoop.execute { handler.value.sendClose(code, reason: reason) }
    }

    /// Ends the connection without a close handshake.
    func abort() { channel.close(promise: nil) }

    func resumeReading() {
        channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
    }

    /// Runs `body` after `delay` on the socket's event loop, unless cancelled.
    @discardableResult
    func after(_ delay: TimeAmount, _ body: @escaping @Sendable () -> Void) -> Scheduled<Void> {
        channel.eventLoop.scheduleTask(in: delay, body)
    }
}

/// One chat socket, after its upgrade: assembles fragmented messages, answers pings, pings an idle client and
/// closes it when it stops answering, and runs the close handshake. Messages go to the `SocketDelegate`.
final class SocketHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let settings: SocketChannel.Settings
    private let logger: Logger
    private let accept: @Sendable (SocketOut, Logger) -> any SocketDelegate
    private var delegate: (any SocketDelegate)?
    /// The message whose fragments are arriving: whether it is text, and its bytes so far.
    private var partial: (text: Bool, data: ByteBuffer)?
    private var closeSent = false
    private var ended = false
    private var pongDue = false
    private var pinger: RepeatedTask?
    private var closeTimer: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    init(settings: SocketChannel.Settings, logger: Logger, accept: @escaping @Sendable (SocketOut, Logger) -> any SocketDelegate) {
        self.settings = settings
        self.logger = logger
        self.accept = accept
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let out = SocketOut(channel: context.channel, handler: NIOLoopBound(self, eventLoop: context.eventLoop))
        delegate = accept(out, logger)
        if let interval = settings.pingInterval {
            let loop = context.eventLoop
            // The first ping at a random point in [interval/2, 3·interval/2): sockets opened together (a restart's
            // reconnects, a load test) must not all be pinged in the same instant, every interval after.
            let first = TimeAmount.nanoseconds(interval.nanoseconds / 2 + Int64.random(in: 0..<max(1, interval.nanoseconds)))
            // Weakly, and only on this loop (`NIOLoopBound` checks): the timer must not keep a closed socket's handler.
            let target = NIOLoopBound(WeakHandler(handler: self), eventLoop: loop)
            pinger = loop.scheduleRepeatedTask(initialDelay: first, delay: interval) { _ in
                target.value.handler?.ping()
            }
        }
    }

    private struct WeakHandler { weak var handler: SocketHandler? }

    /// On the channel's close too: the delegate (which holds this handler through its `SocketOut`) is let go, so
    /// that neither outlives the socket.
    func handlerRemoved(context: ChannelHandlerContext) {
        stopTimers()
        end()
        delegate = nil
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        stopTimers()
        end()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            guard partial == nil else { return protocolError("a new message began before the last one's fragments ended") }
            if frame.fin {
                deliver(text: frame.opcode == .text, data: frame.unmaskedData)
            } else {
                partial = (frame.opcode == .text, frame.unmaskedData)
            }
        case .continuation:
            guard var p = partial else { return protocolError("a continuation frame without a message to continue") }
            partial = nil
            var more = frame.unmaskedData
            guard p.data.readableBytes + more.readableBytes <= settings.maxMessageBytes else {
                return sendClose(.messageTooLarge, reason: "message too large")
            }
            p.data.writeBuffer(&more)
            if frame.fin { deliver(text: p.text, data: p.data) } else { partial = p }
        case .ping:
            guard frame.fin else { return protocolError("a fragmented ping") }
            if !closeSent {
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
            }
        case .pong:
            pongDue = false
        case .connectionClose:
            var body = frame.unmaskedData
            if !closeSent {
                // Echo the client's code (1000 when it sent none), then close: the server closes the TCP connection.
                let code = body.readWebSocketErrorCode() ?? .normalClosure
                closeSent = true
                var reply = context.channel.allocator.buffer(capacity: 2)
                reply.write(webSocketErrorCode: code)
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: reply)), promise: nil)
            }
            end()
            context.close(promise: nil)
        default:
            protocolError("an unknown opcode")
        }
    }

    /// Data frames after the close frame are dropped (a late ack or delivery as the socket closes).
    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if closeSent {
            promise?.fail(ChannelError.outputClosed)
            return
        }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("socket error: \(error)")
        context.close(promise: nil)
    }

    /// Sends the close frame (once) and closes the connection when the client answers, or after the close timeout.
    func sendClose(_ code: WebSocketErrorCode, reason: String?) {
        guard let context, !closeSent else { return }
        var data = context.channel.allocator.buffer(capacity: 2 + (reason?.utf8.count ?? 0))
        data.write(webSocketErrorCode: code)
        if let reason { data.writeString(String(decoding: reason.utf8.prefix(123), as: UTF8.self)) }
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)), promise: nil)
        closeSent = true
        partial = nil
        end()
        let channel = context.channel
        closeTimer = context.eventLoop.scheduleTask(in: settings.closeTimeout) { channel.close(promise: nil) }
    }

    private func deliver(text: Bool, data: ByteBuffer) {
        guard !ended, let context else { return }
        let message: WebSocketMessage = text ? .text(String(buffer: data)) : .binary(data)
        if delegate?.received(message) == false {
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        }
    }

    private func ping() {
        guard let context, !closeSent else { return }
        if pongDue { return sendClose(.goingAway, reason: "no answer to ping") }
        pongDue = true
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer())), promise: nil)
    }

    private func protocolError(_ what: String) {
        logger.debug("socket protocol error: \(what)")
        sendClose(.protocolError, reason: what)
    }

    private func end() {
        guard !ended else { return }
        ended = true
        pinger?.cancel()
        pinger = nil
        delegate?.readerEnded()
    }

    private func stopTimers() {
        pinger?.cancel()
        pinger = nil
        closeTimer?.cancel()
        closeTimer = nil
    }
}
