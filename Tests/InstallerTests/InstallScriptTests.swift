import Foundation
import Testing

/// install.sh runs as root.
@Suite struct InstallScriptTests {
    @Test func installShWritesNoFixedNameInTmp() throws {
        let script = try String(contentsOfFile: Repo.root + "/install.sh", encoding: .utf8)
        for line in script.split(separator: "\n") where line.contains("/tmp/") && !line.trimmingCharacters(in: .whitespaces).hasPrefix("#") {
            #expect(line.contains("mktemp") && line.contains("XXXX"), "a predictable /tmp name, as root: \(line)")
        }
        #expect(script.contains("packaging/build.sh >\"$log\""), "the build's log goes to the fresh name")
    }
}
