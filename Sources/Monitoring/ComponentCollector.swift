import DurableFiles
import Foundation
import Installer
import Operations
#if canImport(Glibc)
import Glibc
#endif

/// Runs a program and returns its exit status and standard output; injectable so tests feed recorded output.
public protocol CommandRunner: Sendable {
    func run(_ argv: [String]) async throws -> (status: Int32, output: String)
}

/// Runs the program for real (found on PATH when `argv[0]` has no slash), off the concurrency pool's threads.
public struct ProcessRunner: CommandRunner {
    public init() {}

    public func run(_ argv: [String]) async throws -> (status: Int32, output: String) {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                // posix_spawn, not Foundation's Process (its run() can crash the process: DurableFiles/Subprocess.swift).
                do {
                    let r = try Subprocess.run(argv)
                    continuation.resume(returning: (r.status, r.text))
                } catch {
                    continuation.resume(throwing: MonitoringError("cannot run \(argv[0]): \(error)"))
                }
            }
        }
    }
}

/// Who runs Warbler's daemons on this host.
public enum ComponentManager: String, Sendable {
    /// One unit per component, `warbler-<name>.service`.
    case systemd
    /// The built-in supervisor: `/run/warbler/<name>.pid` holds the component's PID.
    case supervisor

    /// systemd when it is the running init system (sd_booted: /run/systemd/system exists), else the supervisor.
    public static func detect(files: HostFiles = HostFiles()) -> ComponentManager {
        files.exists("/run/systemd/system") ? .systemd : .supervisor
    }
}

/// State, restarts, memory, CPU and descriptors of each Warbler component, from systemd or the built-in supervisor.
///
/// The server is always reported (down when its unit or PID file is missing); another component is reported only
/// when it is installed (its unit exists, or a supervisor PID file names it).
public struct ComponentCollector: Collector {
    public let name = "components"
    let components: [String]
    let manager: ComponentManager
    let runner: any CommandRunner
    /// /proc and the PID files are read under this root.
    let files: HostFiles
    let pidDirectory: String
    let ticksPerSecond: Double
    let pageSize: Double

    public init(components: [String], manager: ComponentManager, runner: any CommandRunner = ProcessRunner(),
                files: HostFiles = HostFiles(), pidDirectory: String = Paths.run,
                ticksPerSecond: Double = Double(sysconf(Int32(_SC_CLK_TCK))), pageSize: Double = Double(sysconf(Int32(_SC_PAGESIZE)))) {
        self.components = components; self.manager = manager; self.runner = runner; self.files = files
        self.pidDirectory = pidDirectory; self.ticksPerSecond = ticksPerSecond; self.pageSize = pageSize
    }

    /// The unit of a component: `server` → `warbler-server.service`.
    public static func unit(_ component: String) -> String { "warbler-\(component).service" }

    /// The PID file of a component's process under the supervisor: `server` → `/run/warbler/server.pid`.
    public func pidFile(_ component: String) -> String { "\(pidDirectory)/\(component).pid" }

    /// The supervisor's own PID file for a component (the server's is `supervise.pid`, as `Paths.supervisorPID`).
    public func supervisorPIDFile(_ component: String) -> String {
        component == "server" ? "\(pidDirectory)/supervise.pid" : "\(pidDirectory)/supervise-\(component).pid"
    }

    public func collect() async throws -> MetricSet {
        var set = MetricSet()
        for c in components {
            switch manager {
            case .systemd: try await systemd(c, into: &set)
            case .supervisor: supervised(c, into: &set)
            }
        }
        return set
    }

    static let systemctlProperties = "LoadState,ActiveState,SubState,NRestarts,MainPID,MemoryCurrent,CPUUsageNSec"

    /// `systemctl show` output as a map; systemd prints `[not set]` or 2^64-1 for a figure it does not track.
    public static func parseShow(_ text: String) -> [String: String] {
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        return values
    }

    static func figure(_ s: String?) -> Double? {
        guard let s, let v = UInt64(s), v != UInt64.max else { return nil }
        return Double(v)
    }

    func systemd(_ component: String, into set: inout MetricSet) async throws {
        let unit = Self.unit(component)
        let r = try await runner.run(["systemctl", "show", unit, "-p", Self.systemctlProperties])
        guard r.status == 0 else {
            let why = "systemctl show \(unit) exited with \(r.status): \(r.output.prefix(300).trimmingCharacters(in: .whitespacesAndNewlines))"
            // Without D-Bus (a minimal host: systemctl needs the system bus when not root) the unit's cgroup still tells.
            if try cgroup(component, into: &set) { return }
            throw MonitoringError(why)
        }
        let v = Self.parseShow(r.output)
        guard let active = v["ActiveState"] else { throw MonitoringError("systemctl show \(unit) printed no ActiveState: \(r.output.prefix(300))") }
        if v["LoadState"] == "not-found" && component != "server" { return }
        let l = ["component": component]
        let up = active == "active" || active == "reloading"
        set.add(Catalog.componentUp, l, up ? 1 : 0)
        set.add(Catalog.componentInfo, ["component": component, "manager": "systemd", "state": active, "sub_state": v["SubState"] ?? ""], 1)
        if let n = Self.figure(v["NRestarts"]) { set.add(Catalog.componentRestarts, l, n) }
        if let m = Self.figure(v["MemoryCurrent"]) { set.add(Catalog.componentCgroupMemory, l, m) }
        let cgroupCPU = Self.figure(v["CPUUsageNSec"]).map { $0 / 1e9 }
        if let cpu = cgroupCPU { set.add(Catalog.componentCPU, l, cpu) }
        if up, let pid = v["MainPID"].flatMap(Int.init), pid > 0 {
            process(pid, component: component, withCPU: cgroupCPU == nil, into: &set)
        }
    }

