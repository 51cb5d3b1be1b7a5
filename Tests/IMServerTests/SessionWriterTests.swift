import IMCore
@testable import IMServer
import Testing

/// A session's writer runs on the thread that queued the item (the fan-out's), unless the caller hands it to a
/// task (the committer's acks); what the writer leaves runs in a task, and items queued meanwhile follow in order.
@Suite struct SessionWriterTests {
    final class Written: @unchecked Sendable {
        let box = LockedBox<[String]>([])
        func add(_ s: String) { box.withLock { $0.append(s) } }
        var all: [String] { box.withLock { $0 } }
    }

    func name(_ o: Outgoing) -> String {
        if case .frame(.pong(let p)) = o { return "pong \(p.ref ?? "")" }
        if case .sync = o { return "sync" }
        return "other"
    }

    @Test func theWriterRunsOnTheQueuingThreadAndLeavesTheRestToATask() async throws {
        let session = Session(user: 1)
        let written = Written()
        session.startWriting { s in
            while let o = s.take() {
                if case .sync = o {
                    // Needs waiting: the rest in a task, starting with this item.
                    return { s in
                        try? await Task.sleep(for: .milliseconds(50))
                        written.add("sync (task)")
                        while let o = s.take() { written.add(self.name(o) + " (task)") }
                    }
                }
                written.add(name(o))
            }
            return nil
        }
        session.enqueue(.frame(.pong(.init(ref: "1"))))
        #expect(written.all == ["pong 1"])   // written before enqueue returned
        #expect(session.enqueueSync(.init(cursors: [:])))
        session.enqueue(.frame(.pong(.init(ref: "2"))))   // the task is writing: queued behind the sync
        #expect(written.all == ["pong 1"])
        let deadline = ContinuousClock.now + .seconds(10)
        while written.all.count < 3 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        #expect(written.all == ["pong 1", "sync (task)", "pong 2 (task)"])
        #expect(!session.isWriting)
        session.enqueue(.frame(.pong(.init(ref: "3"))))
        #expect(written.all.last == "pong 3")   // on this thread again
    }

    @Test func anItemQueuedInWriterTaskIsNotWrittenOnTheCallersThread() async throws {
        let session = Session(user: 1)
        let written = Written()
        session.startWriting { s in
            while let o = s.take() { written.add(name(o)) }
            return nil
        }
        session.enqueue(.frame(.pong(.init(ref: "ack"))), inWriterTask: true)
        let deadline = ContinuousClock.now + .seconds(10)
        while written.all.isEmpty && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(written.all == ["pong ack"])
    }
}
