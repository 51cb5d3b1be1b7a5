import Foundation
import Installer
@testable import Operations
import Synchronization
import Testing

/// etcd as etcdctl shows it, for the commands the daily backup lock uses (lease grant/revoke, txn, get --prefix,
/// put, del), answering in etcdctl 3.4's own output formats and recording every command. Every member's etcdctl
/// reaches this one store, as every member's reaches the one cluster.
final class FakeEtcd: System {
    struct KV { var value: String; var lease: UInt64?; var created: Int; var modified: Int = 0 }
    struct State {
        var kvs: [String: KV] = [:]
        var leases: Set<UInt64> = []
        var nextLease: UInt64 = 0x390da245bad10e05
        var revision = 1
        var commands: [[String]] = []
        /// When set, every command fails as etcdctl does when no endpoint answers.
        var down = false
    }
    let state = Mutex(State())

    var commands: [[String]] { state.withLock { $0.commands } }
    func set(down: Bool) { state.withLock { $0.down = down } }
    /// A lease etcd ended by itself (its holder died and the TTL ran out): its keys go with it.
    func expire(_ lease: UInt64) { state.withLock { s in s.leases.remove(lease); s.kvs = s.kvs.filter { $0.value.lease != lease } } }
    func value(_ key: String) -> String? { state.withLock { $0.kvs[key]?.value } }
    var keys: [String] { state.withLock { $0.kvs.keys.sorted() } }

    func run(_ argv: [String], as user: String?) throws -> CommandResult { try answer(argv, input: nil) }
    func run(_ argv: [String], as user: String?, input: Data) throws -> CommandResult { try answer(argv, input: String(decoding: input, as: UTF8.self)) }

