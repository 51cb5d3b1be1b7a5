import CHostShims
import Foundation
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// CPU time by mode and the kernel's counters, from /proc/stat.
public struct CPUCollector: Collector {
    public let name = "cpu"
    let files: HostFiles
    /// USER_HZ: /proc/stat counts in these ticks.
    let ticksPerSecond: Double

    public init(files: HostFiles, ticksPerSecond: Double = Double(sysconf(Int32(_SC_CLK_TCK)))) {
        self.files = files; self.ticksPerSecond = ticksPerSecond
    }

    static let modes = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"]

    public func collect() async throws -> MetricSet {
        let text = try files.read("/proc/stat")
        var set = MetricSet()
        var sawCPU = false
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let key = f.first else { continue }
            // "cpu" alone is the sum of all; the per-CPU lines are cpu0, cpu1, …
            if key.hasPrefix("cpu"), key.count > 3 {
                let cpu = String(key.dropFirst(3))
                guard Int(cpu) != nil else { continue }
                let values = f.dropFirst().map { Double($0) }
                guard values.count >= 4, values.allSatisfy({ $0 != nil }) else {
                    throw MonitoringError("\(files.path("/proc/stat")): cannot read the line '\(line)'")
                }
                sawCPU = true
                for (i, mode) in Self.modes.enumerated() where i < values.count {
                    set.add(Catalog.cpuSeconds, ["cpu": cpu, "mode": mode], values[i]! / ticksPerSecond)
                }
                if values.count >= 10 {
                    set.add(Catalog.cpuGuestSeconds, ["cpu": cpu, "mode": "user"], values[8]! / ticksPerSecond)
                    set.add(Catalog.cpuGuestSeconds, ["cpu": cpu, "mode": "nice"], values[9]! / ticksPerSecond)
                }
                continue
            }
            guard f.count >= 2, let v = Double(f[1]) else { continue }
            switch key {
            case "ctxt": set.add(Catalog.contextSwitches, v)
            case "intr": set.add(Catalog.interrupts, v)
            case "processes": set.add(Catalog.forks, v)
            case "procs_running": set.add(Catalog.procsRunning, v)
            case "procs_blocked": set.add(Catalog.procsBlocked, v)
            case "btime": set.add(Catalog.bootTime, v)
            default: break
            }
        }
        guard sawCPU else { throw MonitoringError("\(files.path("/proc/stat")) has no per-CPU lines") }
        return set
    }
}

/// node_load1/5/15 from /proc/loadavg.
public struct LoadCollector: Collector {
    public let name = "loadavg"
    let files: HostFiles
    public init(files: HostFiles) { self.files = files }

    public func collect() async throws -> MetricSet {
        let text = try files.read("/proc/loadavg")
        let f = text.split(separator: " ").prefix(3).map { Double($0) }
        guard f.count == 3, let a = f[0], let b = f[1], let c = f[2] else {
            throw MonitoringError("\(files.path("/proc/loadavg")) is not 'load1 load5 load15 …': '\(text.prefix(80))'")
        }
        var set = MetricSet()
        set.add(Catalog.load1, a)
        set.add(Catalog.load5, b)
        set.add(Catalog.load15, c)
        return set
    }
}

/// Every /proc/meminfo field: memory and swap.
public struct MemoryCollector: Collector {
    public let name = "meminfo"
    let files: HostFiles
    public init(files: HostFiles) { self.files = files }

    public func collect() async throws -> MetricSet {
        let text = try files.read("/proc/meminfo")
        var set = MetricSet()
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let field = String(line[..<colon])
            let rest = line[line.index(after: colon)...].split(separator: " ")
            guard let first = rest.first, let v = Double(first) else { continue }
            let kB = rest.count > 1 && rest[1] == "kB"
            set.add(Catalog.memory(field: field, bytes: kB), kB ? v * 1024 : v)
        }
        guard set.value("node_memory_MemTotal_bytes") != nil else {
            throw MonitoringError("\(files.path("/proc/meminfo")) has no MemTotal line")
        }
        return set
    }
}

/// One line of /proc/self/mounts.
public struct MountEntry: Sendable, Equatable {
    public var device: String
    public var mountPoint: String
    public var fsType: String
    public var options: [String]
}

/// What statvfs and stat say about a mount point.
public struct FilesystemStats: Sendable, Equatable {
    /// st_dev of the mount point: bind mounts of one filesystem share it.
    public var deviceID: UInt64
    public var isDirectory: Bool
    public var sizeBytes: Double
    public var freeBytes: Double
    public var availBytes: Double
    public var files: Double
    public var filesFree: Double
    public var readOnly: Bool

