import Foundation
@testable import IMClient
import IMCore
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

/// The SDK's WebSocket handler on an `EmbeddedChannel`: frames in, frames out, the clock advanced by hand. The
/// whole SDK over a real socket is the rest of this suite (every `IMConnection` test); these pin what a server
/// rarely does: fragments, pings, close codes, oversize messages, a silent peer.
@Suite struct WebSocketFrameHandlerTests {
    struct Harness {
        let channel: EmbeddedChannel
        let handler: WebSocketFrameHandler
        let inbound: AsyncStream<[String]>
        let ended: EventLoopFuture<WebSocketConnection.End>

        init(maxMessageSize: Int = 1 << 20, fragmentSize: Int = 1 << 16, pingInterval: Duration? = nil,
             closeTimeout: Duration = .seconds(2)) throws {
            channel = EmbeddedChannel()
            let (stream, continuation) = AsyncStream.makeStream(of: [String].self, bufferingPolicy: .unbounded)
            let promise = channel.eventLoop.makePromise(of: WebSocketConnection.End.self)
            handler = WebSocketFrameHandler(
                options: .init(maxMessageSize: maxMessageSize, fragmentSize: fragmentSize, pingInterval: pingInterval,
                               closeTimeout: closeTimeout, connectTimeout: .seconds(5)),
                deliver: continuation, endPromise: promise, logger: Logger(label: "test"))
            inbound = stream
            ended = promise.futureResult
            try channel.pipeline.syncOperations.addHandler(handler)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        func read(_ frames: WebSocketFrame...) throws {
            // One read burst: every frame, then one read-complete (writeInbound would complete each).
            for frame in frames { channel.pipeline.fireChannelRead(frame) }
            channel.pipeline.fireChannelReadComplete()
            try channel.throwIfErrorCaught()
        }

        func written() throws -> [WebSocketFrame] {
            var frames: [WebSocketFrame] = []
            while let frame = try channel.readOutbound(as: WebSocketFrame.self) { frames.append(frame) }
            return frames
        }

        /// The batches delivered so far (the stream is finished first, so this does not wait).
        func batches() async -> [[String]] {
            var all: [[String]] = []
            for await batch in inbound { all.append(batch) }
            return all
        }
    }

    static func frame(_ opcode: WebSocketOpcode, _ text: String, fin: Bool = true) -> WebSocketFrame {
        WebSocketFrame(fin: fin, opcode: opcode, data: ByteBuffer(string: text))
    }

    static func close(_ code: Int, _ reason: String) -> WebSocketFrame {
        var data = ByteBuffer()
        data.write(webSocketErrorCode: WebSocketErrorCode(codeNumber: code))
        data.writeString(reason)
        return WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
    }

    @Test func oneBatchPerReadBurstInOrderAndFragmentsReassembled() async throws {
        let h = try Harness()
        try h.read(Self.frame(.text, "a"), Self.frame(.text, "b"), Self.frame(.binary, "ignored"), Self.frame(.text, "c"))
        try h.read(Self.frame(.text, "he", fin: false), Self.frame(.continuation, "ll", fin: false),
                   Self.frame(.continuation, "o"), Self.frame(.binary, "x", fin: false), Self.frame(.continuation, "y"),
                   Self.frame(.text, "d"))
        try await h.channel.close().get()
        #expect(await h.batches() == [["a", "b", "c"], ["hello", "d"]])
        let end = try await h.ended.get()
        #expect(end.code == nil)
        #expect(end.reason == "connection closed")
    }

    @Test func aMessageOverTheLimitClosesWith1009() async throws {
        let h = try Harness(maxMessageSize: 10)
        try h.read(Self.frame(.text, "123456", fin: false), Self.frame(.continuation, "789012"))
        let frames = try h.written()
        #expect(frames.count == 1)
        #expect(frames.first?.opcode == .connectionClose)
        var data = try #require(frames.first?.data)   // written frames: the encoder masks
        #expect(data.readInteger(as: UInt16.self) == 1009)
        #expect(frames.first?.maskKey != nil, "a client's frames are masked")
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(2))   // no answer to the close: forced shut
        #expect(!h.channel.isActive)
        #expect(try await h.ended.get().reason.contains("larger than 10 bytes"))
        #expect(await h.batches() == [])
    }

    @Test func aContinuationOutsideAMessageIsAProtocolError() throws {
        let h = try Harness()
        try h.read(Self.frame(.continuation, "x"))
        var data = try #require(try h.written().first?.data)
        #expect(data.readInteger(as: UInt16.self) == 1002)
        try h.read(Self.close(1002, "protocol error"))   // the server answers the close: the channel closes
        #expect(!h.channel.isActive)
    }