    private func answer(_ argv: [String], input: String?) throws -> CommandResult {
        // etcdctl --endpoints E --cacert C --cert C --key K --command-timeout T ARGS…
        #expect(argv.count > 11 && argv[1] == "--endpoints" && argv[9] == "--command-timeout")
        let args = Array(argv.dropFirst(11))
        return state.withLock { s in
            s.commands.append(args)
            if s.down {
                return CommandResult(status: 1, output: "{\"level\":\"warn\",\"msg\":\"retrying of unary invoker failed\"}\nError: context deadline exceeded\n")
            }
            func header() -> String { "{\"cluster_id\":15118495548433857066,\"member_id\":13668033151171901709,\"revision\":\(s.revision),\"raft_term\":2}" }
            func kvJSON(_ key: String, _ kv: KV) -> String {
                "{\"key\":\"\(Data(key.utf8).base64EncodedString())\",\"create_revision\":\(kv.created),\"mod_revision\":\(max(kv.modified, kv.created)),\"version\":1,\"value\":\"\(Data(kv.value.utf8).base64EncodedString())\"\(kv.lease.map { ",\"lease\":\($0)" } ?? "")}"
            }
            func put(_ key: String, _ value: String, lease: UInt64?) -> Bool {
                if let lease, !s.leases.contains(lease) { return false }
                s.revision += 1
                s.kvs[key] = KV(value: value, lease: lease, created: s.kvs[key]?.created ?? s.revision, modified: s.revision)
                return true
            }
            switch (args.first, args.dropFirst().first) {
            case ("lease", "grant"):
                let id = s.nextLease
                s.nextLease += 1
                s.leases.insert(id)
                return CommandResult(status: 0, output: "lease \(String(id, radix: 16)) granted with TTL(\(args[2])s)\n")
            case ("lease", "revoke"):
                guard let id = UInt64(args[2], radix: 16), s.leases.remove(id) != nil else {
                    return CommandResult(status: 1, output: "Error: etcdserver: requested lease not found\n")
                }
                s.kvs = s.kvs.filter { $0.value.lease != id }
                return CommandResult(status: 0, output: "lease \(args[2]) revoked\n")
            case ("lease", "keep-alive"):
                #expect(args.count == 4 && args[2] == "--once")
                guard let id = UInt64(args[3], radix: 16), s.leases.contains(id) else {
                    return CommandResult(status: 1, output: "Error: etcdserver: requested lease not found\n")
                }
                return CommandResult(status: 0, output: "lease \(args[3]) keepalived with TTL(60)\n")
            case ("txn", _):
                #expect(args == ["txn", "-w", "json"])
                let sections = (input ?? "").components(separatedBy: "\n\n")
                let compares = sections[0].split(separator: "\n").map(String.init)
                let ok = compares.allSatisfy { line in
                    guard line.hasPrefix("create(\""), line.hasSuffix("\") = \"0\"") else { return false }
                    let key = String(line.dropFirst(8).dropLast(8))
                    return s.kvs[key] == nil
                }
                let ops = (ok ? sections[1] : sections[2]).split(separator: "\n").map(String.init)
                var responses: [String] = []
                for op in ops {
                    if op.hasPrefix("put ") {
                        var rest = op.dropFirst(4)
                        var lease: UInt64?
                        if rest.hasPrefix("--lease=") {
                            let id = rest.dropFirst(8).prefix { $0 != " " }
                            lease = UInt64(id, radix: 16)
                            rest = rest.dropFirst(8 + id.count + 1)
                        }
                        let key = rest.prefix { $0 != " " }
                        let value = rest.dropFirst(key.count + 1).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                        guard put(String(key), value, lease: lease) else {
                            return CommandResult(status: 1, output: "Error: etcdserver: requested lease not found\n")
                        }
                        responses.append("{\"Response\":{\"ResponsePut\":{\"header\":{\"revision\":\(s.revision)}}}}")
                    } else if op.hasPrefix("get ") {
                        let key = String(op.dropFirst(4))
                        let kvs = s.kvs[key].map { ",\"kvs\":[\(kvJSON(key, $0))],\"count\":1" } ?? ""
                        responses.append("{\"Response\":{\"ResponseRange\":{\"header\":{\"revision\":\(s.revision)}\(kvs)}}}")
                    }
                }
                return CommandResult(status: 0, output: "{\"header\":\(header()),\(ok ? "\"succeeded\":true," : "")\"responses\":[\(responses.joined(separator: ","))]}\n")
            case ("get", _):
                #expect(args.contains("--prefix") && args.contains("json"))
                let found = s.kvs.keys.filter { $0.hasPrefix(args[1]) }.sorted()
                let kvs = found.isEmpty ? "" : ",\"kvs\":[\(found.map { kvJSON($0, s.kvs[$0]!) }.joined(separator: ","))],\"count\":\(found.count)"
                return CommandResult(status: 0, output: "{\"header\":\(header())\(kvs)}\n")
            case ("put", _):
                _ = put(args[1], args[2], lease: nil)
                return CommandResult(status: 0, output: "OK\n")
            case ("del", _):
                let gone = s.kvs.removeValue(forKey: args[1]) != nil
                return CommandResult(status: 0, output: gone ? "1\n" : "0\n")
            default:
                Issue.record("etcdctl \(args) is not a command the backup lock uses")
                return CommandResult(status: 1, output: "Error: unknown command\n")
            }
        }
    }

    // Not a file system or a service manager: the lock uses none of these.
    func info(_ path: String) throws -> FileInfo? { throw SystemError("fake etcd: no files") }
    func read(_ path: String) throws -> Data { throw SystemError("fake etcd: no files") }
    func sha256(_ path: String) throws -> Data { throw SystemError("fake etcd: no files") }
    func write(_ path: String, _ data: Data, mode: UInt16, owner: Owner?) throws { throw SystemError("fake etcd: no files") }
    func copy(from source: String, to path: String, mode: UInt16, owner: Owner?) throws { throw SystemError("fake etcd: no files") }
    func makeDirectory(_ path: String, mode: UInt16, owner: Owner?) throws { throw SystemError("fake etcd: no files") }
    func setAttributes(_ path: String, mode: UInt16, owner: Owner?) throws { throw SystemError("fake etcd: no files") }
    func symlink(_ path: String, to target: String) throws { throw SystemError("fake etcd: no files") }
    func remove(_ path: String) throws { throw SystemError("fake etcd: no files") }
    func removeTree(_ path: String) throws { throw SystemError("fake etcd: no files") }
    func selectInit(_ initSystem: InitSystem) {}
    func userExists(_ name: String) -> Bool { false }
    func createSystemUser(_ name: String, home: String) throws { throw SystemError("fake etcd: no users") }
    func serviceStatus(_ unit: String) throws -> ServiceStatus { throw SystemError("fake etcd: no services") }
    func perform(_ action: ServiceAction) throws { throw SystemError("fake etcd: no services") }
    func now() -> Date { Date() }
}