    public init(deviceID: UInt64, isDirectory: Bool = true, sizeBytes: Double, freeBytes: Double, availBytes: Double,
                files: Double, filesFree: Double, readOnly: Bool = false) {
        self.deviceID = deviceID; self.isDirectory = isDirectory; self.sizeBytes = sizeBytes; self.freeBytes = freeBytes
        self.availBytes = availBytes; self.files = files; self.filesFree = filesFree; self.readOnly = readOnly
    }

    /// stat(2) and statvfs(3) of `path` on this host; the error when either fails.
    public static func live(_ path: String) -> Result<FilesystemStats, MonitoringError> {
        var st = stat()
        guard stat(path, &st) == 0 else { return .failure(MonitoringError("stat \(path): \(String(cString: strerror(errno)))")) }
        var vfs = statvfs()
        guard statvfs(path, &vfs) == 0 else { return .failure(MonitoringError("statvfs \(path): \(String(cString: strerror(errno)))")) }
        let frsize = Double(vfs.f_frsize)
        // ST_RDONLY is bit 0 of f_flag.
        return .success(FilesystemStats(deviceID: UInt64(st.st_dev), isDirectory: (st.st_mode & 0o170000) == 0o040000,
                                        sizeBytes: Double(vfs.f_blocks) * frsize, freeBytes: Double(vfs.f_bfree) * frsize,
                                        availBytes: Double(vfs.f_bavail) * frsize, files: Double(vfs.f_files),
                                        filesFree: Double(vfs.f_ffree), readOnly: vfs.f_flag & 1 != 0))
    }
}

/// Space and inodes of each real mount: /proc/self/mounts, then statvfs of each mount point.
///
/// Pseudo filesystems (proc, sysfs, cgroup, …) and mounts under /dev, /proc, /sys and /run/credentials are skipped;
/// a filesystem mounted at several places (bind mounts, a unit's private /tmp) is reported once, at its first mount
/// point; a mount point that is a file (a container's /etc/hosts) is skipped.
///
/// statvfs can hang (an NFS server gone): the calls run on a thread of their own, off the concurrency pool, and a
/// mount point whose call from an earlier scrape has not returned is reported as a device error without asking again.
public struct FilesystemCollector: Collector {
    public let name = "filesystem"
    let files: HostFiles
    let stats: @Sendable (String) -> Result<FilesystemStats, MonitoringError>
    /// Mount points whose statvfs is running, and since when.
    let inFlight = NIOLockedValueBox<[String: ContinuousClock.Instant]>([:])
    /// A call running longer than this (from an earlier or concurrent scrape) marks its mount point stuck.
    static let stuckAfter = Duration.seconds(1)

    public init(files: HostFiles, stats: @escaping @Sendable (String) -> Result<FilesystemStats, MonitoringError> = FilesystemStats.live) {
        self.files = files; self.stats = stats
    }

    static let pseudoTypes: Set<String> = [
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs", "efivarfs",
        "fusectl", "fuse.lxcfs", "hugetlbfs", "iso9660", "mqueue", "nsfs", "proc", "procfs", "pstore", "ramfs",
        "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "erofs", "sysfs", "tracefs",
    ]
    static let skippedMountPrefixes = ["/dev", "/proc", "/sys", "/run/credentials", "/var/lib/docker/", "/var/lib/containers/storage/"]

