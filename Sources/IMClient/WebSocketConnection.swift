#if os(Linux)
import CHostShims
#endif
import Foundation
import IMCore
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
#if canImport(Darwin)
import Darwin
#endif

/// The SDK's WebSocket, as NIO channel handlers: the I/O edge under ``IMConnection``.
///
/// Per frame it costs no task switch and no system call of its own. Text frames queued by ``send(_:)`` from any
/// thread are written in one event-loop hop and one flush (one `writev`) per burst; the text messages read in one
/// burst reach ``inbound`` as one array (one resume of its reader). Masking keys come from a pool filled by one
/// `getrandom` per 64 frames. It answers pings, sends its own (`pingInterval`; a missing pong ends the socket),
/// reassembles fragmented messages up to `maxMessageSize`, splits outgoing ones at `fragmentSize`, and completes
/// the close handshake (a close it starts is forced after `closeTimeout`).
final class WebSocketConnection: Sendable {
    /// How the socket ended: the reason for humans, and the close code the server sent (nil: none).
    struct End: Sendable {
        var reason: String
        var code: WebSocketErrorCode?
    }

    struct Options: Sendable {
        var maxMessageSize: Int
        var fragmentSize: Int
        var pingInterval: Duration?
        var closeTimeout: Duration
        var connectTimeout: Duration
    }

    /// The text messages received, in order, one array per read burst. Finishes when the socket closes.
    let inbound: AsyncStream<[String]>
    /// Completes when the channel is closed.
    let ended: EventLoopFuture<End>

    private let channel: any Channel
    private let handler: NIOLoopBound<WebSocketFrameHandler>
    private let outbox = NIOLockedValueBox(Outbox())

    private struct Outbox {
        var texts: [String] = []
        var drainScheduled = false
    }

    private init(channel: any Channel, handler: WebSocketFrameHandler, inbound: AsyncStream<[String]>) {
        self.channel = channel
        self.handler = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        self.inbound = inbound
        self.ended = handler.endPromise.futureResult
    }

    /// Opens `url` (`ws://` or `wss://host[:port]/path`) and upgrades it to a WebSocket. `tls` is required for
    /// `wss`; `serverName` is its SNI and verification name (nil: the URL's host).
    static func connect(url: String, tls: TLSConfiguration?, serverName: String?, options: Options,
                        logger: Logger) async throws -> WebSocketConnection {
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), scheme == "ws" || scheme == "wss",
              let host = parsed.host, !host.isEmpty else {
            throw IMError(.invalid, "'\(url)' is not a ws:// or wss:// URL")
        }
        let secure = scheme == "wss"
        let port = parsed.port ?? (secure ? 443 : 80)
        let sslContext: NIOSSLContext?
        if secure {
            guard let tls else { throw IMError(.invalid, "'\(url)' needs a TLS configuration") }
            sslContext = try NIOSSLContext(configuration: tls)
        } else {
            sslContext = nil
        }
        let path = (parsed.path.isEmpty ? "/" : parsed.path) + (parsed.query.map { "?" + $0 } ?? "")
        let literal = host.contains(":") ? "[\(host)]" : host   // an IPv6 address is bracketed in headers
        let hostHeader = parsed.port.map { "\(literal):\($0)" } ?? literal
        let origin = "\(scheme)://\(literal)"

