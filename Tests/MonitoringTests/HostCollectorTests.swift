import Foundation
import Logging
@testable import Monitoring
import NIOConcurrencyHelpers
import Testing

@Suite struct HostCollectorTests {
    static let host = HostFiles(root: Repo.fixtures + "/host1")
    static let broken = HostFiles(root: Repo.fixtures + "/broken")
    static let missing = HostFiles(root: Repo.fixtures + "/does-not-exist")

    @Test func cpuSecondsByModeAndKernelCountersFromProcStat() async throws {
        let s = try await CPUCollector(files: Self.host, ticksPerSecond: 100).collect()
        #expect(s.value("node_cpu_seconds_total", ["cpu": "0", "mode": "user"]) == 13932.80)
        #expect(s.value("node_cpu_seconds_total", ["cpu": "0", "mode": "idle"]) == 133432.92)
        #expect(s.value("node_cpu_seconds_total", ["cpu": "1", "mode": "steal"]) == 0.1)
        #expect(s.value("node_cpu_guest_seconds_total", ["cpu": "0", "mode": "user"]) == 239.33)
        // The all-CPU "cpu" line is not a CPU of its own.
        #expect(s.series("node_cpu_seconds_total").allSatisfy { $0.labels["cpu"] == "0" || $0.labels["cpu"] == "1" })
        #expect(s.series("node_cpu_seconds_total").count == 16)
        #expect(s.value("node_context_switches_total") == 38014093)
        #expect(s.value("node_intr_total") == 199292)
        #expect(s.value("node_forks_total") == 26442)
        #expect(s.value("node_procs_running") == 3)
        #expect(s.value("node_procs_blocked") == 1)
        #expect(s.value("node_boot_time_seconds") == 1700000000)
    }

    @Test func loadAverages() async throws {
        let s = try await LoadCollector(files: Self.host).collect()
        #expect(s.value("node_load1") == 0.52 && s.value("node_load5") == 0.38 && s.value("node_load15") == 0.29)
    }

    @Test func memoryAndSwapFieldsInBytesWithNodeExporterNames() async throws {
        let s = try await MemoryCollector(files: Self.host).collect()
        #expect(s.value("node_memory_MemTotal_bytes") == 16318432.0 * 1024)
        #expect(s.value("node_memory_MemAvailable_bytes") == 8123456.0 * 1024)
        #expect(s.value("node_memory_SwapTotal_bytes") == 2097148.0 * 1024)
        #expect(s.value("node_memory_SwapFree_bytes") == 2000000.0 * 1024)
        #expect(s.value("node_memory_Active_anon_bytes") == 512000.0 * 1024)
        #expect(s.value("node_memory_Inactive_file_bytes") == 1024000.0 * 1024)
        // A count, not kB: no _bytes suffix and no scaling.
        #expect(s.value("node_memory_HugePages_Total") == 0)
        #expect(s.names.allSatisfy { Catalog.contains($0) })
    }

    static func fakeStats(_ path: String) -> Result<FilesystemStats, MonitoringError> {
        let mount = String(path.dropFirst(host.root.count))
        switch mount {
        case "/": return .success(FilesystemStats(deviceID: 1, sizeBytes: 100e9, freeBytes: 40e9, availBytes: 35e9, files: 6_000_000, filesFree: 5_000_000))
        case "/tmp": return .success(FilesystemStats(deviceID: 1, sizeBytes: 100e9, freeBytes: 40e9, availBytes: 35e9, files: 6_000_000, filesFree: 5_000_000))
        case "/run": return .success(FilesystemStats(deviceID: 2, sizeBytes: 1e9, freeBytes: 0.9e9, availBytes: 0.9e9, files: 1000, filesFree: 900))
        case "/srv/warbler data": return .success(FilesystemStats(deviceID: 3, sizeBytes: 500e9, freeBytes: 10e9, availBytes: 5e9, files: 100, filesFree: 1, readOnly: true))
        default: return .failure(MonitoringError("statvfs \(path): No such file or directory"))
        }
    }

    @Test func filesystemsPerRealMountWithEscapedNamesAndPseudoFilesystemsSkipped() async throws {
        let s = try await FilesystemCollector(files: Self.host, stats: Self.fakeStats).collect()
        let root = ["device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/"]
        #expect(s.value("node_filesystem_size_bytes", root) == 100e9)
        #expect(s.value("node_filesystem_free_bytes", root) == 40e9)
        #expect(s.value("node_filesystem_avail_bytes", root) == 35e9)
        #expect(s.value("node_filesystem_files", root) == 6_000_000)
        #expect(s.value("node_filesystem_files_free", root) == 5_000_000)
        #expect(s.value("node_filesystem_readonly", root) == 0)
        // \040 in /proc/self/mounts is a space.
        let data = ["device": "/dev/sdb1", "fstype": "ext4", "mountpoint": "/srv/warbler data"]
        #expect(s.value("node_filesystem_avail_bytes", data) == 5e9)
        #expect(s.value("node_filesystem_readonly", data) == 1)
        // statvfs failing is reported, not fatal.
        let gone = ["device": "/dev/sdc1", "fstype": "xfs", "mountpoint": "/mnt/gone"]
        #expect(s.value("node_filesystem_device_error", gone) == 1)
        #expect(s.value("node_filesystem_size_bytes", gone) == nil)
        let mountpoints = Set(s.series("node_filesystem_device_error").map { $0.labels["mountpoint"]! })
        // /tmp is the root filesystem again (a bind mount): reported once, at /. proc, sysfs, devtmpfs, cgroup2,
        // docker's overlays and /run/credentials are not real mounts.
        #expect(mountpoints == ["/", "/run", "/srv/warbler data", "/mnt/gone"])
    }

