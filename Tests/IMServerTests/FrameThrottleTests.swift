import IMCore
@testable import IMServer
import Testing

/// Per-connection frame limits with plain values and a hand-moved clock.
@Suite struct FrameThrottleTests {
    let t0 = ContinuousClock.now
    var limits: FrameThrottle.Limits { .init(typingPerSecond: 5, receiptsPerSecond: 10, syncsPerSecond: 2) }

    @Test func typingIsCoalescedAndThenLimited() {
        var throttle = FrameThrottle(limits: limits)
        #expect(throttle.typing(.init(conv: 1, active: true), now: t0) == .allow)
        #expect(throttle.typing(.init(conv: 1, active: true), now: t0) == .coalesce)
        #expect(throttle.typing(.init(conv: 1, active: false), now: t0) == .allow)
        #expect(throttle.typing(.init(conv: 2, active: true), now: t0) == .allow)
        // Burst 10: the rest of this instant's frames are over the bucket.
        var verdicts: [FrameThrottle.Verdict] = []
        for i in 0..<10 { verdicts.append(throttle.typing(.init(conv: 3 + Int64(i), active: true), now: t0)) }
        #expect(verdicts.filter { $0 == .allow }.count == 6)
        #expect(verdicts.contains { if case .limit(let wait) = $0 { wait > 0 } else { false } })
        // The same state again after the repeat interval is news again.
        #expect(throttle.typing(.init(conv: 1, active: false), now: t0 + .seconds(4)) == .allow)
    }

    @Test func receiptsThatDoNotAdvanceAreCoalesced() {
        var throttle = FrameThrottle(limits: limits)
        #expect(throttle.receipt(.init(conv: 1, kind: .read, seq: 5), now: t0) == .allow)
        #expect(throttle.receipt(.init(conv: 1, kind: .read, seq: 5), now: t0) == .coalesce)
        #expect(throttle.receipt(.init(conv: 1, kind: .read, seq: 3), now: t0) == .coalesce)
        #expect(throttle.receipt(.init(conv: 1, kind: .delivered, seq: 5), now: t0) == .allow)
        #expect(throttle.receipt(.init(conv: 1, kind: .read, seq: 6), now: t0) == .allow)
    }

    @Test func aConnectionThatKeepsGoingOverItsLimitsIsAbusive() {
        var throttle = FrameThrottle(limits: limits)
        var verdicts: [FrameThrottle.Verdict] = []
        for i in 0..<200 { verdicts.append(throttle.receipt(.init(conv: 1, kind: .read, seq: Int64(i + 1)), now: t0)) }
        #expect(verdicts.prefix(20).allSatisfy { $0 == .allow })
        #expect(verdicts.contains { if case .limit = $0 { true } else { false } })
        #expect(verdicts.last == .abusive)
        // Slowing down earns the connection its place back.
        var later = FrameThrottle(limits: limits)
        for s in 0..<60 { _ = later.receipt(.init(conv: 1, kind: .read, seq: Int64(s + 1)), now: t0 + .seconds(s)) }
        #expect(later.receipt(.init(conv: 1, kind: .read, seq: 1000), now: t0 + .seconds(61)) == .allow)
    }

    @Test func syncsHaveTheirOwnBucket() {
        var throttle = FrameThrottle(limits: limits)
        let verdicts = (0..<8).map { _ in throttle.sync(now: t0) }
        #expect(verdicts.prefix(5).allSatisfy { $0 == .allow })
        #expect(verdicts.dropFirst(5).allSatisfy { if case .limit = $0 { true } else { false } })
    }

    @Test func reauthenticationIsRareByNature() {
        var throttle = FrameThrottle(limits: limits)
        let verdicts = (0..<7).map { _ in throttle.reauthentication(now: t0) }
        #expect(verdicts.prefix(5).allSatisfy { $0 == .allow })
        #expect(verdicts.dropFirst(5).allSatisfy { if case .limit = $0 { true } else { false } })
        #expect(throttle.reauthentication(now: t0 + .seconds(2)) == .allow)
    }

    @Test func aSessionQueueIsBoundedByBytesNotOnlyByCount() async {
        let session = Session(user: 1, maxQueued: 20_000, maxQueuedBytes: 1 << 20)
        let big = Message(conversation: 1, seq: 1, sender: 2, cid: "x", kind: .text, text: String(repeating: "x", count: 60_000), ts: 1)
        let frame = FrameCodec.encode(.msg(big))
        for _ in 0..<40 { session.enqueue(.message(big, arrival: nil, frame: frame)) }
        var items: [Outgoing] = []
        for await o in session.stream { items.append(o) }
        // Far under 20,000 frames, but over a MiB: the queue ends with a close instead of growing.
        #expect(items.count < 20)
        guard case .close(_, let code)? = items.last else { Issue.record("no close: \(items.count) items"); return }
        #expect(code == .goingAway)
    }
}
