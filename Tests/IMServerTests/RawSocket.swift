import Foundation
import HummingbirdWSClient
import IMCore
import Logging
import NIOWebSocket
import Testing

/// A bare WebSocket for protocol tests: sends exactly the text it is given and collects what comes back.
final class RawSocket: Sendable {
    enum Out: Sendable { case text(String), close }
    let frames: AsyncStream<String>
    private let out: AsyncStream<Out>.Continuation
    let task: Task<Void, Never>
    private let closeFrame = Mutexed<WebSocketCloseFrame?>(nil)

    init(url: String, maxFrameSize: Int = 1 << 20) {
        let (frames, framesIn) = AsyncStream.makeStream(of: String.self)
        let (outStream, out) = AsyncStream.makeStream(of: Out.self)
        self.frames = frames
        self.out = out
        let closeFrame = self.closeFrame
        task = Task {
            var logger = Logger(label: "raw")
            logger.logLevel = .critical
            let close = try? await WebSocketClient.connect(url: url, configuration: .init(maxFrameSize: maxFrameSize), logger: logger) { inbound, outbound, _ in
                await withTaskGroup(of: Void.self) { group in
                    group.addTask {
                        do {
                            for try await m in inbound.messages(maxSize: 1 << 22) {
                                if case .text(let t) = m { framesIn.yield(t) }
                            }
                        } catch {}
                    }
                    group.addTask {
                        for await o in outStream {
                            switch o {
                            case .text(let t): try? await outbound.write(.text(t))
                            case .close: try? await outbound.close(.normalClosure, reason: nil); return
                            }
                        }
                    }
                    await group.next()
                    group.cancelAll()
                }
            }
            closeFrame.withLock { $0 = close ?? nil }
            framesIn.finish()
        }
    }

    /// Reads (and drops) frames until the server closes the socket; the close code it sent, if any.
    func closeCode(timeout: Duration = .seconds(10)) async -> WebSocketErrorCode? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await next(timeout: deadline - ContinuousClock.now) == nil { break }
        }
        return closeFrame.withLock { $0?.closeCode }
    }

    func send(_ text: String) { out.yield(.text(text)) }
    func send(_ frame: ClientFrame) { send(FrameCodec.encode(frame)) }
    func close() { out.yield(.close); out.finish() }

    /// The next server frame, or nil when the socket closed or `timeout` passed.
    func next(timeout: Duration = .seconds(10)) async -> ServerFrame? {
        await withTaskGroup(of: ServerFrame?.self) { group in
            group.addTask { [frames] in
                for await t in frames { return try? FrameCodec.decodeServer(t) }
                return nil
            }
            group.addTask { try? await Task.sleep(for: timeout); return nil }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// Skips frames until one matches.
    func next<T>(timeout: Duration = .seconds(10), _ match: (ServerFrame) -> T?) async -> T? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard let f = await next(timeout: deadline - ContinuousClock.now) else { return nil }
            if let t = match(f) { return t }
        }
        return nil
    }
}

/// The server's WebSocket URL.
func wsURL(_ server: TestServer) -> String { "ws://127.0.0.1:\(server.port)/v1/ws" }

/// A raw socket that has authenticated as `user` and seen its `ready`.
func authed(_ server: TestServer, _ user: TestUser) async throws -> RawSocket {
    let s = RawSocket(url: wsURL(server))
    s.send(.auth(.init(token: try #require(await user.client.session).accessToken)))
    let ready = await s.next { if case .ready(let r) = $0 { return r }; return nil }
    #expect(ready?.user == user.id)
    return s
}
