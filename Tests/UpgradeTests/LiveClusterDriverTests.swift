import Installer
import Operations
import Testing
@testable import Upgrade

/// The real driver's own pieces that need no cluster: what it makes of `warbler cluster migrate`'s answer, and
/// which steps it says it cannot do.
@Suite struct LiveClusterDriverTests {
    @Test func aMigrationRunMustReachTheSchemaAsked() throws {
        let ok = CommandResult(status: 0, output: "{\"applied\":[13],\"schema\":13}\n")
        #expect(try LiveClusterUpgradeDriver.migrationRun(ok, phase: .expand, through: 13) == .init(applied: [13], schema: 13))
        // Nothing left to do (a resumed step that had finished) is fine.
        #expect(try LiveClusterUpgradeDriver.migrationRun(CommandResult(status: 0, output: "{\"applied\":[],\"schema\":13}\n"), phase: .expand, through: 13).applied == [])
        // Short of the target: the database is not what the plan expected.
        #expect(throws: ClusterUpgradeRefusal.self) {
            try LiveClusterUpgradeDriver.migrationRun(CommandResult(status: 0, output: "{\"applied\":[],\"schema\":12}\n"), phase: .expand, through: 13)
        }
        let failed = #expect(throws: ClusterUpgradeRefusal.self) {
            try LiveClusterUpgradeDriver.migrationRun(CommandResult(status: 1, output: "warbler: storage: migration failed: version 13 (x): boom\n"), phase: .contract, through: 13)
        }
        #expect(failed?.description.contains("contract migrations failed") == true && failed?.description.contains("boom") == true)
        #expect(throws: ClusterUpgradeRefusal.self) {
            try LiveClusterUpgradeDriver.migrationRun(CommandResult(status: 0, output: "Usage: warbler cluster <subcommand>\n"), phase: .expand, through: 13)
        }
    }
}
