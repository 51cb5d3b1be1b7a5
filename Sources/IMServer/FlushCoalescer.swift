import NIOCore

/// Turns the flushes one event-loop tick asks for into one: the first flush is deferred to the end of the tick
/// (a task queued behind the ones already waiting), later ones in the same tick are absorbed by it.
///
/// Every frame a WebSocket writer task sends arrives on the event loop as its own write-and-flush, so without this
/// a burst of frames to one socket (a sync, fan-out, acks of a batch) costs one `writev` each; with it, the frames
/// queued in one tick leave in one system call. Nothing is held past the tick, so latency does not grow.
final class FlushCoalescer: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private var flushPending = false

    func flush(context: ChannelHandlerContext) {
        if flushPending { return }
        flushPending = true
        context.eventLoop.assumeIsolated().execute {
            guard self.flushPending else { return }   // removed meanwhile, and flushed then
            self.flushPending = false
            context.flush()
        }
    }

    /// Whatever was written in this tick leaves before the close (a refusal written and closed at once, say):
    /// closing fails writes that were never flushed.
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if flushPending {
            flushPending = false
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        // A flush still deferred goes out now rather than never.
        if flushPending {
            flushPending = false
            context.flush()
        }
    }
}
