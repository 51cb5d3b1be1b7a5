import Foundation
import Installer
@testable import Operations
import Synchronization
import Testing

/// Waiting for a switched member: ready means `/readyz` 200 and `/v1/version` naming the release, over the
/// member's cluster listener.
@Suite struct NodeReadinessTests {
    /// A member's IM server as seen over time: each look advances it one state.
    final class Member: Sendable {
        let states: [(ready: Int?, version: String?)]
        let looks = Mutex(0)
        let urls = Mutex<[String]>([])
        init(_ states: [(ready: Int?, version: String?)]) { self.states = states }
        func answer(_ url: String) -> (status: Int, body: Data)? {
            urls.withLock { $0.append(url) }
            let state = looks.withLock { n -> (ready: Int?, version: String?) in
                let s = states[min(n / 2, states.count - 1)]
                n += 1
                return s
            }
            if url.hasSuffix("/readyz") { return state.ready.map { ($0, Data("{\"status\":\"starting\"}".utf8)) } }
            return state.version.map { (200, Data("{\"version\":\"\($0)\",\"build\":\"b\"}".utf8)) }
        }
    }

    func readiness(_ m: Member) -> NodeReadiness { NodeReadiness(interval: .milliseconds(1)) { m.answer($0) } }

    @Test func readyOnceTheServerAnswersOnTheNewRelease() async throws {
        // Down, then starting (503), then ready on the old release, then on the new one.
        let m = Member([(nil, nil), (503, "1.2.0"), (200, "1.2.0"), (200, "1.3.0")])
        try await readiness(m).wait(node: "m2", address: "10.0.0.2", version: "1.3.0", timeout: .seconds(10))
        #expect(m.urls.withLock { $0.first } == "https://10.0.0.2:\(ClusterSettings.Port.im)/readyz")
        #expect(m.urls.withLock { $0.last } == "https://10.0.0.2:\(ClusterSettings.Port.im)/v1/version")
    }

    @Test func aServerThatStaysOnTheOldReleaseTimesOutSayingWhy() async throws {
        let m = Member([(200, "1.2.0")])
        let e = await #expect(throws: ClusterOpsError.self) {
            try await readiness(m).wait(node: "m2", address: "10.0.0.2", version: "1.3.0", timeout: .milliseconds(50))
        }
        #expect(e?.description.contains("m2 is not ready on 1.3.0") == true && e?.description.contains("it runs 1.2.0") == true, "\(String(describing: e))")
        #expect(await readiness(Member([(503, "1.3.0")])).problem(address: "a", version: "1.3.0")?.contains("/readyz answers 503") == true)
        #expect(await readiness(Member([(nil, nil)])).problem(address: "a", version: "1.3.0")?.contains("no answer") == true)
        #expect(await readiness(Member([(200, nil)])).problem(address: "a", version: "1.3.0")?.contains("does not say") == true)
    }
}
