import Foundation
import IMStorage
import IMStoragePostgres
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A throwaway PostgreSQL server for the tests: started once per test process (on first use) in a temporary
/// directory, listening on a free loopback port with trust authentication, and stopped at process exit.
/// Each test gets its own fresh database, so tests are independent and may run in parallel.
///
/// When the PostgreSQL server binaries are missing the tests that need them fail (they are never skipped).
public actor PostgresTestServer {
    public static let shared = PostgresTestServer()

    public struct Instance: Sendable {
        public let directory: String
        public let port: Int
        public let bin: String
    }

    public static let user = "postgres"
    public static let host = "127.0.0.1"

    private var starting: Task<Instance, any Error>?
    private var admin: PostgresDriver?

    /// Creates a fresh, empty database and returns its name and the server's port.
    public func freshDatabase() async throws -> (port: Int, database: String) {
        let instance = try await start()
        let admin = try await adminDriver(port: instance.port)
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        // CREATE DATABASE cannot run inside a transaction: use a read (no BEGIN).
        _ = try await admin.read { db in try await db.query("CREATE DATABASE \(name)") }
        return (instance.port, String(name))
    }

    /// Connects a driver to a fresh database.
    public func connectFresh() async throws -> PostgresDriver {
        let (port, database) = try await freshDatabase()
        return try await PostgresDriver.connect(host: Self.host, port: port, username: Self.user, password: nil,
                                                database: database, maxConnections: 8)
    }

    private func adminDriver(port: Int) async throws -> PostgresDriver {
        if let admin { return admin }
        let driver = try await PostgresDriver.connect(host: Self.host, port: port, username: Self.user, password: nil,
                                                      database: "postgres", maxConnections: 2)
        if let admin {  // another caller won the race while we connected
            try? await driver.close()
            return admin
        }
        admin = driver
        return driver
    }

    public func start() async throws -> Instance {
        if let starting { return try await starting.value }
        let task = Task.detached { try Self.launch() }
        starting = task
        return try await task.value
    }

    // MARK: Launching

    static let missingMessage = """
        PostgreSQL server binaries not found (looked for /usr/lib/postgresql/*/bin/initdb and pg_ctl, or $WARBLER_PG_BIN). \
        The storage contract tests run against a real PostgreSQL 15: install postgresql (e.g. `apt-get install postgresql-15`) \
        and run the tests again.
        """

    struct SetupError: Error, CustomStringConvertible {
        let description: String
    }

    /// The directory holding initdb and pg_ctl, newest version first.
    static func findBinaries() -> String? {
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["WARBLER_PG_BIN"], !env.isEmpty { candidates.append(env) }
        let root = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        // Prefer 15 (what production targets), then the newest other version.
        let ordered = versions.sorted { a, b in
            if a == "15" || b == "15" { return a == "15" && b != "15" }
            return (Int(a) ?? 0) > (Int(b) ?? 0)
        }
        candidates += ordered.map { "\(root)/\($0)/bin" }
        return candidates.first { dir in
            FileManager.default.isExecutableFile(atPath: dir + "/initdb") && FileManager.default.isExecutableFile(atPath: dir + "/pg_ctl")
        }
    }

    static func launch() throws -> Instance {
        guard let bin = findBinaries() else {
            // With CI set or not, a missing server is a failure with the same message, never a silent skip:
            // a green run must mean both backends were tested.
            throw SetupError(description: missingMessage)
        }
        let asRoot = getuid() == 0
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("warbler-pg-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false,
                                                attributes: [.posixPermissions: 0o700])
        if asRoot {
            // initdb refuses to run as root: the cluster belongs to the postgres system user.
            guard let pw = getpwnam("postgres") else {
                throw SetupError(description: "tests run as root but there is no `postgres` system user to own the test cluster; install postgresql or run the tests as a normal user")
            }
            guard chown(directory, pw.pointee.pw_uid, pw.pointee.pw_gid) == 0 else {
                throw SetupError(description: "cannot chown \(directory) to postgres: errno \(errno)")
            }
        }
        let data = directory + "/data"
        let output = directory + "/setup.log"
        _ = FileManager.default.createFile(atPath: output, contents: nil)

        /// A Process running `tool` from the PostgreSQL bin directory, as the postgres user when we are root.
        func process(_ tool: String, _ args: [String], log: FileHandle?) -> Process {
            let process = Process()
            if asRoot {
                let runuser = FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser") ? "/usr/sbin/runuser" : "/sbin/runuser"
                process.executableURL = URL(fileURLWithPath: runuser)
                process.arguments = ["-u", "postgres", "--", bin + "/" + tool] + args
            } else {
                process.executableURL = URL(fileURLWithPath: bin + "/" + tool)
                process.arguments = args
            }
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
            process.standardOutput = log ?? FileHandle.nullDevice
            process.standardError = log ?? FileHandle.nullDevice
            process.standardInput = FileHandle.nullDevice
            return process
        }
        func logTail(_ path: String) -> String {
            String(((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").suffix(3000))
        }

        // initdb, logging to setup.log.
        let setupLog = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        let initdb = process("initdb", ["-D", data, "-U", user, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"], log: setupLog)
        try initdb.run()
        initdb.waitUntilExit()
        try? setupLog.close()
        guard initdb.terminationStatus == 0 else {
            throw SetupError(description: "initdb failed (status \(initdb.terminationStatus)):\n\(logTail(output))")
        }
        // Trust, but only over the socket in our private directory and from 127.0.0.1.
        try """
            local all all trust
            host all all 127.0.0.1/32 trust
            """.write(toFile: data + "/pg_hba.conf", atomically: false, encoding: .utf8)

        // The server runs in the foreground as our child (not daemonised by `pg_ctl start`: Foundation's Process
        // would wait for the daemon, which inherits its status pipe, forever).
        let serverLogPath = directory + "/server.log"
        var lastError: (any Error)?
        for _ in 0..<3 {
            let port = try freePort()
            _ = FileManager.default.createFile(atPath: serverLogPath, contents: nil)
            let serverLog = try FileHandle(forWritingTo: URL(fileURLWithPath: serverLogPath))
            let server = process("postgres", ["-D", data, "-c", "listen_addresses=127.0.0.1", "-p", "\(port)", "-k", directory,
                                              "-c", "fsync=on", "-c", "max_connections=1000", "-c", "shared_buffers=32MB",
                                              // Off by default here so a test can see that the driver turns it on.
                                              "-c", "synchronous_commit=off"],
                                 log: serverLog)
            try server.run()
            try? serverLog.close()
            registerStop(bin: bin, data: data, directory: directory, asRoot: asRoot)
            // Ready when pg_isready says so; gone if the server exited (say, the port was taken meanwhile).
            let deadline = Date().addingTimeInterval(60)
            var ready = false
            while server.isRunning && Date() < deadline {
                let probe = process("pg_isready", ["-q", "-h", host, "-p", "\(port)", "-U", user, "-d", "postgres"], log: nil)
                try probe.run()
                probe.waitUntilExit()
                if probe.terminationStatus == 0 { ready = true; break }
                Thread.sleep(forTimeInterval: 0.1)
            }
            if ready { return Instance(directory: directory, port: port, bin: bin) }
            if server.isRunning {
                stopNow()
                throw SetupError(description: "PostgreSQL did not become ready within 60 s:\n\(logTail(serverLogPath))")
            }
            lastError = SetupError(description: "PostgreSQL exited at startup (status \(server.terminationStatus)):\n\(logTail(serverLogPath))")
        }
        throw lastError ?? SetupError(description: "could not start PostgreSQL")
    }

    /// A free TCP port on 127.0.0.1, found by binding port 0.
    public static func freePort() throws -> Int {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw SetupError(description: "socket() failed: errno \(errno)") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
        }
        guard bound == 0 else { throw SetupError(description: "bind(127.0.0.1:0) failed: errno \(errno)") }
        let named = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard named == 0 else { throw SetupError(description: "getsockname failed: errno \(errno)") }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    // MARK: Stopping at exit

    /// Set once, when the server has started; read by the atexit handler.
    nonisolated(unsafe) static var stopCommand: (executable: String, arguments: [String], directory: String)?

    static func registerStop(bin: String, data: String, directory: String, asRoot: Bool) {
        let pgCtl = [bin + "/pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop"]
        stopCommand = asRoot
            ? (FileManager.default.isExecutableFile(atPath: "/usr/sbin/runuser") ? "/usr/sbin/runuser" : "/sbin/runuser",
               ["-u", "postgres", "--"] + pgCtl, directory)
            : (pgCtl[0], Array(pgCtl.dropFirst()), directory)
        if !atexitRegistered {
            atexitRegistered = true
            atexit { PostgresTestServer.stopNow() }
        }
    }

    nonisolated(unsafe) static var atexitRegistered = false

    /// Stops the server (pg_ctl stop -m immediate) and removes its directory; runs at process exit.
    static func stopNow() {
        guard let command = stopCommand else { return }
        stopCommand = nil
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command.executable)
        process.arguments = command.arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        if (try? process.run()) != nil { process.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: command.directory)
    }
}