@Suite struct DailyBackupLockTests {
    // Real etcdctl 3.4.23 output (the version the release embeds), captured against a real etcd.
    static let leaseGranted = "lease 390da245bad10e05 granted with TTL(600s)\n"
    static let txnSucceeded = #"{"header":{"cluster_id":15118495548433857066,"member_id":13668033151171901709,"revision":2,"raft_term":2},"succeeded":true,"responses":[{"Response":{"ResponsePut":{"header":{"revision":2}}}}]}"# + "\n"
    static let txnFailedLockHeld = #"{"header":{"cluster_id":15118495548433857066,"member_id":13668033151171901709,"revision":2,"raft_term":2},"responses":[{"Response":{"ResponseRange":{"header":{"revision":2},"kvs":[{"key":"L3dhcmJsZXIvYmFja3VwL2xvY2s=","create_revision":2,"mod_revision":2,"version":1,"value":"bTEgMzkwZGEyNDViYWQxMGUwNQ==","lease":4111120455229836805}],"count":1}}}]}"# + "\n"
    static let txnFailedBoth = #"{"header":{"cluster_id":15118495548433857066,"member_id":13668033151171901709,"revision":3,"raft_term":2},"responses":[{"Response":{"ResponseRange":{"header":{"revision":3},"kvs":[{"key":"L3dhcmJsZXIvYmFja3VwL2xvY2s=","create_revision":2,"mod_revision":2,"version":1,"value":"bTEgMzkwZGEyNDViYWQxMGUwNQ==","lease":4111120455229836805}],"count":1}}},{"Response":{"ResponseRange":{"header":{"revision":3},"kvs":[{"key":"L3dhcmJsZXIvYmFja3VwL2RheS8yMDI2LTEyLTA0","create_revision":3,"mod_revision":3,"version":1,"value":"bTMgMjAyNi0xMi0wNFQwMDozMTowMlo="}],"count":1}}}]}"# + "\n"
    static let statusFields = """
        "ClusterID" : 15118495548433857066
        "MemberID" : 13668033151171901709
        "Revision" : 1
        "RaftTerm" : 2
        "Version" : "3.4.23"
        "DBSize" : 20480
        "Leader" : 13668033151171901709
        "IsLearner" : false
        "RaftIndex" : 5
        "RaftTerm" : 2
        "RaftAppliedIndex" : 5
        "Errors" : []
        "Endpoint" : "http://127.0.0.1:23791"

        """