    /// The D-Bus-free reading of a unit: its cgroup under /sys/fs/cgroup/system.slice (cgroup v2). The unit is up
    /// while its cgroup holds processes; the first process is taken as the main one (Warbler's daemons do not
    /// fork). Restarts are not known this way. Returns false when there is no such cgroup hierarchy to read.
    func cgroup(_ component: String, into set: inout MetricSet) throws -> Bool {
        let slice = "/sys/fs/cgroup/system.slice"
        guard files.exists(slice + "/cgroup.procs") || files.exists(slice + "/cgroup.controllers") else { return false }
        let unit = Self.unit(component)
        let dir = "\(slice)/\(unit)"
        let installed = ["/etc/systemd/system/", "/lib/systemd/system/", "/usr/lib/systemd/system/", "/run/systemd/system/"]
            .contains { files.exists($0 + unit) }
        let pids = ((try? files.read(dir + "/cgroup.procs")) ?? "").split(separator: "\n").compactMap { Int($0) }
        if pids.isEmpty && !installed && component != "server" { return true }
        let l = ["component": component]
        set.add(Catalog.componentUp, l, pids.isEmpty ? 0 : 1)
        set.add(Catalog.componentInfo, ["component": component, "manager": "systemd", "state": pids.isEmpty ? "inactive" : "active",
                                        "sub_state": "unknown"], 1)
        guard let main = pids.first else { return true }
        if let m = (try? files.read(dir + "/memory.current")).flatMap({ Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
            set.add(Catalog.componentCgroupMemory, l, m)
        }
        let usage = (try? files.read(dir + "/cpu.stat"))?.split(separator: "\n").first { $0.hasPrefix("usage_usec ") }
            .flatMap { $0.split(separator: " ").last }.flatMap { Double($0) }
        if let u = usage { set.add(Catalog.componentCPU, l, u / 1e6) }
        process(main, component: component, withCPU: usage == nil, into: &set)
        return true
    }

    func supervised(_ component: String, into set: inout MetricSet) {
        let pidText = try? files.read(pidFile(component))
        let installed = component == "server" || pidText != nil || files.exists(supervisorPIDFile(component))
        guard installed else { return }
        let l = ["component": component]
        var state = ("inactive", "dead")
        var running: Int?
        if let pid = pidText.flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }), pid > 0, alive(pid) {
            running = pid
            state = ("active", "running")
        } else if let sup = (try? files.read(supervisorPIDFile(component))).flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }),
                  sup > 0, alive(sup) {
            // The supervisor is up and waiting to restart its child.
            state = ("activating", "auto-restart")
        }
        set.add(Catalog.componentUp, l, running == nil ? 0 : 1)
        set.add(Catalog.componentInfo, ["component": component, "manager": "supervisor", "state": state.0, "sub_state": state.1], 1)
        if let pid = running { process(pid, component: component, withCPU: true, into: &set) }
    }

    /// A PID names a live process when /proc has it and it is not a zombie.
    func alive(_ pid: Int) -> Bool {
        guard let stat = try? files.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].split(separator: " ").first
        return state != "Z" && state != "X"
    }

    /// Resident memory, CPU time, start time and descriptors of one process from /proc/PID.
    func process(_ pid: Int, component: String, withCPU: Bool, into set: inout MetricSet) {
        let l = ["component": component]
        if let stat = try? files.read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") {
            // Fields after the command name (which may hold spaces and parentheses): [0] is field 3 (state).
            let f = stat[stat.index(after: close)...].split(separator: " ")
            if f.count > 21 {
                if withCPU, let utime = Double(f[11]), let stime = Double(f[12]) {
                    set.add(Catalog.componentCPU, l, (utime + stime) / ticksPerSecond)
                }
                if let rss = Double(f[21]) { set.add(Catalog.componentResident, l, rss * pageSize) }
            }
            if let start = StatusParsing.processStartSeconds(stat: stat, ticksPerSecond: ticksPerSecond),
               let btime = (try? files.read("/proc/stat"))?.split(separator: "\n").first(where: { $0.hasPrefix("btime ") })
                .flatMap({ $0.split(separator: " ").last }).flatMap({ Double($0) }) {
                set.add(Catalog.componentStart, l, btime + start)
            }
        }
        if let fds = try? FileManager.default.contentsOfDirectory(atPath: files.path("/proc/\(pid)/fd")) {
            set.add(Catalog.componentFDs, l, Double(fds.count))
        }
    }
}
