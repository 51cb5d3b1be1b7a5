@testable import Alerting
import Foundation
import Testing

@Suite struct StateStoreTests {
    @Test func savingDoesNotFollowALinkPlantedAtATemporaryName() throws {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let victim = dir + "/victim"
        // The names the old helper used: state.json.tmp, opened with O_CREAT|O_TRUNC.
        symlink(victim, dir + "/state.json.tmp")
        try StateStore(path: dir + "/state.json").save(EngineState())
        #expect(!FileManager.default.fileExists(atPath: victim))
        var st = stat()
        #expect(lstat(dir + "/state.json", &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(try StateStore(path: dir + "/state.json").load() == EngineState())
    }
}