        let answer = NIOLockedValueBox<HTTPResponseHead?>(nil)
        let upgrade = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(TimeAmount(options.connectTimeout))
            .connect(host: host, port: port) { channel -> EventLoopFuture<EventLoopFuture<WebSocketConnection?>> in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        let ssl = try NIOSSLClientHandler(context: sslContext, serverHostname: serverName ?? host)
                        try channel.pipeline.syncOperations.addHandler(ssl, position: .first)
                    }
                    let upgrader = NIOTypedWebSocketClientUpgrader<WebSocketConnection?>(
                        maxFrameSize: options.maxMessageSize,
                        upgradePipelineHandler: { channel, _ in
                            channel.eventLoop.makeCompletedFuture {
                                let (stream, continuation) = AsyncStream.makeStream(of: [String].self, bufferingPolicy: .unbounded)
                                let handler = WebSocketFrameHandler(options: options, deliver: continuation,
                                                           endPromise: channel.eventLoop.makePromise(of: End.self), logger: logger)
                                try channel.pipeline.syncOperations.addHandler(handler)
                                return WebSocketConnection(channel: channel, handler: handler, inbound: stream)
                            }
                        }
                    )
                    var headers = HTTPHeaders()
                    headers.add(name: "Host", value: hostHeader)
                    headers.add(name: "Origin", value: origin)
                    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
                    var configuration = NIOUpgradableHTTPClientPipelineConfiguration(
                        upgradeConfiguration: .init(upgradeRequestHead: head, upgraders: [upgrader],
                                                    notUpgradingCompletionHandler: { channel in
                                                        channel.close(promise: nil)
                                                        return channel.eventLoop.makeSucceededFuture(nil)
                                                    }))
                    configuration.leftOverBytesStrategy = .forwardBytes
                    let upgraded = try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(configuration: configuration)
                    // The server's answer, for the error when it is not an upgrade (a wrong path's 400, a 503).
                    let upgradeHandler = try channel.pipeline.syncOperations.handler(type: NIOTypedHTTPClientUpgradeHandler<WebSocketConnection?>.self)
                    try channel.pipeline.syncOperations.addHandler(ResponseHeadRecorder(answer), position: .before(upgradeHandler))
                    return upgraded
                }
            }
        guard let connection = try await upgrade.get() else {
            let status = answer.withLockedValue { $0 }.map { " (it answered HTTP \($0.status.code) \($0.status.reasonPhrase))" } ?? ""
            throw IMError(.unavailable, "the server at \(url) did not upgrade the connection to a WebSocket\(status)")
        }
        return connection
    }

    /// Queues a text message; written with whatever else is queued in one event-loop hop and one flush.
    func send(_ text: String) {
        let schedule = outbox.withLockedValue { outbox -> Bool in
            outbox.texts.append(text)
            defer { outbox.drainScheduled = true }
            return !outbox.drainScheduled
        }
        guard schedule else { return }
        channel.eventLoop.execute { self.drain() }
    }

    private func drain() {
        let texts = outbox.withLockedValue { outbox -> [String] in
            outbox.drainScheduled = false
            defer { outbox.texts = [] }
            return outbox.texts
        }
        handler.value.write(texts)
    }

    /// Starts the close handshake (after what is queued); the channel is closed when the server answers, or after
    /// `closeTimeout`.
    func close(_ code: WebSocketErrorCode = .normalClosure, reason: String) {
        channel.eventLoop.execute {
            self.drain()
            self.handler.value.startClose(code, reason: reason)
        }
    }

    /// Closes the channel now, without a close handshake (a dead or silent peer).
    func abort(reason: String) {
        channel.eventLoop.execute { self.handler.value.abort(reason: reason) }
    }
}

/// Notes the HTTP response's head on its way to the upgrade handler. Everything after the head passes through
/// untouched, unread: after an upgrade that is WebSocket bytes, not HTTP parts.
final class ResponseHeadRecorder: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias InboundOut = HTTPClientResponsePart
    private let answer: NIOLockedValueBox<HTTPResponseHead?>
    private var seen = false

    init(_ answer: NIOLockedValueBox<HTTPResponseHead?>) { self.answer = answer }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !seen, case .head(let head) = unwrapInboundIn(data) {
            seen = true
            answer.withLockedValue { $0 = head }
        }
        context.fireChannelRead(data)
    }
}