    @Test func etcdctlsLeaseTransactionAndStatusOutputParse() throws {
        #expect(try Etcdctl.parseLeaseGrant(Self.leaseGranted) == 0x390da245bad10e05)
        #expect(throws: ClusterOpsError.self) { try Etcdctl.parseLeaseGrant("Error: context deadline exceeded\n") }
        #expect(try Etcdctl.parseTxn(Self.txnSucceeded) == .init(succeeded: true, values: [:]))
        #expect(try Etcdctl.parseTxn(Self.txnFailedLockHeld) == .init(succeeded: false, values: ["/warbler/backup/lock": "m1 390da245bad10e05"]))
        #expect(try Etcdctl.parseTxn(Self.txnFailedBoth) == .init(succeeded: false, values: [
            "/warbler/backup/lock": "m1 390da245bad10e05", "/warbler/backup/day/2026-12-04": "m3 2026-12-04T00:31:02Z"]))
        #expect(throws: ClusterOpsError.self) { try Etcdctl.parseTxn("Error: etcdserver: requested lease not found\n") }
        #expect(try Etcdctl.parseClusterID(Self.statusFields) == 15118495548433857066)
        // The input etcdctl txn read in that capture.
        #expect(Etcdctl.txnInput("/warbler/backup/lock", "m1 390da245bad10e05", lease: 0x390da245bad10e05,
                                 absent: ["/warbler/backup/lock", "/warbler/backup/day/2026-12-05"]) == """
            create("/warbler/backup/lock") = "0"
            create("/warbler/backup/day/2026-12-05") = "0"

            put --lease=390da245bad10e05 /warbler/backup/lock "m1 390da245bad10e05"

            get /warbler/backup/lock
            get /warbler/backup/day/2026-12-05


            """)
    }

    static func lock(_ etcd: FakeEtcd, _ member: String) -> DailyBackupLock {
        DailyBackupLock(etcd: Etcdctl(binary: "/opt/warbler/current/embedded/etcd/usr/bin/etcdctl", endpoints: ["127.0.0.1"], system: etcd), member: member)
    }

    static let morning = Date(timeIntervalSince1970: 1_796_428_800 + 900)   // 2026-12-05 00:15 UTC

    @Test func oneMemberTakesTheDaysBackupAndTheOthersSayWhoHasIt() throws {
        let etcd = FakeEtcd()
        let (m1, m2, m3) = (Self.lock(etcd, "m1"), Self.lock(etcd, "m2"), Self.lock(etcd, "m3"))
        guard case .acquired(let lease) = try m1.acquire(now: Self.morning) else { Issue.record("m1 did not get the lock"); return }
        #expect(etcd.value(DailyBackupLock.lockKey) == "m1 \(String(lease, radix: 16)) 2026-12-05")
        // While m1 runs, the others skip and name it; their own leases do not linger.
        #expect(try m2.acquire(now: Self.morning) == .held(by: "m1"))
        #expect(try m3.acquire(now: Self.morning.addingTimeInterval(600)) == .held(by: "m1"))
        #expect(etcd.state.withLock { $0.leases } == [lease])
        // A member that did not take it leaves the lock alone at its release.
        #expect(try m2.release(succeeded: true, now: Self.morning).held == false)
        #expect(etcd.value(DailyBackupLock.lockKey) != nil)
        // m1 finishes: today's mark, the lock gone.
        #expect(try m1.release(succeeded: true, now: Self.morning.addingTimeInterval(1200)).held)
        #expect(etcd.value(DailyBackupLock.lockKey) == nil)
        #expect(etcd.value(DailyBackupLock.dayPrefix + "2026-12-05")?.hasPrefix("m1 2026-12-05T00:35:00") == true)
        // Later the same day (a timer that fired late, a host that booted): today's is taken.
        guard case .done(let mark) = try m3.acquire(now: Self.morning.addingTimeInterval(3000)) else { Issue.record("m3 took a second backup"); return }
        #expect(mark.hasPrefix("m1 "))
        // The next day the first to ask takes it, and its mark replaces the old day's.
        let tomorrow = Self.morning.addingTimeInterval(86_400)
        guard case .acquired = try m2.acquire(now: tomorrow) else { Issue.record("m2 did not get tomorrow's lock"); return }
        #expect(try m1.acquire(now: tomorrow) == .held(by: "m2"))
        _ = try m2.release(succeeded: true, now: tomorrow)
        #expect(etcd.keys == [DailyBackupLock.dayPrefix + "2026-12-06"])
    }

    @Test func aFailedRunLeavesTheDayOpenAndADeadHoldersLockEndsWithItsLease() throws {
        let etcd = FakeEtcd()
        let (m1, m2) = (Self.lock(etcd, "m1"), Self.lock(etcd, "m2"))
        guard case .acquired = try m1.acquire(now: Self.morning) else { Issue.record("m1 did not get the lock"); return }
        // The backup failed: no mark, so another member's run may take today's.
        _ = try m1.release(succeeded: false, now: Self.morning)
        #expect(etcd.keys.isEmpty)
        guard case .acquired(let lease) = try m2.acquire(now: Self.morning) else { Issue.record("m2 did not get the lock"); return }
        #expect(Self.lock(etcd, "m2").ttl == 6 * 3600 + 600)
        #expect(etcd.commands.contains(["lease", "grant", String(6 * 3600 + 600)]))
        // m2 dies holding it: until its lease ends the others skip; then one takes it.
        #expect(try m1.acquire(now: Self.morning) == .held(by: "m2"))
        etcd.expire(lease)
        guard case .acquired = try m1.acquire(now: Self.morning) else { Issue.record("the dead holder's lock outlived its lease"); return }
    }

    @Test func anUnreachableEtcdIsAnErrorNotASkip() throws {
        let etcd = FakeEtcd()
        etcd.set(down: true)
        #expect(throws: ClusterOpsError.self) { _ = try Self.lock(etcd, "m1").acquire(now: Self.morning) }
    }
}
