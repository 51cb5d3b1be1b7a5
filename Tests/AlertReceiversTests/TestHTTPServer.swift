import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization

/// A request as the test HTTP server received it.
struct RecordedRequest: Sendable {
    var method: String
    var uri: String
    var headers: [(String, String)]
    var body: Data

    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    /// The body as a JSON object.
    func json() throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: body) as? [String: Any] else {
            throw TestFailure("body is not a JSON object: \(String(decoding: body, as: UTF8.self))")
        }
        return object
    }

    /// The query parameters, percent-decoded.
    var query: [String: String] {
        guard let q = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return [:] }
        var result: [String: String] = [:]
        for pair in q.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map(String.init)
            result[kv[0]] = kv.count > 1 ? (kv[1].removingPercentEncoding ?? kv[1]) : ""
        }
        return result
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// An HTTP/1.1 server on 127.0.0.1, port 0, that records every request and answers what the test says.
final class TestHTTPServer: Sendable {
    struct Answer: Sendable {
        var status: Int = 200
        var body: String = "ok"
        /// Answer only after this long (to test timeouts).
        var delay: TimeAmount = .zero
    }

    private struct State {
        var requests: [RecordedRequest] = []
        var answers: [Answer] = []
    }

    private let state = Mutex(State())
    private let channel: any Channel
    let port: Int

    let tls: Bool
    var baseURL: String { "\(tls ? "https" : "http")://127.0.0.1:\(port)" }

    /// Answers are served in order; the last one repeats (default: 200 "ok"). With `pki`, it speaks HTTPS.
    static func start(answers: [Answer] = [Answer()], pki: TestPKI? = nil) async throws -> TestHTTPServer {
        let box = ServerBox()
        let tls = try pki.map { pki in
            try NIOSSLContext(configuration: .makeServerConfiguration(
                certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(pki.serverCertPEM.utf8), format: .pem))],
                privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(pki.serverKeyPEM.utf8), format: .pem))))
        }
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(RecordingHandler(box: box))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let server = TestHTTPServer(channel: channel, answers: answers, tls: tls != nil)
        box.server.withLock { $0 = server }
        return server
    }

    private init(channel: any Channel, answers: [Answer], tls: Bool) {
        self.channel = channel
        self.tls = tls
        self.port = channel.localAddress?.port ?? 0
        state.withLock { $0.answers = answers }
    }

    var requests: [RecordedRequest] { state.withLock { $0.requests } }

    fileprivate func record(_ request: RecordedRequest) -> Answer {
        state.withLock { s in
            s.requests.append(request)
            return s.answers.count > 1 ? s.answers.removeFirst() : (s.answers.first ?? Answer())
        }
    }

    func stop() async throws {
        try await channel.close()
    }
}

/// Lets the child handlers reach the server, which exists only once the bind returned.
private final class ServerBox: Sendable {
    let server = Mutex<TestHTTPServer?>(nil)
}

private final class RecordingHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let box: ServerBox
    var head: HTTPRequestHead?
    var body = ByteBuffer()

    init(box: ServerBox) { self.box = box }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body.clear()
        case .body(var b):
            body.writeBuffer(&b)
        case .end:
            guard let head, let server = box.server.withLock({ $0 }) else { return }
            let request = RecordedRequest(
                method: head.method.rawValue, uri: head.uri,
                headers: head.headers.map { ($0.name, $0.value) },
                body: Data(body.readableBytesView))
            let answer = server.record(request)
            let keepAlive = head.isKeepAlive
            let respond = { [self] in
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: "\(answer.body.utf8.count)")
                let responseHead = HTTPResponseHead(version: head.version, status: HTTPResponseStatus(statusCode: answer.status), headers: headers)
                context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: answer.body)))), promise: nil)
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
                    if !keepAlive { channel.close(promise: nil) }
                }
            }
            if answer.delay == .zero {
                respond()
            } else {
                let loopBound = NIOLoopBound(respond, eventLoop: context.eventLoop)
                context.eventLoop.scheduleTask(in: answer.delay) { loopBound.value() }
            }
        }
    }
}
