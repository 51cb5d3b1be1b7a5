import DurableFiles
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct AtomicFileTests {
    let dir: String

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("atomicfile-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    func mode(_ path: String) -> mode_t {
        var st = stat()
        return lstat(path, &st) == 0 ? st.st_mode & 0o7777 : 0
    }

    @Test func theTemporaryFileHasTheFinalModeFromCreationEvenWithAnOpenUmask() throws {
        let old = umask(0)
        defer { umask(old) }
        var seen: mode_t = 0
        try AtomicFile.write(to: dir + "/key", mode: 0o600) { fd, tmp in
            var st = stat()
            fstat(fd, &st)
            seen = st.st_mode & 0o7777
            #expect(tmp.hasPrefix(dir + "/.key."))
        }
        #expect(seen == 0o600)
        #expect(mode(dir + "/key") == 0o600)
    }

    @Test func replacesAndLeavesNoTemporaryFilesBehind() throws {
        try AtomicFile.write(Data("one".utf8), to: dir + "/f", mode: 0o640)
        try AtomicFile.write(Data("two".utf8), to: dir + "/f", mode: 0o644)
        #expect(try String(contentsOfFile: dir + "/f", encoding: .utf8) == "two")
        #expect(mode(dir + "/f") == 0o644)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["f"])
    }

    @Test func aFailedWriteLeavesTheOldFileAndNoTemporaryFile() throws {
        try AtomicFile.write(Data("old".utf8), to: dir + "/f")
        struct Boom: Error {}
        #expect(throws: Boom.self) { try AtomicFile.write(to: dir + "/f") { _, _ in throw Boom() } }
        #expect(try String(contentsOfFile: dir + "/f", encoding: .utf8) == "old")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["f"])
    }

    @Test func createRefusesAnExistingFileOrAPlantedSymlinkAndWritesNothingThroughIt() throws {
        let victim = dir + "/victim"
        try Data("mine".utf8).write(to: URL(fileURLWithPath: victim))
        symlink(victim, dir + "/key")
        symlink(dir + "/nowhere", dir + "/dangling")
        for path in [dir + "/key", dir + "/dangling", victim] {
            let error = #expect(throws: AtomicFileError.self) { try AtomicFile.create(Data("secret".utf8), at: path) }
            #expect(error?.exists == true)
        }
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "mine")
        #expect(!FileManager.default.fileExists(atPath: dir + "/nowhere"))
        try AtomicFile.create(Data("secret".utf8), at: dir + "/new", mode: 0o600)
        #expect(mode(dir + "/new") == 0o600)
        #expect(Set(try FileManager.default.contentsOfDirectory(atPath: dir)) == ["victim", "key", "dangling", "new"])
    }

    @Test func temporaryFilesAreNotPredictableAndDoNotFollowSymlinks() throws {
        let a = try AtomicFile.createTemporary(besides: dir + "/out")
        let b = try AtomicFile.createTemporary(besides: dir + "/out")
        close(a.fd); close(b.fd)
        #expect(a.path != b.path)
        #expect(mode(a.path) == 0o600)
    }
}