    /// Parses /proc/self/mounts; octal escapes (`\040` for a space) are decoded.
    public static func parseMounts(_ text: String) -> [MountEntry] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ")
            guard f.count >= 4 else { return nil }
            return MountEntry(device: unescape(f[0]), mountPoint: unescape(f[1]), fsType: unescape(f[2]),
                              options: f[3].split(separator: ",").map(String.init))
        }
    }

    static func unescape(_ s: Substring) -> String {
        var bytes: [UInt8] = []
        let u = Array(s.utf8)
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "\\"), i + 3 < u.count {
                let digits = u[(i + 1)...(i + 3)]
                if digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "7") }),
                   let v = UInt8(String(decoding: digits, as: UTF8.self), radix: 8) {
                    bytes.append(v)
                    i += 4
                    continue
                }
            }
            bytes.append(u[i])
            i += 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func skipped(_ m: MountEntry) -> Bool {
        if pseudoTypes.contains(m.fsType) { return true }
        return skippedMountPrefixes.contains { p in
            p.hasSuffix("/") ? m.mountPoint.hasPrefix(p) : (m.mountPoint == p || m.mountPoint.hasPrefix(p + "/"))
        }
    }

    public func collect() async throws -> MetricSet {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try self.collectBlocking() }) }
        }
    }

    func collectBlocking() throws -> MetricSet {
        let mounts = Self.parseMounts(try files.read("/proc/self/mounts")).filter { !Self.skipped($0) }
        var set = MetricSet()
        var seenDevices: Set<UInt64> = []
        var seenMountPoints: Set<String> = []
        for m in mounts {
            let labels = ["device": m.device, "fstype": m.fsType, "mountpoint": m.mountPoint]
            let path = files.path(m.mountPoint)
            let now = ContinuousClock.now
            let stuck = inFlight.withLockedValue { calls -> Bool in
                if let since = calls[path], now - since > Self.stuckAfter { return true }
                calls[path] = now
                return false
            }
            if stuck {
                if seenMountPoints.insert(m.mountPoint).inserted { set.add(Catalog.fsDeviceError, labels, 1) }
                continue
            }
            let result = stats(path)
            inFlight.withLockedValue { _ = $0.removeValue(forKey: path) }
            switch result {
            case .failure:
                guard seenMountPoints.insert(m.mountPoint).inserted else { continue }
                set.add(Catalog.fsDeviceError, labels, 1)
            case .success(let s):
                guard s.isDirectory, seenDevices.insert(s.deviceID).inserted, seenMountPoints.insert(m.mountPoint).inserted else { continue }
                set.add(Catalog.fsDeviceError, labels, 0)
                set.add(Catalog.fsSize, labels, s.sizeBytes)
                set.add(Catalog.fsFree, labels, s.freeBytes)
                set.add(Catalog.fsAvail, labels, s.availBytes)
                set.add(Catalog.fsFiles, labels, s.files)
                set.add(Catalog.fsFilesFree, labels, s.filesFree)
                set.add(Catalog.fsReadonly, labels, s.readOnly || m.options.contains("ro") ? 1 : 0)
            }
        }
        return set
    }
}

/// Disk I/O per whole device from /proc/diskstats (partitions, loop and ram devices are skipped, as node_exporter does).
public struct DiskStatsCollector: Collector {
    public let name = "diskstats"
    let files: HostFiles
    public init(files: HostFiles) { self.files = files }

    /// diskstats counts sectors of 512 bytes whatever the device's own sector size.
    static let sectorBytes = 512.0

    /// ram0, loop3, fd0, zram0, and partitions: sda1, vdb2, xvda1, nvme0n1p1, mmcblk0p1.
    static func skipped(_ device: String) -> Bool {
        func digitsOnly<S: StringProtocol>(_ s: S) -> Bool { !s.isEmpty && s.allSatisfy(\.isNumber) }
        for p in ["ram", "loop", "fd", "zram"] where device.hasPrefix(p) && digitsOnly(device.dropFirst(p.count)) { return true }
        for p in ["sd", "hd", "vd", "xvd"] where device.hasPrefix(p) {
            let rest = device.dropFirst(p.count)
            let letters = rest.prefix { $0.isLetter && $0.isLowercase }
            if !letters.isEmpty && digitsOnly(rest.dropFirst(letters.count)) { return true }
        }
        for p in ["nvme", "mmcblk"] where device.hasPrefix(p) {
            if let pIndex = device.lastIndex(of: "p"), pIndex > device.index(device.startIndex, offsetBy: p.count),
               digitsOnly(device[device.index(after: pIndex)...]) { return true }
        }
        return false
    }

    public func collect() async throws -> MetricSet {
        let text = try files.read("/proc/diskstats")
        var set = MetricSet()
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 14 else { continue }
            let device = String(f[2])
            guard !Self.skipped(device) else { continue }
            let v = f[3...].map { Double($0) ?? 0 }
            let l = ["device": device]
            set.add(Catalog.diskReads, l, v[0])
            set.add(Catalog.diskReadsMerged, l, v[1])
            set.add(Catalog.diskReadBytes, l, v[2] * Self.sectorBytes)
            set.add(Catalog.diskReadTime, l, v[3] / 1000)
            set.add(Catalog.diskWrites, l, v[4])
            set.add(Catalog.diskWritesMerged, l, v[5])
            set.add(Catalog.diskWrittenBytes, l, v[6] * Self.sectorBytes)
            set.add(Catalog.diskWriteTime, l, v[7] / 1000)
            set.add(Catalog.diskIONow, l, v[8])
            set.add(Catalog.diskIOTime, l, v[9] / 1000)
            set.add(Catalog.diskIOWeighted, l, v[10] / 1000)
        }
        return set
    }
}

/// Bytes, packets, errors and drops per interface from /proc/net/dev (the exporter's network namespace).
public struct NetworkCollector: Collector {
    public let name = "netdev"
    let files: HostFiles
    public init(files: HostFiles) { self.files = files }

