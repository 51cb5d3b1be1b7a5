import HummingbirdWebSocket
@testable import IMServer
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

/// The chat socket's handler on the event loop: messages joined from their fragments, pings answered, an idle
/// client pinged and closed when it stops answering, and both close handshakes.
@Suite struct SocketHandlerTests {
    final class Recorder: SocketDelegate, @unchecked Sendable {
        var messages: [String] = []
        var ends = 0
        var out: SocketOut?
        func received(_ message: WebSocketMessage) -> Bool {
            switch message {
            case .text(let t): messages.append(t)
            case .binary(let b): messages.append("binary:\(b.readableBytes)")
            }
            return true
        }
        func readerEnded() { ends += 1 }
    }

    func socket(maxMessageBytes: Int = 64, ping: TimeAmount? = nil) throws -> (EmbeddedChannel, Recorder) {
        let recorder = Recorder()
        let channel = EmbeddedChannel()
        let settings = SocketChannel.Settings(maxMessageBytes: maxMessageBytes, pingInterval: ping, closeTimeout: .seconds(5))
        try channel.pipeline.syncOperations.addHandler(SocketHandler(settings: settings, logger: Logger(label: "test")) { out, _ in
            recorder.out = out
            return recorder
        })
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return (channel, recorder)
    }

    /// A client frame: masked, as clients must send them.
    func frame(_ opcode: WebSocketOpcode, _ text: String, fin: Bool = true) -> WebSocketFrame {
        let key: WebSocketMaskingKey = [1, 2, 3, 4]
        var data = ByteBuffer(string: text)
        data.webSocketMask(key)
        return WebSocketFrame(fin: fin, opcode: opcode, maskKey: key, data: data)
    }

    func sent(_ channel: EmbeddedChannel) throws -> [WebSocketFrame] {
        var out: [WebSocketFrame] = []
        while let f = try channel.readOutbound(as: WebSocketFrame.self) { out.append(f) }
        return out
    }

    @Test func theSocketsObjectsAreFreedWhenItCloses() throws {
        final class Made: @unchecked Sendable { weak var recorder: Recorder? }
        let made = Made()
        weak var weakChannel: EmbeddedChannel?
        try {
            let channel = EmbeddedChannel()
            weakChannel = channel
            let settings = SocketChannel.Settings(maxMessageBytes: 64, pingInterval: .seconds(30))
            // As the gateway's connection does: the delegate keeps its SocketOut (which holds the handler).
            try channel.pipeline.syncOperations.addHandler(SocketHandler(settings: settings, logger: Logger(label: "test")) { out, _ in
                let recorder = Recorder()
                recorder.out = out
                made.recorder = recorder
                return recorder
            })
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            try channel.writeInbound(frame(.text, "hello"))
            #expect(made.recorder?.messages == ["hello"])
            _ = try? channel.finish()
        }()
        // The delegate holds the handler and the handler held the delegate: a cycle that kept every closed socket's
        // objects (and its channel) alive, unless the handler lets go when the channel closes.
        #expect(made.recorder == nil)
        #expect(weakChannel == nil)
    }

    @Test func fragmentsAreJoinedIntoOneMessage() throws {
        let (channel, recorder) = try socket()
        try channel.writeInbound(frame(.text, "{\"type\":", fin: false))
        try channel.writeInbound(frame(.continuation, "\"ping\",", fin: false))
        try channel.writeInbound(frame(.continuation, "\"id\":1}"))
        try channel.writeInbound(frame(.text, "whole"))
        #expect(recorder.messages == ["{\"type\":\"ping\",\"id\":1}", "whole"])
        #expect(recorder.ends == 0)
        _ = try? channel.finish()
        #expect(recorder.ends == 1)
    }