/// The channel handler after the upgrade: frames in, frames out. Lives on the channel's event loop.
final class WebSocketFrameHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let endPromise: EventLoopPromise<WebSocketConnection.End>
    private let options: WebSocketConnection.Options
    private let deliver: AsyncStream<[String]>.Continuation
    private let logger: Logger
    private var context: ChannelHandlerContext?

    private var batch: [String] = []
    /// A fragmented message being reassembled (nil: none); `fragmentsAreText` false for a binary one (dropped at its end).
    private var fragments: ByteBuffer?
    private var fragmentsAreText = false
    private var closeSent = false
    private var serverClose: (code: WebSocketErrorCode?, reason: String?)?
    private var failure: String?
    private var pingOutstanding = false
    private var pinger: Scheduled<Void>?
    private var finished = false
    private var closeDeadline: Scheduled<Void>?
    private var masks = MaskPool()

    init(options: WebSocketConnection.Options, deliver: AsyncStream<[String]>.Continuation,
         endPromise: EventLoopPromise<WebSocketConnection.End>, logger: Logger) {
        self.options = options
        self.deliver = deliver
        self.endPromise = endPromise
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        schedulePing()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
        self.context = nil
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text, .binary:
            guard fragments == nil else { return protocolError("a new message began inside a fragmented one") }
            if frame.fin {
                if frame.opcode == .text { batch.append(String(buffer: frame.unmaskedData)) }
            } else {
                fragments = frame.unmaskedData
                fragmentsAreText = frame.opcode == .text
            }
        case .continuation:
            guard var buffer = fragments else { return protocolError("a continuation frame outside a fragmented message") }
            fragments = nil   // no copy on write while appending
            var data = frame.unmaskedData
            guard buffer.readableBytes + data.readableBytes <= options.maxMessageSize else {
                failure = "a message from the server was larger than \(options.maxMessageSize) bytes"
                return startClose(.messageTooLarge, reason: "message too large")
            }
            buffer.writeBuffer(&data)
            if frame.fin {
                if fragmentsAreText { batch.append(String(buffer: buffer)) }
            } else {
                fragments = buffer
            }
        case .ping:
            guard frame.fin else { return protocolError("a fragmented ping") }
            guard !closeSent else { return }
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, maskKey: masks.next(),
                                                                 data: frame.unmaskedData)), promise: nil)
        case .pong:
            pingOutstanding = false
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self).map { WebSocketErrorCode(codeNumber: Int($0)) }
            let reason = data.readableBytes > 0 ? String(buffer: data) : nil
            serverClose = (code, reason)
            if closeSent {
                context.close(promise: nil)
            } else {
                // Echo the close, then close the channel once it is written.
                closeSent = true
                var echo = context.channel.allocator.buffer(capacity: 2)
                if let code { echo.write(webSocketErrorCode: code) }
                context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: masks.next(), data: echo)))
                    .assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            }
        default:
            protocolError("an unknown frame opcode \(frame.opcode)")
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flushBatch()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if failure == nil { failure = "\(error)" }
        context.close(promise: nil)
    }

    private func flushBatch() {
        guard !batch.isEmpty else { return }
        deliver.yield(batch)
        batch = []
    }

    private func protocolError(_ what: String) {
        failure = "WebSocket protocol error from the server: \(what)"
        startClose(.protocolError, reason: "protocol error")
    }

    /// Once: what was read goes out, the stream ends, the end is reported.
    private func finish() {
        guard !finished else { return }
        finished = true
        pinger?.cancel()
        pinger = nil
        closeDeadline?.cancel()
        closeDeadline = nil
        flushBatch()
        deliver.finish()
        let reason: String
        if let serverClose {
            reason = "closed by the server (\(serverClose.code.map { "\($0)" } ?? "no code")\(serverClose.reason.map { ": \($0)" } ?? ""))"
        } else {
            reason = failure.map { "connection failed: \($0)" } ?? "connection closed"
        }
        endPromise.succeed(.init(reason: reason, code: serverClose?.code ?? nil))
    }

    // MARK: Outbound

    func write(_ texts: [String]) {
        guard let context, !closeSent, !texts.isEmpty else { return }
        for text in texts {
            var buffer = context.channel.allocator.buffer(string: text)
            var opcode = WebSocketOpcode.text
            while buffer.readableBytes > options.fragmentSize, let chunk = buffer.readSlice(length: options.fragmentSize) {
                context.write(wrapOutboundOut(WebSocketFrame(fin: false, opcode: opcode, maskKey: masks.next(), data: chunk)), promise: nil)
                opcode = .continuation
            }
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: opcode, maskKey: masks.next(), data: buffer)), promise: nil)
        }
        context.flush()
    }

    func startClose(_ code: WebSocketErrorCode, reason: String) {
        guard let context, !closeSent else { return }
        closeSent = true
        var data = context.channel.allocator.buffer(capacity: 2 + reason.utf8.count)
        data.write(webSocketErrorCode: code)
        data.writeString(reason)
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: masks.next(), data: data)), promise: nil)
        closeDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(options.closeTimeout)) {
            self.context?.close(promise: nil)
        }
    }

    func abort(reason: String) {
        if failure == nil, serverClose == nil { failure = reason }
        context?.close(promise: nil)
    }

    private func schedulePing() {
        guard let interval = options.pingInterval, let context, !finished else { return }
        pinger = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(interval)) { self.pingTick() }
    }

    private func pingTick() {
        guard let context, !closeSent, !finished else { return }
        if pingOutstanding {
            failure = "no WebSocket pong within \(options.pingInterval ?? .zero)"
            context.close(promise: nil)
            return
        }
        pingOutstanding = true
        var data = context.channel.allocator.buffer(capacity: 8)
        data.writeInteger(UInt64.random(in: .min ... .max))
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, maskKey: masks.next(), data: data)), promise: nil)
        schedulePing()
    }
}

/// Masking keys for client frames (RFC 6455 5.3: unpredictable, from a strong source), drawn from the system's
/// random source 256 bytes at a time instead of a system call per frame.
private struct MaskPool {
    private var pool = [UInt8](repeating: 0, count: 256)
    private var used = 256

    mutating func next() -> WebSocketMaskingKey {
        if used == pool.count {
            pool.withUnsafeMutableBytes { Self.fill($0) }
            used = 0
        }
        defer { used += 4 }
        return WebSocketMaskingKey(pool[used..<used + 4])!
    }

    private static func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        #if os(Linux)
        if warbler_random_bytes(buffer.baseAddress, buffer.count) == 0 { return }
        #elseif canImport(Darwin)
        arc4random_buf(buffer.baseAddress!, buffer.count)
        return
        #endif
        // No getrandom (a kernel older than 3.17): the standard library's generator, 8 bytes at a time.
        var generator = SystemRandomNumberGenerator()
        for i in stride(from: 0, to: buffer.count, by: 8) {
            withUnsafeBytes(of: generator.next()) { bytes in
                for j in 0..<min(8, buffer.count - i) { buffer[i + j] = bytes[j] }
            }
        }
    }
}