    @Test func pingsAreAnsweredWithTheirDataMasked() throws {
        let h = try Harness()
        try h.read(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer(bytes: [1, 2, 3])))
        let pong = try #require(try h.written().first)
        #expect(pong.opcode == .pong)
        #expect(pong.maskKey != nil)
        #expect(pong.data == ByteBuffer(bytes: [1, 2, 3]))
        #expect(h.channel.isActive)
    }

    @Test func aServerCloseIsEchoedAndReportedWithItsCode() throws {
        let h = try Harness()
        try h.read(Self.frame(.text, "last"), Self.close(4002, "token expired"))
        let echo = try #require(try h.written().first)
        #expect(echo.opcode == .connectionClose)
        var data = echo.data
        #expect(data.readInteger(as: UInt16.self) == 4002)
        #expect(!h.channel.isActive)
        let end = try h.ended.wait()
        #expect(end.code == WebSocketErrorCode(codeNumber: 4002))
        #expect(end.reason.contains("closed by the server") && end.reason.contains("token expired"))
    }

    @Test func aCloseWeStartWaitsForTheAnswerThenForcesAfterTheTimeout() throws {
        let answered = try Harness()
        answered.handler.startClose(.normalClosure, reason: "client disconnect")
        #expect(try answered.written().map(\.opcode) == [.connectionClose])
        answered.handler.write(["after the close"])   // nothing more goes out after a close
        #expect(try answered.written().isEmpty)
        try answered.read(Self.close(1000, ""))
        #expect(!answered.channel.isActive)
        #expect(try answered.ended.wait().code == .normalClosure)

        let silent = try Harness(closeTimeout: .seconds(2))
        silent.handler.startClose(.normalClosure, reason: "client disconnect")
        silent.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1900))
        #expect(silent.channel.isActive)
        silent.channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!silent.channel.isActive)
        #expect(try silent.ended.wait().code == nil)
    }

    @Test func anUnansweredPingEndsTheSocket() throws {
        let h = try Harness(pingInterval: .seconds(30))
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        let ping = try #require(try h.written().first)
        #expect(ping.opcode == .ping)
        try h.read(WebSocketFrame(fin: true, opcode: .pong, data: ping.data))
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(30))   // answered: another ping, still open
        #expect(try h.written().map(\.opcode) == [.ping])
        #expect(h.channel.isActive)
        h.channel.embeddedEventLoop.advanceTime(by: .seconds(30))   // this one unanswered
        #expect(!h.channel.isActive)
        #expect(try h.ended.wait().reason.contains("no WebSocket pong"))
    }

    @Test func textsAreMaskedWithFreshKeysAndSplitAtTheFragmentSize() throws {
        let h = try Harness(fragmentSize: 4)
        h.handler.write(["abcdefghij", "xy"])
        let frames = try h.written()
        #expect(frames.map(\.opcode) == [.text, .continuation, .continuation, .text])
        #expect(frames.map(\.fin) == [false, false, true, true])
        #expect(frames.map { String(buffer: $0.data) } == ["abcd", "efgh", "ij", "xy"])
        let keys = frames.compactMap(\.maskKey)
        #expect(keys.count == 4)
        #expect(Set(keys.map { Array($0) }).count == 4, "a fresh key per frame")
        // Past the pool's 64 keys: still fresh keys.
        h.handler.write((0..<100).map { "\($0)" })
        let more = try h.written().compactMap(\.maskKey).map { Array($0) }
        #expect(more.count == 100)
        #expect(Set(more).count >= 99)
    }
}

/// The SDK's socket against the real server at an IPv6 literal: the connect takes the bare address, the `Host`
/// and `Origin` headers take it in brackets (an unbracketed `ws://::1` origin is refused by the server's check).
@Suite(.timeLimit(.minutes(1))) struct SDKAddressTests {
    @Test func anIPv6LiteralConnectsAndMessagesFlow() async throws {
        try await withServer(.sqlite, { $0.server.host = "::1" }) { server in
            let alice = TestUser(client: try IMClient(baseURL: "http://[::1]:\(server.port)", deviceName: "test"),
                                 profile: try await IMClient(baseURL: "http://[::1]:\(server.port)", deviceName: "setup")
                                     .register(username: "alice6", password: "password-123"))
            _ = try await alice.client.login(username: "alice6", password: "password-123")
            let a = try await EventLog.connect(alice)
            let conv = try await alice.client.createGroup(name: "v6", members: [])
            let ack = try await a.connection.send(conversation: conv.id, text: "over ::1")
            #expect(ack.seq > 0)
            #expect(await a.waitForMessages(1, in: conv.id))
            #expect(a.userMessages(in: conv.id).map(\.text) == ["over ::1"])
            await a.close()
        }
    }

    @Test func aServerThatDoesNotUpgradeIsNamedWithItsHTTPAnswer() async throws {
        try await withServer(.sqlite) { server in
            let error = await #expect(throws: IMError.self) {
                _ = try await WebSocketConnection.connect(url: "ws://127.0.0.1:\(server.port)/no-such-socket", tls: nil, serverName: nil,
                                                          options: .init(maxMessageSize: 1 << 20, fragmentSize: 1 << 16, pingInterval: nil,
                                                                        closeTimeout: .seconds(2), connectTimeout: .seconds(5)),
                                                          logger: Logger(label: "test"))
            }
            #expect(error?.code == .unavailable)
            #expect(error?.message.contains("did not upgrade the connection to a WebSocket (it answered HTTP 4") == true, "\(String(describing: error))")
        }
    }
}
