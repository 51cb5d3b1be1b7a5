import CHostShims
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Makes a `posix_spawn` child start with only the descriptors its file actions set up (0, 1, 2): every one from 3 up
/// is closed in it. Without this a daemon's sockets outlive it in what it starts: the upgrade receiver's listener,
/// inherited by the components its install restarted under the built-in supervisor, kept the port, and the
/// receiver could not listen again after the switch ("Address already in use", e2e-cluster-supervisor.sh). Add it
/// after the actions that use those descriptors (a dup2 from a higher one). On a glibc older than 2.34 it does nothing.
public func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
    _ = warbler_spawn_close_from(&actions, 3)
}

/// Runs a program to completion and collects what it printed, through `posix_spawn` directly.
///
/// Not Foundation's `Process`: on Linux with Swift 6.3.1 its `run()` reads `/proc/self/fd` entries past the end of
/// glibc's buffer (swift-corelibs-foundation PR #5472) and crashes the whole process now and then, more often the
/// more descriptors are open — a server, or a test run, that spawns commands while it holds many sockets.
public enum Subprocess {
    public struct Result: Sendable, Equatable {
        public var status: Int32
        /// Standard output and standard error, interleaved as written.
        public var output: Data
        public var text: String { String(decoding: output, as: UTF8.self) }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The most standard input `run` takes: it is written into the pipe before the child reads, so it must fit the
    /// pipe's buffer (64 KiB on Linux) or the write would wait for a reader that is not reading yet.
    public static let maxInput = 16 << 10

    /// Runs `argv` (`argv[0]` an absolute path, or a name looked up in `PATH`) with `environment` (default: this
    /// process's, as Foundation's `Process` does), standard input from `input` (at most `maxInput` bytes; nil:
    /// /dev/null); returns its exit status (128 + N when killed by signal N) and its output.
    public static func run(_ argv: [String], environment: [String: String]? = nil, input: Data? = nil) throws -> Result {
        guard let first = argv.first else { throw Failure(description: "no command to run") }
        if let input, input.count > maxInput { throw Failure(description: "\(input.count) bytes of input for \(first); at most \(maxInput)") }
        let environment = environment ?? ProcessInfo.processInfo.environment
        let path = first.hasPrefix("/") ? first : try which(first, path: environment["PATH"] ?? defaultPath)
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw Failure(description: "cannot make a pipe for \(first): \(String(cString: strerror(errno)))") }
        let (readEnd, writeEnd) = (fds[0], fds[1])
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var inputRead: Int32 = -1
        if let input {
            var ifds: [Int32] = [0, 0]
            guard pipe(&ifds) == 0 else { close(readEnd); close(writeEnd); throw Failure(description: "cannot make a pipe for \(first): \(String(cString: strerror(errno)))") }
            _ = fcntl(ifds[1], F_SETFD, FD_CLOEXEC)
            // Small enough for the pipe's buffer: written whole now, then the end closed so the child sees EOF.
            let written = input.withUnsafeBytes { write(ifds[1], $0.baseAddress, $0.count) }
            close(ifds[1])
            guard written == input.count else {
                close(ifds[0]); close(readEnd); close(writeEnd)
                throw Failure(description: "cannot hand \(first) its input: \(String(cString: strerror(errno)))")
            }
            inputRead = ifds[0]
            posix_spawn_file_actions_adddup2(&actions, inputRead, 0)
            posix_spawn_file_actions_addclose(&actions, inputRead)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 1)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, 2)
        posix_spawn_file_actions_addclose(&actions, writeEnd)
        closeInheritedDescriptors(&actions)
        let env = environment.map { "\($0)=\($1)" }
        let cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        let cenv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) }; cenv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, path, &actions, nil, cargs, cenv)
        close(writeEnd)
        if inputRead >= 0 { close(inputRead) }
        guard rc == 0 else {
            close(readEnd)
            throw Failure(description: "cannot run \(path): \(String(cString: strerror(rc)))")
        }
        var output = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
            if n > 0 { output.append(contentsOf: buffer[0..<n]); continue }
            if n < 0 && errno == EINTR { continue }
            break
        }
        close(readEnd)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = status & 0x7f == 0
        return Result(status: exited ? (status >> 8) & 0xff : 128 + (status & 0x7f), output: output)
    }

    public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    static func which(_ name: String, path: String) throws -> String {
        for dir in path.split(separator: ":") where access("\(dir)/\(name)", X_OK) == 0 { return "\(dir)/\(name)" }
        throw Failure(description: "\(name) is not installed (not found in \(path))")
    }
}
