import DurableFiles
import Foundation
import Testing

@Suite struct SubprocessTests {
    /// etcdctl txn reads its operations on standard input: what is given arrives whole, and without input the
    /// program reads /dev/null (an immediate end of file), as before.
    @Test func inputReachesTheProgramsStandardInput() throws {
        let text = "create(\"/warbler/backup/lock\") = \"0\"\n\nput /warbler/backup/lock \"m1\"\n\n\n"
        let r = try Subprocess.run(["/bin/cat"], environment: [:], input: Data(text.utf8))
        #expect(r.status == 0 && r.text == text)
        let none = try Subprocess.run(["/bin/cat"], environment: [:])
        #expect(none.status == 0 && none.output.isEmpty)
        #expect(throws: Subprocess.Failure.self) { try Subprocess.run(["/bin/cat"], input: Data(count: Subprocess.maxInput + 1)) }
    }
}
