import Foundation
import IMCore
import HummingbirdCore
import Logging
import NIOCore
import NIOSSL

/// Open connections, overall and per client address, with the caps that admit or refuse a new one.
/// A pure value: `ConnectionLimiter` puts it behind a lock.
struct ConnectionCounts: Sendable, Equatable {
    enum Admission: Equatable, Sendable {
        case admitted
        case refused(String)
    }

    /// Most connections open at once (0: no cap).
    var total: Int
    /// Most connections from one address (an IPv4 address or an IPv6 /64; 0: no cap).
    var perAddress: Int
    private(set) var open = 0
    private(set) var byAddress: [String: Int] = [:]

    init(total: Int, perAddress: Int) {
        self.total = total
        self.perAddress = perAddress
    }

    mutating func admit(_ address: String) -> Admission {
        if total > 0 && open >= total {
            return .refused("the server holds its maximum of \(total) connections")
        }
        let mine = byAddress[address, default: 0]
        if perAddress > 0 && mine >= perAddress {
            return .refused("this address already holds the maximum of \(perAddress) connections")
        }
        open += 1
        byAddress[address] = mine + 1
        return .admitted
    }

    mutating func release(_ address: String) {
        guard let n = byAddress[address] else { return }
        open -= 1
        if n <= 1 { byAddress.removeValue(forKey: address) } else { byAddress[address] = n - 1 }
    }

    /// The key a client address is counted under: the IPv4 address itself, an IPv6 address's /64 (one host
    /// usually holds a whole /64, so counting single IPv6 addresses would cap nothing).
    static func key(_ ip: String) -> String {
        guard ip.contains(":") else { return ip }
        if ip.hasPrefix("::ffff:"), ip.contains(".") { return String(ip.dropFirst(7)) }   // IPv4-mapped
        var addr = in6_addr()
        guard inet_pton(AF_INET6, ip, &addr) == 1 else { return ip }
        let bytes = withUnsafeBytes(of: addr) { Array($0.prefix(8)) }
        return stride(from: 0, to: 8, by: 2).map { String(format: "%x", Int(bytes[$0]) << 8 | Int(bytes[$0 + 1])) }
            .joined(separator: ":") + "::/64"
    }
}

/// `ConnectionCounts` shared by the listener's event loops.
final class ConnectionLimiter: Sendable {
    private let counts: LockedBox<ConnectionCounts>
    private let lastWarning = LockedBox<Double>(0)
    let refused: @Sendable () -> Void

    init(total: Int, perAddress: Int, refused: @escaping @Sendable () -> Void = {}) {
        counts = LockedBox(ConnectionCounts(total: total, perAddress: perAddress))
        self.refused = refused
    }

    func admit(_ address: String) -> ConnectionCounts.Admission { counts.withLock { $0.admit(address) } }
    func release(_ address: String) { counts.withLock { $0.release(address) } }
    var open: Int { counts.withLock { $0.open } }
    var total: Int { counts.withLock { $0.total } }

    /// At most one warning a minute: a flood of refusals must not become a flood of log lines.
    func shouldWarn(now: Double = Date().timeIntervalSince1970) -> Bool {
        lastWarning.withLock { last in
            guard now - last >= 60 else { return false }
            last = now
            return true
        }
    }

    /// The connection cap the process can really hold: the configured one, but never more than the descriptors
    /// left after `reserve` for the database, files and the health endpoints (the soft RLIMIT_NOFILE is first
    /// raised to the hard one, as servers do).
    static func effectiveTotal(configured: Int, reserve: Int = 256) -> Int {
        var lim = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0 else { return configured }
        if lim.rlim_cur < lim.rlim_max {
            var raised = lim
            raised.rlim_cur = lim.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { lim = raised }
        }
        let soft = Int(clamping: lim.rlim_cur)
        let usable = soft > 2 * reserve ? soft - reserve : soft / 2
        return configured > 0 ? min(configured, usable) : usable
    }
}

