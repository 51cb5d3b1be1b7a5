import Foundation
import Installer
@testable import Operations
import Testing

/// The cluster upgrade lock (an `EtcdLeaseLock` under a short, renewed lease), against `FakeEtcd`: one holder at a
/// time across members, a dead holder's lock ending with its lease, and a holder that learns it lost the lock.
@Suite struct ClusterUpgradeLockTests {
    static func lock(_ etcd: FakeEtcd, _ member: String) -> ClusterUpgradeLock {
        ClusterUpgradeLock(etcd: Etcdctl(binary: "/opt/warbler/current/embedded/etcd/usr/bin/etcdctl", endpoints: ["127.0.0.1"], system: etcd), member: member)
    }

    static let now = Date(timeIntervalSince1970: 1_796_428_800 + 3600)   // 2026-12-05 01:00 UTC

    @Test func etcdctlsKeepAliveOutputParses() throws {
        #expect(try Etcdctl.parseKeepAlive("lease 390da245bad10e05 keepalived with TTL(60)\n", status: 0))
        #expect(try !Etcdctl.parseKeepAlive("lease 390da245bad10e05 keepalived with TTL(0)\n", status: 0))
        #expect(try !Etcdctl.parseKeepAlive("Error: etcdserver: requested lease not found\n", status: 1))
        #expect(throws: ClusterOpsError.self) { try Etcdctl.parseKeepAlive("{\"level\":\"warn\"}\nError: context deadline exceeded\n", status: 1) }
    }

    @Test func oneUpgradeHoldsTheLockAndTheSecondIsToldWhoAndHowItEnds() throws {
        let etcd = FakeEtcd()
        let (m1, m2) = (Self.lock(etcd, "m1"), Self.lock(etcd, "m2"))
        guard case .acquired(let lease) = try m1.acquire(now: Self.now) else { Issue.record("m1 did not get the lock"); return }
        #expect(etcd.value(ClusterUpgradeLock.key) == "m1 \(String(lease, radix: 16)) 2026-12-05T01:00:00Z")
        #expect(etcd.commands.contains(["lease", "grant", "60"]))
        // A second run, on another member or the same one, is refused and names the holder; its lease is revoked.
        #expect(try m2.acquire(now: Self.now) == .held(by: "m1", since: "2026-12-05T01:00:00Z"))
        #expect(try m1.acquire(now: Self.now) == .held(by: "m1", since: "2026-12-05T01:00:00Z"))
        #expect(etcd.state.withLock { $0.leases } == [lease])
        #expect(m2.heldMessage(by: "m1", since: "x").contains("within 60 s"))
        // The holder finishes: the lock is gone and the next run takes it.
        let keeper = LeaseKeeper(lock: m1.lock, lease: lease, interval: 3600)
        keeper.release()
        #expect(etcd.value(ClusterUpgradeLock.key) == nil)
        guard case .acquired = try m2.acquire(now: Self.now) else { Issue.record("m2 did not get the freed lock"); return }
    }

    @Test func aCrashedUpgradesLockEndsWithItsLeaseAndTheResumeTakesIt() throws {
        let etcd = FakeEtcd()
        let (m1, m2) = (Self.lock(etcd, "m1"), Self.lock(etcd, "m2"))
        guard case .acquired(let lease) = try m1.acquire(now: Self.now) else { Issue.record("m1 did not get the lock"); return }
        // m1's process dies: nothing renews the lease; until etcd ends it, the lock stands.
        guard case .held = try m2.acquire(now: Self.now) else { Issue.record("the lock did not hold"); return }
        etcd.expire(lease)
        guard case .acquired = try m1.acquire(now: Self.now.addingTimeInterval(61)) else { Issue.record("the dead run's lock outlived its lease"); return }
    }

    @Test func theKeepersThreadRenewsUntilReleased() async throws {
        let etcd = FakeEtcd()
        let m1 = Self.lock(etcd, "m1")
        guard case .acquired(let lease) = try m1.acquire(now: Self.now) else { Issue.record("m1 did not get the lock"); return }
        let keeper = LeaseKeeper(lock: m1.lock, lease: lease, interval: 0.05).start()
        let renewal = ["lease", "keep-alive", "--once", String(lease, radix: 16)]
        for _ in 0..<100 where etcd.commands.filter({ $0 == renewal }).count < 2 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(etcd.commands.filter { $0 == renewal }.count >= 2)
        keeper.release()
        #expect(etcd.value(ClusterUpgradeLock.key) == nil)
        // Released: the thread renews no more (a renewal already under way when it was released may still land).
        try await Task.sleep(for: .milliseconds(300))
        let after = etcd.commands.count
        try await Task.sleep(for: .milliseconds(500))
        #expect(etcd.commands.count == after)
    }

    @Test func aHolderRenewsItsLeaseAndLearnsWhenItIsLost() throws {
        let etcd = FakeEtcd()
        let m1 = Self.lock(etcd, "m1")
        guard case .acquired(let lease) = try m1.acquire(now: Self.now) else { Issue.record("m1 did not get the lock"); return }
        let keeper = LeaseKeeper(lock: m1.lock, lease: lease, interval: 3600)
        defer { keeper.stop() }
        #expect(keeper.renewNow(now: Self.now))
        #expect(etcd.commands.contains(["lease", "keep-alive", "--once", String(lease, radix: 16)]))
        // etcd unreachable for less than the TTL: still held; for the TTL: lost.
        etcd.set(down: true)
        #expect(keeper.renewNow(now: Self.now.addingTimeInterval(30)))
        #expect(keeper.lost == nil)
        #expect(!keeper.renewNow(now: Self.now.addingTimeInterval(61)))
        #expect(keeper.lost?.contains("could not be renewed for 60 s") == true)
        // A lease etcd ended (its holder stalled past the TTL) is lost at the next renewal; release then leaves the
        // new holder's lock alone.
        etcd.set(down: false)
        etcd.expire(lease)
        guard case .acquired(let second) = try m1.acquire(now: Self.now) else { Issue.record("no second lock"); return }
        etcd.expire(second)
        guard case .acquired(let third) = try Self.lock(etcd, "m2").acquire(now: Self.now) else { Issue.record("m2 did not get the lock"); return }
        let stale = LeaseKeeper(lock: m1.lock, lease: second, interval: 3600)
        #expect(!stale.renewNow())
        #expect(stale.lost?.contains("gone") == true)
        stale.release()
        #expect(etcd.value(ClusterUpgradeLock.key)?.hasPrefix("m2 \(String(third, radix: 16))") == true)
    }
}
