import Foundation
import Installer
@testable import Operations
import Synchronization
import Testing

/// HAProxy's runtime API on a Unix socket, for the commands the member agent sends (`show servers state BACKEND`,
/// `show servers state`, `set server B/S addr A port P`, `set server B/S state ready|drain|maint`), answering in
/// HAProxy 2.x's own formats and keeping each slot's address and admin state as HAProxy does.
final class FakeHAProxy: Sendable {
    struct Server { var backend: String; var name: String; var address: String; var port: Int; var admin: Int }
    let servers: Mutex<[Server]>
    let commands = Mutex<[String]>([])
    let path: String
    private let fd: Int32

    init(imSlots: Int = 3) throws {
        path = "/tmp/whp-\(UUID().uuidString.prefix(8)).sock"
        // Fresh from the config: every slot `disabled` (maintenance, the 0x04 bit) at 127.0.0.1.
        servers = Mutex((1...imSlots).map { Server(backend: "im", name: "m\($0)", address: "127.0.0.1", port: 8444, admin: 0x05) })
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
            raw[path.utf8.count] = 0
        }
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard bound == 0, listen(fd, 16) == 0 else { throw ClusterOpsError("fake HAProxy: cannot listen on \(path)") }
        let listener = fd
        Thread.detachNewThread { [self] in
            while true {
                let c = accept(listener, nil, nil)
                if c < 0 { return }
                var line = [UInt8]()
                var byte: UInt8 = 0
                while read(c, &byte, 1) == 1, byte != 10 { line.append(byte) }
                let answer = Array(self.answer(String(decoding: line, as: UTF8.self)).utf8)
                _ = answer.withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
                close(c)
            }
        }
    }

    func stop() { shutdown(fd, Int32(SHUT_RDWR)); close(fd); unlink(path) }

    var runtime: HAProxyRuntime { HAProxyRuntime(socketPath: path) }

    /// The IM slot at `address`: "ready", "drain", "maint" or nil when none has it.
    func state(of address: String) -> String? {
        servers.withLock { s in
            s.first { $0.backend == "im" && $0.address == address }.map { $0.admin & 0x01 != 0 ? "maint" : $0.admin & 0x08 != 0 ? "drain" : "ready" }
        }
    }

    func answer(_ command: String) -> String {
        commands.withLock { $0.append(command) }
        let f = command.split(separator: " ").map(String.init)
        if command.hasPrefix("show servers state") {
            let backend = f.count > 3 ? f[3] : nil
            let lines = servers.withLock { s in
                s.enumerated().filter { backend == nil || $0.element.backend == backend }.map { i, v in
                    "3 \(v.backend) \(i + 1) \(v.name) \(v.address) \(v.admin & 0x01 != 0 ? 0 : 2) \(v.admin) 1 1 12 6 3 4 6 0 0 0 - \(v.port) - 1 0 - - 0"
                }
            }
            // An unknown backend: HAProxy answers with the header only.
            return "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"
                + lines.map { $0 + "\n" }.joined() + "\n"
        }
        guard f.count >= 4, f[0] == "set", f[1] == "server" else { return "Unknown command.\n" }
        let parts = f[2].split(separator: "/").map(String.init)
        return servers.withLock { s in
            guard parts.count == 2, let i = s.firstIndex(where: { $0.backend == parts[0] && $0.name == parts[1] }) else { return "No such server.\n" }
            switch f[3] {
            case "addr":
                s[i].address = f[4]; s[i].port = Int(f[6]) ?? 0
                return "IP changed from '…' to '\(f[4])', port changed from '…' to '\(f[6])' by 'stats socket command'\n"
            case "state":
                // `ready` clears forced maintenance and drain, `drain` sets drain and clears maintenance, `maint` sets it.
                switch f[4] {
                case "ready": s[i].admin &= ~0x09
                case "drain": s[i].admin = (s[i].admin & ~0x01) | 0x08
                case "maint": s[i].admin |= 0x01
                default: return "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n"
                }
                return ""
            default:
                return "unknown\n"
            }
        }
    }
}