    public func collect() async throws -> MetricSet {
        let text = try files.read("/proc/net/dev")
        var set = MetricSet()
        for line in text.split(separator: "\n") {
            // "  eth0: 123 …"; a long name can touch the colon and its first number: "eth0:123".
            guard let colon = line.firstIndex(of: ":") else { continue }
            let device = line[..<colon].trimmingCharacters(in: .whitespaces)
            let v = line[line.index(after: colon)...].split(separator: " ").map { Double($0) }
            guard !device.isEmpty, v.count >= 16, v.allSatisfy({ $0 != nil }) else { continue }
            let l = ["device": device]
            set.add(Catalog.netRxBytes, l, v[0]!)
            set.add(Catalog.netRxPackets, l, v[1]!)
            set.add(Catalog.netRxErrs, l, v[2]!)
            set.add(Catalog.netRxDrop, l, v[3]!)
            set.add(Catalog.netTxBytes, l, v[8]!)
            set.add(Catalog.netTxPackets, l, v[9]!)
            set.add(Catalog.netTxErrs, l, v[10]!)
            set.add(Catalog.netTxDrop, l, v[11]!)
        }
        return set
    }
}

/// The host's file descriptors from /proc/sys/fs/file-nr.
public struct FileDescriptorCollector: Collector {
    public let name = "filefd"
    let files: HostFiles
    public init(files: HostFiles) { self.files = files }

    public func collect() async throws -> MetricSet {
        let text = try files.read("/proc/sys/fs/file-nr")
        let f = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).map { Double($0) }
        guard f.count == 3, let allocated = f[0], let maximum = f[2] else {
            throw MonitoringError("\(files.path("/proc/sys/fs/file-nr")) is not 'allocated unused maximum': '\(text.prefix(80))'")
        }
        var set = MetricSet()
        set.add(Catalog.fdAllocated, allocated)
        set.add(Catalog.fdMaximum, maximum)
        return set
    }
}

/// Uptime from /proc/uptime and the host's clock.
public struct UptimeCollector: Collector {
    public let name = "uptime"
    let files: HostFiles
    let now: @Sendable () -> Date
    public init(files: HostFiles, now: @escaping @Sendable () -> Date = { Date() }) { self.files = files; self.now = now }

    public func collect() async throws -> MetricSet {
        let text = try files.read("/proc/uptime")
        guard let up = text.split(whereSeparator: { $0 == " " || $0 == "\n" }).first.flatMap({ Double($0) }) else {
            throw MonitoringError("\(files.path("/proc/uptime")) is not 'seconds idle': '\(text.prefix(80))'")
        }
        var set = MetricSet()
        set.add(Catalog.uptime, up)
        set.add(Catalog.time, now().timeIntervalSince1970)
        return set
    }
}

/// What adjtimex(2) reports about the clock discipline.
public struct TimexReading: Sendable, Equatable {
    public var synchronized: Bool
    public var offsetSeconds: Double
    public var maxErrorSeconds: Double
    public var estimatedErrorSeconds: Double

    public init(synchronized: Bool, offsetSeconds: Double, maxErrorSeconds: Double, estimatedErrorSeconds: Double) {
        self.synchronized = synchronized; self.offsetSeconds = offsetSeconds
        self.maxErrorSeconds = maxErrorSeconds; self.estimatedErrorSeconds = estimatedErrorSeconds
    }

    /// Reads the kernel's state without changing it; the error when the call is refused (a seccomp filter, say).
    public static func live() -> Result<TimexReading, MonitoringError> {
        var r = warbler_timex_reading()
        guard warbler_read_timex(&r) == 0 else {
            return .failure(MonitoringError("adjtimex: \(String(cString: strerror(errno))) (under systemd, allow it with SystemCallFilter=adjtimex)"))
        }
        return .success(TimexReading(synchronized: r.synchronized == 1, offsetSeconds: r.offset_seconds,
                                     maxErrorSeconds: r.max_error_seconds, estimatedErrorSeconds: r.estimated_error_seconds))
    }
}

/// Clock synchronisation through adjtimex, where the host reports it.
public struct TimexCollector: Collector {
    public let name = "timex"
    let read: @Sendable () -> Result<TimexReading, MonitoringError>
    public init(read: @escaping @Sendable () -> Result<TimexReading, MonitoringError> = TimexReading.live) { self.read = read }

    public func collect() async throws -> MetricSet {
        let r = try read().get()
        var set = MetricSet()
        set.add(Catalog.timexSync, r.synchronized ? 1 : 0)
        set.add(Catalog.timexOffset, r.offsetSeconds)
        set.add(Catalog.timexMaxError, r.maxErrorSeconds)
        set.add(Catalog.timexEstError, r.estimatedErrorSeconds)
        return set
    }
}
