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

    /// A descriptor the parent holds without close-on-exec (a listening socket, as NIO's are) is not the child's:
    /// the upgrade receiver's port stayed taken by what its install started under the built-in supervisor.
    @Test func theChildInheritsNoDescriptorBeyondItsStandardOnes() throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        #expect(fcntl(fds[1], F_GETFD) & FD_CLOEXEC == 0, "the test's descriptor must be inheritable")
        let r = try Subprocess.run(["/bin/sh", "-c", "if [ -e /proc/$$/fd/\(fds[1]) ]; then echo inherited; else echo closed; fi; ls /proc/$$/fd"],
                                   environment: [:])
        #expect(r.status == 0)
        #expect(r.text.hasPrefix("closed\n"), "\(r.text)")
    }
}