@Suite(.serialized) struct DrainTests {
    let one = ClusterMember(name: "one", address: "10.0.0.1", roles: [.database, .etcd])
    let two = ClusterMember(name: "two", address: "10.0.0.2", roles: [.database, .etcd])
    let three = ClusterMember(name: "three", address: "10.0.0.3", roles: [.etcd])

    func slot(_ n: Int, _ addr: String, maint: Bool = false, drain: Bool = false) -> HAProxyRuntime.Slot {
        .init(backend: "im", name: "m\(n)", address: addr, port: 8444, maintenance: maint, draining: drain, operational: maint ? 0 : 2)
    }

    @Test func aMarkedMemberIsDrainedAnUnmarkedOneReadiedAndAnOperatorsDrainLeftAlone() {
        let filled = [slot(1, "10.0.0.1"), slot(2, "10.0.0.3"), slot(3, "10.0.0.2")]
        // Drain `three` (m2): only its state changes, nothing is moved.
        let drain = SlotPlan.commands(current: filled, wants: SlotPlan.plan(members: [one, two, three], slots: 3, primary: false, drain: ["three"]))
        #expect(drain == [.init(backend: "im", server: "m2", address: nil, port: 8444, state: .drain)])
        // Already drained: nothing to do.
        let drained = [slot(1, "10.0.0.1"), slot(2, "10.0.0.3", drain: true), slot(3, "10.0.0.2")]
        #expect(SlotPlan.commands(current: drained, wants: SlotPlan.plan(members: [one, two, three], slots: 3, primary: false, drain: ["three"])).isEmpty)
        // The mark is gone: back to ready.
        #expect(SlotPlan.commands(current: drained, wants: SlotPlan.plan(members: [one, two, three], slots: 3, primary: false, undrain: ["three"]))
                == [.init(backend: "im", server: "m2", address: nil, port: 8444, state: .ready)])
        // Drained by an operator (no mark ever): left as it is.
        #expect(SlotPlan.commands(current: drained, wants: SlotPlan.plan(members: [one, two, three], slots: 3, primary: false)).isEmpty)
        // A marked member filling an empty slot comes in drained.
        let fresh = [slot(1, "127.0.0.1", maint: true), slot(2, "127.0.0.1", maint: true), slot(3, "127.0.0.1", maint: true)]
        let filling = SlotPlan.commands(current: fresh, wants: SlotPlan.plan(members: [one, two, three], slots: 3, primary: false, drain: ["two"]))
        #expect(filling.map(\.state) == [.ready, .ready, .drain] && filling.allSatisfy { $0.address != nil })
    }

    @Test func anAgentAppliesMarksOfMembersOnlyAndNeverDrainsEveryMember() {
        func entry(_ key: String, _ json: String, _ rev: Int64) -> Etcdctl.Entry { .init(key: key, value: Data(json.utf8), modRevision: rev) }
        let at = "2026-12-05T13:00:00Z"
        let snapshot = DrainMarks.parse([
            entry("/warbler/drain/mark/two", #"{"node":"two","by":"one","at":"\#(at)","reason":"cluster upgrade"}"#, 7),
            entry("/warbler/drain/mark/ghost", #"{"node":"ghost","by":"one","at":"\#(at)","reason":"x"}"#, 8),
            entry("/warbler/drain/mark/three", #"{"node":"two","by":"one","at":"\#(at)","reason":"key and node differ"}"#, 9),
            entry("/warbler/drain/applied/one", #"{"member":"one","drained":{"three":5},"at":"\#(at)"}"#, 6),
        ])
        #expect(snapshot.marks.keys.sorted() == ["ghost", "two"] && snapshot.rejected.count == 1)
        let plan = DrainMarks.plan(members: ["one", "two", "three"], snapshot: snapshot, me: "one")
        // `ghost` is no member; `three` was drained by this agent and its mark is gone.
        #expect(plan.drain == ["two": 7] && plan.undrain == ["three"] && plan.note == nil)
        #expect(DrainMarks.pending(node: "two", revision: 7, members: ["one", "two", "three"], snapshot: snapshot) == ["one", "three", "two"])
        // Every member marked: none is applied.
        let all = DrainMarks.plan(members: ["two"], snapshot: snapshot, me: "two")
        #expect(all.drain.isEmpty && all.note != nil)
    }

    static func etcdctl(_ fake: FakeEtcd) -> Etcdctl { Etcdctl(binary: "/opt/warbler/current/embedded/etcd/usr/bin/etcdctl", endpoints: ["127.0.0.1"], system: fake) }

    @Test func aDrainWaitsForEveryMembersAgentAndAnUndrainPutsTheNodeBack() async throws {
        let etcd = FakeEtcd()
        let members = [one, two, three]
        for m in members { try MemberRegistry.register(m, in: Self.etcdctl(etcd)) }
        let proxies = try members.map { _ in try FakeHAProxy() }
        defer { proxies.forEach { $0.stop() } }
        let dir = NSTemporaryDirectory() + "drain-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let agents = zip(members, proxies).map { m, p in
            ClusterAgent(etcd: Self.etcdctl(etcd), member: m.name, haproxy: p.runtime, stateFile: dir + "/\(m.name).state", primaryBackend: false)
        }
        // The agents' loops, as on three hosts.
        let running = Task {
            while !Task.isCancelled {
                for a in agents { _ = try? a.reconcile() }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        defer { running.cancel() }
        let control = DrainControl(etcd: Self.etcdctl(etcd), by: "one", poll: .milliseconds(50))

        try await control.drain(node: "two", reason: "cluster upgrade", timeout: .seconds(10))
        // When drain returns, every member's HAProxy has `two` drained and the others ready.
        for p in proxies {
            #expect(p.state(of: "10.0.0.2") == "drain" && p.state(of: "10.0.0.1") == "ready" && p.state(of: "10.0.0.3") == "ready")
        }
        let mark = try #require(etcd.value("/warbler/drain/mark/two"))
        #expect(mark.contains(#""by":"one""#) && mark.contains("cluster upgrade"))
        // Only one member drained at a time.
        await #expect(throws: ClusterOpsError.self) { try await control.drain(node: "three", reason: "cluster upgrade", timeout: .seconds(1)) }

        try await control.undrain(node: "two", timeout: .seconds(10))
        for p in proxies { #expect(p.state(of: "10.0.0.2") == "ready") }
        #expect(etcd.value("/warbler/drain/mark/two") == nil)
        // The state file was saved after each change.
        #expect(FileManager.default.fileExists(atPath: dir + "/three.state"))
    }

    @Test func aDrainThatAMemberDoesNotApplyFailsNamingIt() async throws {
        let etcd = FakeEtcd()
        let members = [one, two, three]
        for m in members { try MemberRegistry.register(m, in: Self.etcdctl(etcd)) }
        let proxies = try members.map { _ in try FakeHAProxy() }
        defer { proxies.forEach { $0.stop() } }
        let dir = NSTemporaryDirectory() + "drain-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // `three`'s agent is not running.
        let agents = zip(members, proxies).prefix(2).map { m, p in
            ClusterAgent(etcd: Self.etcdctl(etcd), member: m.name, haproxy: p.runtime, stateFile: dir + "/\(m.name).state", primaryBackend: false)
        }
        let running = Task {
            while !Task.isCancelled {
                for a in agents { _ = try? a.reconcile() }
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        defer { running.cancel() }
        let control = DrainControl(etcd: Self.etcdctl(etcd), by: "one", poll: .milliseconds(50))
        do {
            try await control.drain(node: "two", reason: "cluster upgrade", timeout: .seconds(1))
            Issue.record("the drain succeeded without three's agent")
        } catch let error as ClusterOpsError {
            #expect(error.description.hasPrefix("the cluster agent of three has not drained two in its HAProxy within 1.0 seconds"), "\(error)")
        }
        await #expect(throws: ClusterOpsError.self) { try await control.drain(node: "nobody", reason: "x", timeout: .seconds(1)) }
    }
}