    @Test func aMountWhoseStatvfsHangsIsReportedAsAnErrorOnTheNextScrape() async throws {
        let release = NIOLockedValueBox(false)
        let collector = FilesystemCollector(files: Self.host) { path in
            if path.hasSuffix("/srv/warbler data") {
                // Hangs until the test ends (at most 15 s, so a broken run fails rather than hangs).
                let until = ContinuousClock.now + .seconds(15)
                while !release.withLockedValue({ $0 }) && ContinuousClock.now < until { usleep(10_000) }
            }
            return Self.fakeStats(path)
        }
        defer { release.withLockedValue { $0 = true } }
        // The first scrape hangs on the dead mount and is given up by the scraper's timeout.
        let first = Scraper(collectors: [collector], timeout: .milliseconds(1200), logger: Logger(label: "test"))
        #expect(await first.scrape().value("warbler_exporter_collector_up", ["collector": "filesystem"]) == 0)
        // The next one does not ask that mount again: it answers, with that mount marked.
        let s = try await collector.collect()
        #expect(s.value("node_filesystem_device_error", ["device": "/dev/sdb1", "fstype": "ext4", "mountpoint": "/srv/warbler data"]) == 1)
        #expect(s.value("node_filesystem_size_bytes", ["device": "/dev/sda1", "fstype": "ext4", "mountpoint": "/"]) == 100e9)
    }

    @Test func mountEscapesDecode() {
        let m = FilesystemCollector.parseMounts("/dev/x /a\\040b\\011c\\134d ext4 rw 0 0\n/dev/y /tail\\040 ext4 rw 0 0\n")
        #expect(m.map(\.mountPoint) == ["/a b\tc\\d", "/tail "])
        #expect(FilesystemCollector.parseMounts("short line\n").isEmpty)
    }

    @Test func diskIOPerWholeDeviceInBytesAndSeconds() async throws {
        let s = try await DiskStatsCollector(files: Self.host).collect()
        #expect(Set(s.series("node_disk_reads_completed_total").map { $0.labels["device"]! }) == ["sda", "nvme0n1"])
        let sda = ["device": "sda"]
        #expect(s.value("node_disk_reads_completed_total", sda) == 7245)
        #expect(s.value("node_disk_reads_merged_total", sda) == 2375)
        #expect(s.value("node_disk_read_bytes_total", sda) == 567890.0 * 512)
        #expect(s.value("node_disk_read_time_seconds_total", sda) == 3.92)
        #expect(s.value("node_disk_writes_completed_total", sda) == 16050)
        #expect(s.value("node_disk_written_bytes_total", sda) == 987654.0 * 512)
        #expect(s.value("node_disk_write_time_seconds_total", sda) == 40.8)
        #expect(s.value("node_disk_io_time_seconds_total", sda) == 35.2)
        #expect(s.value("node_disk_io_time_weighted_seconds_total", sda) == 44.72)
        #expect(s.value("node_disk_io_now", ["device": "nvme0n1"]) == 2)
    }

    @Test func partitionsAndVirtualDevicesAreSkipped() {
        for d in ["sda1", "vdb12", "xvda1", "nvme0n1p1", "mmcblk0p2", "loop0", "ram15", "zram0", "fd0"] {
            #expect(DiskStatsCollector.skipped(d), "\(d)")
        }
        for d in ["sda", "vdb", "xvdaa", "nvme0n1", "mmcblk0", "dm-0", "md0"] {
            #expect(!DiskStatsCollector.skipped(d), "\(d)")
        }
    }

    @Test func networkCountersPerInterfaceIncludingANameTouchingItsFirstNumber() async throws {
        let s = try await NetworkCollector(files: Self.host).collect()
        let eth0 = ["device": "eth0"]
        #expect(s.value("node_network_receive_bytes_total", eth0) == 987654321)
        #expect(s.value("node_network_receive_packets_total", eth0) == 654321)
        #expect(s.value("node_network_receive_errs_total", eth0) == 3)
        #expect(s.value("node_network_receive_drop_total", eth0) == 7)
        #expect(s.value("node_network_transmit_bytes_total", eth0) == 123456789)
        #expect(s.value("node_network_transmit_packets_total", eth0) == 543210)
        #expect(s.value("node_network_transmit_errs_total", eth0) == 1)
        #expect(s.value("node_network_transmit_drop_total", eth0) == 2)
        #expect(s.value("node_network_receive_bytes_total", ["device": "averyverylongname0"]) == 1000)
        #expect(s.value("node_network_transmit_bytes_total", ["device": "lo"]) == 123456)
        // The two header lines are not interfaces.
        #expect(s.series("node_network_receive_bytes_total").count == 3)
    }