/// Closes a connection that has not delivered a complete HTTP request head within `timeout` of being accepted:
/// a socket that never sends a byte, a TLS handshake that stalls, or a head trickled in byte by byte. Sits after
/// the TLS handler (it sees plaintext) and removes itself once the first head is in; from then on HTTP's idle
/// timeout and WebSocket's pings look after the connection.
final class RequestHeadDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    let timeout: TimeAmount
    private var timer: Scheduled<Void>?
    private var tail: [UInt8] = []   // the last bytes seen, to find a CRLFCRLF split across reads
    private var done = false

    init(timeout: TimeAmount) { self.timeout = timeout }

    func handlerAdded(context: ChannelHandlerContext) {
        let channel = context.channel
        timer = context.eventLoop.scheduleTask(in: timeout) { channel.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !done {
            let buffer = unwrapInboundIn(data)
            if Self.findsHeadEnd(buffer.readableBytesView, after: &tail) {
                done = true
                timer?.cancel()
                context.fireChannelRead(data)
                context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
                return
            }
        }
        context.fireChannelRead(data)
    }

    /// Whether `bytes` (preceded by `tail`, the end of earlier reads) hold the blank line that ends an HTTP head.
    static func findsHeadEnd<C: Collection>(_ bytes: C, after tail: inout [UInt8]) -> Bool where C.Element == UInt8 {
        var window = tail
        for b in bytes {
            window.append(b)
            if window.count > 4 { window.removeFirst(window.count - 4) }
            if window == [13, 10, 13, 10] { return true }
        }
        tail = window
        return false
    }
}

/// Answers a refused connection, first in its pipeline: a short 503 on plain HTTP (`message`), or just a close on
/// TLS, where nothing readable can be sent before a handshake. Whatever the client sends is dropped.
final class Refusal: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let message: String?
    private var answered = false

    init(message: String?) { self.message = message }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { answer(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        answer(context)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    private func answer(_ context: ChannelHandlerContext) {
        guard !answered else { return }
        answered = true
        guard let message else { context.close(promise: nil); return }
        let body = "\(message); try again later\n"
        let text = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 5\r\n"
            + "Connection: close\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
        let channel = context.channel
        context.writeAndFlush(NIOAny(ByteBuffer(string: text))).whenComplete { _ in channel.close(promise: nil) }
    }
}

/// The listener's child channel: admits the connection under the limiter (a refusal is answered with a short 503
/// on plain HTTP, or a close on TLS, where nothing readable can be sent before a handshake), adds TLS when
/// configured, then the request-head deadline, then the HTTP/WebSocket pipeline.
struct GuardedChannel<Base: ServerChildChannel>: ServerChildChannel {
    typealias Value = Base.Value
    let base: Base
    let tls: NIOSSLContext?
    let limiter: ConnectionLimiter
    let headTimeout: TimeAmount

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let key = ConnectionCounts.key(channel.remoteAddress?.ipAddress ?? "unknown")
        if case .refused(let why) = limiter.admit(key) {
            limiter.refused()
            if limiter.shouldWarn() { logger.warning("refusing connections from \(key): \(why) (server.max_connections, server.max_connections_per_address)") }
            // The refusal is written once the socket is active (it is not yet, while the pipeline is being set up),
            // ahead of everything else in the pipeline; the base pipeline is set up as usual and sees only a close.
            return channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(Refusal(message: tls == nil ? why : nil))
            }.flatMap {
                base.setup(channel: channel, logger: logger)
            }
        }
        channel.closeFuture.whenComplete { _ in limiter.release(key) }
        return channel.eventLoop.makeCompletedFuture {
            if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
            // Above TLS, so a tick's frames are also encrypted together; TCP_NODELAY is inherited from the listener.
            try channel.pipeline.syncOperations.addHandler(FlushCoalescer())
            try channel.pipeline.syncOperations.addHandler(RequestHeadDeadline(timeout: headTimeout))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }
}
