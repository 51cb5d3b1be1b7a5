@testable import IMServer
import NIOCore
import NIOEmbedded
import Testing

/// The flushes of one event-loop tick reach the socket as one, after everything written in that tick.
@Suite struct FlushCoalescerTests {
    /// Sits between the coalescer and the socket and counts the flushes that get through.
    final class FlushCounter: ChannelOutboundHandler {
        typealias OutboundIn = NIOAny
        var flushes = 0
        var events: [String] = []
        func flush(context: ChannelHandlerContext) {
            flushes += 1
            events.append("flush")
            context.flush()
        }
        func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
            events.append("close")
            context.close(mode: mode, promise: promise)
        }
    }

    @Test func flushesOfOneTickBecomeOneAfterAllTheirWrites() throws {
        let channel = EmbeddedChannel()
        let counter = FlushCounter()
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(FlushCoalescer())
        for text in ["a", "b", "c"] {
            channel.writeAndFlush(ByteBuffer(string: text), promise: nil)
        }
        // Nothing has left yet: the flush waits for the end of the tick.
        #expect(counter.flushes == 0)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 1)
        var out = ""
        while let b = try channel.readOutbound(as: ByteBuffer.self) { out += String(buffer: b) }
        #expect(out == "abc")

        // The next tick's flush goes out by itself.
        channel.writeAndFlush(ByteBuffer(string: "d"), promise: nil)
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 2)
        #expect(try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) } == "d")
        _ = try channel.finish()
    }

    @Test func whatWasWrittenBeforeACloseInTheSameTickIsSent() throws {
        let channel = EmbeddedChannel()
        let counter = FlushCounter()
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(FlushCoalescer())
        channel.writeAndFlush(ByteBuffer(string: "refused"), promise: nil)
        let closed = channel.close()
        channel.embeddedEventLoop.run()
        try closed.wait()
        // A socket fails the writes that are not flushed when it closes: the flush must come first.
        #expect(counter.events == ["flush", "close"])
        #expect(try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) } == "refused")
    }

    @Test func aDeferredFlushIsNotLostWhenTheHandlerIsRemoved() throws {
        let channel = EmbeddedChannel()
        let counter = FlushCounter()
        let coalescer = FlushCoalescer()
        try channel.pipeline.syncOperations.addHandler(counter)
        try channel.pipeline.syncOperations.addHandler(coalescer)
        channel.writeAndFlush(ByteBuffer(string: "x"), promise: nil)
        try channel.pipeline.syncOperations.removeHandler(coalescer).wait()
        #expect(counter.flushes == 1)
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 1)
        #expect(try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) } == "x")
        _ = try channel.finish()
    }
}
