import Operations
import Testing

/// `warbler cluster migrate --phase contract`, also when run by hand, refuses while any member runs another release.
@Suite struct ClusterMigrateTests {
    @Test func contractMigrationsWaitForEveryMemberOnTheRelease() {
        #expect(ClusterTasks.contractRefusal(nodes: [("m1", "1.3.0"), ("m2", "1.3.0")], release: "1.3.0") == nil)
        let why = ClusterTasks.contractRefusal(nodes: [("m1", "1.3.0"), ("m2", "1.2.0"), ("m3", nil)], release: "1.3.0")
        #expect(why?.contains("m2 runs 1.2.0, m3 does not say which release it runs") == true, "\(why ?? "")")
        #expect(why?.contains("upgrade those members first") == true)
    }
}