    @Test func aMessageLargerThanTheLimitAcrossFragmentsClosesWith1009() throws {
        let (channel, recorder) = try socket(maxMessageBytes: 10)
        try channel.writeInbound(frame(.text, "123456", fin: false))
        try channel.writeInbound(frame(.continuation, "789012"))
        let frames = try sent(channel)
        #expect(frames.count == 1)
        var data = try #require(frames.first).data
        #expect(frames.first?.opcode == .connectionClose)
        #expect(data.readWebSocketErrorCode() == .messageTooLarge)
        #expect(recorder.messages.isEmpty)
        #expect(recorder.ends == 1)
        // Nothing read after the close frame is handled.
        try channel.writeInbound(frame(.text, "late"))
        #expect(recorder.messages.isEmpty)
        _ = try? channel.finish()
        #expect(recorder.ends == 1)
    }

    @Test func aContinuationWithoutAMessageIsAProtocolError() throws {
        let (channel, recorder) = try socket()
        try channel.writeInbound(frame(.continuation, "x"))
        var data = try #require(try sent(channel).first).data
        #expect(data.readWebSocketErrorCode() == .protocolError)
        #expect(recorder.ends == 1)
        _ = try? channel.finish()
    }

    @Test func aPingIsAnsweredWithItsPayload() throws {
        let (channel, _) = try socket()
        try channel.writeInbound(frame(.ping, "abc"))
        let frames = try sent(channel)
        #expect(frames.map(\.opcode) == [.pong])
        #expect(frames.first.map { String(buffer: $0.data) } == "abc")
        _ = try? channel.finish()
    }

    @Test func aClientsCloseIsEchoedAndTheConnectionCloses() throws {
        let (channel, recorder) = try socket()
        var body = ByteBuffer()
        body.write(webSocketErrorCode: .goingAway)
        let key: WebSocketMaskingKey = [9, 8, 7, 6]
        body.webSocketMask(key)
        try channel.writeInbound(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: key, data: body))
        let frames = try sent(channel)
        #expect(frames.map(\.opcode) == [.connectionClose])
        var reply = try #require(frames.first).data
        #expect(reply.readWebSocketErrorCode() == .goingAway)
        #expect(!channel.isActive)
        #expect(recorder.ends == 1)
    }

    @Test func theServersCloseRefusesLaterWritesAndEndsTheConnectionAfterTheTimeout() async throws {
        let (channel, recorder) = try socket()
        let out = try #require(recorder.out)
        try await out.writeTextMessage("before")
        out.close(.policyViolation, reason: "bye")
        channel.embeddedEventLoop.run()
        try await out.writeTextMessage("after")
        channel.embeddedEventLoop.run()
        let frames = try sent(channel)
        #expect(frames.map(\.opcode) == [.text, .connectionClose])
        var close = try #require(frames.last).data
        #expect(close.readWebSocketErrorCode() == .policyViolation)
        #expect(close.readString(length: close.readableBytes) == "bye")
        #expect(recorder.ends == 1)
        #expect(channel.isActive)   // waiting for the client's answer
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(!channel.isActive)
        #expect(recorder.ends == 1)
    }

    @Test func aClientThatStopsAnsweringPingsIsClosed() throws {
        let (channel, recorder) = try socket(ping: .seconds(30))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(14_999))
        #expect(try sent(channel).isEmpty)
        // The first ping comes between 15 and 45 s (spread, so sockets opened together are not pinged at once).
        channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        #expect(try sent(channel).map(\.opcode) == [.ping])
        try channel.writeInbound(frame(.pong, ""))
        channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        #expect(try sent(channel).map(\.opcode) == [.ping])
        #expect(recorder.ends == 0)
        // No answer to that one: the next round closes the socket.
        channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        let frames = try sent(channel)
        #expect(frames.map(\.opcode) == [.connectionClose])
        var data = try #require(frames.first).data
        #expect(data.readWebSocketErrorCode() == .goingAway)
        #expect(recorder.ends == 1)
        _ = try? channel.finish()
    }
}
