import Foundation
import IMServer
import Installer
import Testing
@testable import Backup

/// A release that fails its upgrade may leave a config only it understood; the rollback's restore still finds where
/// the install keeps its data in it (found by the end-to-end upgrade suite: the automatic rollback stopped there).
@Suite struct RollbackConfigTests {
    @Test func aLiveConfigWithASettingThisBuildDoesNotKnowStillGivesTheDestinations() throws {
        let host = try StagedHost("lenient")
        defer { host.remove() }
        try host.write("/etc/warbler/warbler.yaml", """
            data_dir: /srv/warbler-data
            storage:
              driver: sqlite
              path: /srv/warbler-data/chat.db
            no_such_setting: 1
            """, mode: 0o640)
        #expect(throws: (any Error).self) { _ = try ServerConfig.load(path: host.path("/etc/warbler/warbler.yaml"), environment: [:]) }
        let targets = try RestoreEngine.Targets(layout: host.layout, environment: [:])
        #expect(targets.database == host.path("/srv/warbler-data/chat.db"))
        #expect(targets.dataDir == host.path("/srv/warbler-data"))
        #expect(targets.note?.contains("no_such_setting") == true)
    }

    @Test func aConfigThatIsNotYAMLIsStillRefused() throws {
        let host = try StagedHost("broken")
        defer { host.remove() }
        try host.write("/etc/warbler/warbler.yaml", "storage: [unclosed\n", mode: 0o640)
        #expect(throws: BackupError.self) { _ = try RestoreEngine.Targets(layout: host.layout, environment: [:]) }
    }
}