    @Test func hostFileDescriptorsUptimeAndClock() async throws {
        let fd = try await FileDescriptorCollector(files: Self.host).collect()
        #expect(fd.value("node_filefd_allocated") == 2816)
        #expect(fd.value("node_filefd_maximum") == Double(Int64.max))
        let up = try await UptimeCollector(files: Self.host, now: { Date(timeIntervalSince1970: 1_750_000_000) }).collect()
        #expect(up.value("warbler_host_uptime_seconds") == 350735.47)
        #expect(up.value("node_time_seconds") == 1_750_000_000)
        let t = try await TimexCollector(read: { .success(TimexReading(synchronized: true, offsetSeconds: -0.0002, maxErrorSeconds: 0.016, estimatedErrorSeconds: 0.0001)) }).collect()
        #expect(t.value("node_timex_sync_status") == 1)
        #expect(t.value("node_timex_offset_seconds") == -0.0002)
        #expect(t.value("node_timex_maxerror_seconds") == 0.016)
        #expect(t.value("node_timex_estimated_error_seconds") == 0.0001)
        await #expect(throws: MonitoringError.self) {
            try await TimexCollector(read: { .failure(MonitoringError("adjtimex: Operation not permitted")) }).collect()
        }
    }

    @Test func malformedAndMissingFilesFailWithThePath() async throws {
        let collectors: [any Collector] = [
            CPUCollector(files: Self.broken), LoadCollector(files: Self.broken), MemoryCollector(files: Self.broken),
            FilesystemCollector(files: Self.broken), DiskStatsCollector(files: Self.broken),
            NetworkCollector(files: Self.broken), FileDescriptorCollector(files: Self.broken),
            CPUCollector(files: Self.missing), MemoryCollector(files: Self.missing),
        ]
        for c in collectors {
            let e = await #expect(throws: MonitoringError.self, "\(c.name)") { try await c.collect() }
            #expect(e?.description.contains(Repo.fixtures) == true, "\(e?.description ?? "")")
        }
        // "12" alone is a valid uptime with the idle figure missing: only the first number is needed.
        #expect(try await UptimeCollector(files: Self.broken).collect().value("warbler_host_uptime_seconds") == 12)
    }

    /// The same collectors on this machine's own /proc and /sys, checked for sane ranges.
    @Test func liveMachineFiguresAreSane() async throws {
        let live = HostFiles()
        let cpu = try await CPUCollector(files: live).collect()
        let idle = cpu.series("node_cpu_seconds_total").filter { $0.labels["mode"] == "idle" }
        #expect(idle.count >= 1)
        #expect(idle.allSatisfy { $0.value > 0 })
        let boot = try #require(cpu.value("node_boot_time_seconds"))
        #expect(boot > 1_000_000_000 && boot < Date().timeIntervalSince1970)

        let load = try await LoadCollector(files: live).collect()
        #expect((load.value("node_load1") ?? -1) >= 0)

        let mem = try await MemoryCollector(files: live).collect()
        let total = try #require(mem.value("node_memory_MemTotal_bytes"))
        let available = try #require(mem.value("node_memory_MemAvailable_bytes"))
        #expect(total > 64.0 * 1024 * 1024 && available > 0 && available <= total)
        #expect(mem.value("node_memory_SwapTotal_bytes") != nil)

        let fs = try await FilesystemCollector(files: live).collect()
        let sizes = fs.series("node_filesystem_size_bytes")
        #expect(!sizes.isEmpty)
        for s in sizes {
            let avail = try #require(fs.value("node_filesystem_avail_bytes", s.labels))
            #expect(avail >= 0 && avail <= s.value, "\(s.labels)")
            #expect(!["proc", "sysfs", "cgroup2", "devpts"].contains(s.labels["fstype"]))
        }

        let net = try await NetworkCollector(files: live).collect()
        #expect(net.value("node_network_receive_bytes_total", ["device": "lo"]) != nil)
        _ = try await DiskStatsCollector(files: live).collect()

        let fd = try await FileDescriptorCollector(files: live).collect()
        #expect((fd.value("node_filefd_allocated") ?? 0) > 0)
        #expect((fd.value("node_filefd_maximum") ?? 0) >= (fd.value("node_filefd_allocated") ?? 0))

        let up = try await UptimeCollector(files: live).collect()
        let uptime = try #require(up.value("warbler_host_uptime_seconds"))
        #expect(uptime > 0)
        // Boot time plus uptime is now, within the clock's rounding and a slow machine.
        #expect(abs(boot + uptime - Date().timeIntervalSince1970) < 5)

        // adjtimex is readable without privileges wherever no seccomp filter forbids it.
        if case .success(let t) = TimexReading.live() {
            #expect(t.maxErrorSeconds >= 0 && t.estimatedErrorSeconds >= 0)
        }
        for set in [cpu, load, mem, fs, net, fd, up] { #expect(set.names.allSatisfy { Catalog.contains($0) }) }
    }
}
