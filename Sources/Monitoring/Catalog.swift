/// Every metric family the exporter emits. Host metrics keep node_exporter's names and labels so existing dashboards
/// and rules read them; Warbler's own start with `warbler_`. docs/operations.md lists each (a test checks it does).
public enum Catalog {
    // MARK: The exporter itself
    public static let collectorUp = MetricDescriptor("warbler_exporter_collector_up", .gauge,
        "1 when the collector answered this scrape, 0 when it failed or timed out (its metrics are then absent)", labels: ["collector"])
    public static let collectorDuration = MetricDescriptor("warbler_exporter_collector_duration_seconds", .gauge,
        "How long the collector took in this scrape", labels: ["collector"])
    public static let buildInfo = MetricDescriptor("warbler_exporter_build_info", .gauge,
        "Always 1; the exporter's version in a label", labels: ["version"])

    // MARK: CPU and kernel counters (/proc/stat)
    public static let cpuSeconds = MetricDescriptor("node_cpu_seconds_total", .counter,
        "Seconds the CPUs spent in each mode", labels: ["cpu", "mode"])
    public static let cpuGuestSeconds = MetricDescriptor("node_cpu_guest_seconds_total", .counter,
        "Seconds the CPUs spent running guests (also counted in user and nice)", labels: ["cpu", "mode"])
    public static let contextSwitches = MetricDescriptor("node_context_switches_total", .counter, "Context switches since boot")
    public static let interrupts = MetricDescriptor("node_intr_total", .counter, "Interrupts serviced since boot")
    public static let forks = MetricDescriptor("node_forks_total", .counter, "Processes and threads created since boot")
    public static let procsRunning = MetricDescriptor("node_procs_running", .gauge, "Processes in runnable state")
    public static let procsBlocked = MetricDescriptor("node_procs_blocked", .gauge, "Processes blocked waiting for I/O")
    public static let bootTime = MetricDescriptor("node_boot_time_seconds", .gauge, "When the host booted, in seconds since the epoch")

    // MARK: Load, uptime, time
    public static let load1 = MetricDescriptor("node_load1", .gauge, "1-minute load average")
    public static let load5 = MetricDescriptor("node_load5", .gauge, "5-minute load average")
    public static let load15 = MetricDescriptor("node_load15", .gauge, "15-minute load average")
    public static let uptime = MetricDescriptor("warbler_host_uptime_seconds", .gauge, "Seconds since the host booted (/proc/uptime)")
    public static let time = MetricDescriptor("node_time_seconds", .gauge, "The host's clock, in seconds since the epoch")

    // MARK: Clock synchronisation (adjtimex)
    public static let timexSync = MetricDescriptor("node_timex_sync_status", .gauge,
        "1 when the kernel reports the clock synchronised (as timedatectl's NTPSynchronized), 0 when not")
    public static let timexOffset = MetricDescriptor("node_timex_offset_seconds", .gauge, "The clock's offset from its reference")
    public static let timexMaxError = MetricDescriptor("node_timex_maxerror_seconds", .gauge, "The kernel's maximum error estimate")
    public static let timexEstError = MetricDescriptor("node_timex_estimated_error_seconds", .gauge, "The kernel's estimated error")

    // MARK: Memory (/proc/meminfo): one family per field
    /// `node_memory_<Field>_bytes` for the fields in kB (`Active(anon)` becomes `Active_anon`), `node_memory_<Field>`
    /// for counts (HugePages_Total …). Not a family itself: `memory(field:bytes:)` makes them.
    public static let memoryPrefix = "node_memory_"

    public static func memory(field: String, bytes: Bool) -> MetricDescriptor {
        var name = ""
        for ch in field.unicodeScalars {
            switch ch {
            case "(": name += "_"
            case ")": continue
            default:
                let ok = (ch >= "a" && ch <= "z") || (ch >= "A" && ch <= "Z") || (ch >= "0" && ch <= "9") || ch == "_"
                name.unicodeScalars.append(ok ? ch : "_")
            }
        }
        return MetricDescriptor(memoryPrefix + name + (bytes ? "_bytes" : ""), .gauge, "Memory information field \(field) (/proc/meminfo)")
    }

    // MARK: Filesystems (/proc/self/mounts and statvfs)
    static let fsLabels = ["device", "fstype", "mountpoint"]
    public static let fsSize = MetricDescriptor("node_filesystem_size_bytes", .gauge, "Filesystem size", labels: fsLabels)
    public static let fsFree = MetricDescriptor("node_filesystem_free_bytes", .gauge, "Free space, including the part reserved for root", labels: fsLabels)
    public static let fsAvail = MetricDescriptor("node_filesystem_avail_bytes", .gauge, "Space available to unprivileged users", labels: fsLabels)
    public static let fsFiles = MetricDescriptor("node_filesystem_files", .gauge, "Inodes in all", labels: fsLabels)
    public static let fsFilesFree = MetricDescriptor("node_filesystem_files_free", .gauge, "Free inodes", labels: fsLabels)
    public static let fsReadonly = MetricDescriptor("node_filesystem_readonly", .gauge, "1 when mounted read-only", labels: fsLabels)
    public static let fsDeviceError = MetricDescriptor("node_filesystem_device_error", .gauge,
        "1 when statvfs failed for the mount (its sizes are then absent)", labels: fsLabels)

    // MARK: Disk I/O (/proc/diskstats)
    public static let diskReads = MetricDescriptor("node_disk_reads_completed_total", .counter, "Reads completed", labels: ["device"])
    public static let diskReadsMerged = MetricDescriptor("node_disk_reads_merged_total", .counter, "Reads merged", labels: ["device"])
    public static let diskReadBytes = MetricDescriptor("node_disk_read_bytes_total", .counter, "Bytes read", labels: ["device"])
    public static let diskReadTime = MetricDescriptor("node_disk_read_time_seconds_total", .counter, "Seconds spent reading", labels: ["device"])
    public static let diskWrites = MetricDescriptor("node_disk_writes_completed_total", .counter, "Writes completed", labels: ["device"])
    public static let diskWritesMerged = MetricDescriptor("node_disk_writes_merged_total", .counter, "Writes merged", labels: ["device"])
    public static let diskWrittenBytes = MetricDescriptor("node_disk_written_bytes_total", .counter, "Bytes written", labels: ["device"])
    public static let diskWriteTime = MetricDescriptor("node_disk_write_time_seconds_total", .counter, "Seconds spent writing", labels: ["device"])
    public static let diskIONow = MetricDescriptor("node_disk_io_now", .gauge, "I/Os in progress", labels: ["device"])
    public static let diskIOTime = MetricDescriptor("node_disk_io_time_seconds_total", .counter, "Seconds the device was busy", labels: ["device"])
    public static let diskIOWeighted = MetricDescriptor("node_disk_io_time_weighted_seconds_total", .counter,
        "Seconds spent on I/O weighted by the number in progress", labels: ["device"])

    // MARK: Network (/proc/net/dev)
    public static let netRxBytes = MetricDescriptor("node_network_receive_bytes_total", .counter, "Bytes received", labels: ["device"])
    public static let netRxPackets = MetricDescriptor("node_network_receive_packets_total", .counter, "Packets received", labels: ["device"])
    public static let netRxErrs = MetricDescriptor("node_network_receive_errs_total", .counter, "Receive errors", labels: ["device"])
    public static let netRxDrop = MetricDescriptor("node_network_receive_drop_total", .counter, "Received packets dropped", labels: ["device"])
    public static let netTxBytes = MetricDescriptor("node_network_transmit_bytes_total", .counter, "Bytes sent", labels: ["device"])
    public static let netTxPackets = MetricDescriptor("node_network_transmit_packets_total", .counter, "Packets sent", labels: ["device"])
    public static let netTxErrs = MetricDescriptor("node_network_transmit_errs_total", .counter, "Transmit errors", labels: ["device"])
    public static let netTxDrop = MetricDescriptor("node_network_transmit_drop_total", .counter, "Sent packets dropped", labels: ["device"])

    // MARK: File descriptors (/proc/sys/fs/file-nr)
    public static let fdAllocated = MetricDescriptor("node_filefd_allocated", .gauge, "File descriptors allocated on the host")
    public static let fdMaximum = MetricDescriptor("node_filefd_maximum", .gauge, "The host's limit on file descriptors")

    // MARK: Warbler components
    static let componentLabels = ["component"]
    public static let componentUp = MetricDescriptor("warbler_component_up", .gauge,
        "1 when the component's process is running (systemd active, or the supervisor's child alive)", labels: componentLabels)
    public static let componentInfo = MetricDescriptor("warbler_component_info", .gauge,
        "Always 1; the component's manager and its state words in labels", labels: ["component", "manager", "state", "sub_state"])
    public static let componentRestarts = MetricDescriptor("warbler_component_restarts_total", .counter,
        "Automatic restarts systemd made (NRestarts; not available under the built-in supervisor)", labels: componentLabels)
    public static let componentResident = MetricDescriptor("warbler_component_resident_memory_bytes", .gauge,
        "Resident memory of the component's main process (/proc/PID/stat)", labels: componentLabels)
    public static let componentCgroupMemory = MetricDescriptor("warbler_component_cgroup_memory_bytes", .gauge,
        "Memory charged to the unit's cgroup, page cache included (systemd MemoryCurrent)", labels: componentLabels)
    public static let componentCPU = MetricDescriptor("warbler_component_cpu_seconds_total", .counter,
        "CPU seconds used: the unit's cgroup under systemd (CPUUsageNSec), else the main process's user+system time", labels: componentLabels)
    public static let componentFDs = MetricDescriptor("warbler_component_open_fds", .gauge,
        "Open file descriptors of the component's main process", labels: componentLabels)
    public static let componentStart = MetricDescriptor("warbler_component_start_time_seconds", .gauge,
        "When the component's main process started, in seconds since the epoch", labels: componentLabels)

    // MARK: Database
    public static let sqliteBytes = MetricDescriptor("warbler_sqlite_database_bytes", .gauge, "Size of the SQLite database file", labels: ["path"])
    public static let sqliteWALBytes = MetricDescriptor("warbler_sqlite_wal_bytes", .gauge,
        "Size of the SQLite write-ahead log (0 when there is none)", labels: ["path"])
    public static let sqliteCheckpoint = MetricDescriptor("warbler_sqlite_last_checkpoint_timestamp_seconds", .gauge,
        "Modification time of the database file; in WAL mode only checkpoints write it, so this is the last checkpoint that moved pages", labels: ["path"])
    public static let sqliteWALResets = MetricDescriptor("warbler_sqlite_wal_checkpoint_sequence", .gauge,
        "The WAL header's checkpoint sequence number: it grows each time a completed checkpoint lets the log restart", labels: ["path"])
    public static let pgUp = MetricDescriptor("warbler_postgres_up", .gauge, "1 when PostgreSQL answered the exporter's queries")
    public static let pgSize = MetricDescriptor("warbler_postgres_database_bytes", .gauge, "pg_database_size of Warbler's database", labels: ["database"])
    public static let pgConnections = MetricDescriptor("warbler_postgres_connections", .gauge,
        "Client backends by state (pg_stat_activity; other roles' sessions show as unknown without pg_read_all_stats)", labels: ["state"])
    public static let pgMaxConnections = MetricDescriptor("warbler_postgres_max_connections", .gauge, "The server's max_connections")
    public static let pgInRecovery = MetricDescriptor("warbler_postgres_in_recovery", .gauge, "1 on a replica (pg_is_in_recovery), 0 on a primary")
    public static let pgReplicas = MetricDescriptor("warbler_postgres_replicas", .gauge, "Replicas streaming from this primary (pg_stat_replication)")
    public static let pgReplicationLag = MetricDescriptor("warbler_postgres_replication_lag_seconds", .gauge,
        "On a primary, each replica's replay_lag (0 when caught up and idle)", labels: ["replica"])
    public static let pgReplicationLagBytes = MetricDescriptor("warbler_postgres_replication_lag_bytes", .gauge,
        "On a primary, WAL bytes each replica has yet to replay", labels: ["replica"])
    public static let pgReplayDelay = MetricDescriptor("warbler_postgres_replica_lag_seconds", .gauge,
        "On a replica, seconds since the last replayed transaction's commit (0 when all received WAL is replayed)")

    // MARK: The cluster (ClusterCollector; absent on a single node)
    public static let clusterIMServerUp = MetricDescriptor("warbler_cluster_im_server_up", .gauge,
        "1 while this member's HAProxy has the member's IM server up (drained counts as up), 0 when its checks fail", labels: ["member"])
    public static let clusterPatroniUp = MetricDescriptor("warbler_cluster_patroni_up", .gauge, "1 when a database member's Patroni answered")
    public static let clusterPostgresPrimary = MetricDescriptor("warbler_cluster_postgres_primary", .gauge,
        "1 for the database member Patroni has as the PostgreSQL primary, 0 for the others", labels: ["member"])
    public static let clusterPostgresTimeline = MetricDescriptor("warbler_cluster_postgres_timeline", .gauge,
        "The primary's timeline: it grows by one at each promotion (a failover or switchover)")
    public static let clusterStandbyStreaming = MetricDescriptor("warbler_cluster_postgres_standby_streaming", .gauge,
        "1 while the standby streams WAL from the primary", labels: ["member"])
    public static let clusterStandbyLagBytes = MetricDescriptor("warbler_cluster_postgres_standby_lag_bytes", .gauge,
        "WAL bytes the standby is behind the primary (Patroni's lag)", labels: ["member"])
    public static let clusterEtcdHasLeader = MetricDescriptor("warbler_cluster_etcd_has_leader", .gauge,
        "1 while this member's etcd sees a leader (the quorum holds), 0 when it does not or does not answer")
    public static let clusterEtcdPeerConnected = MetricDescriptor("warbler_cluster_etcd_peer_connected", .gauge,
        "1 while this member's etcd is connected to the peer (etcd's member id), 0 when not", labels: ["peer"])
    public static let clusterVIPHeld = MetricDescriptor("warbler_cluster_vip_held", .gauge,
        "1 while this host holds the cluster's virtual IP", labels: ["vip"])
    // From the cluster agent's record of each member's release (ClusterReleasesCollector).
    public static let clusterMemberRelease = MetricDescriptor("warbler_cluster_member_release_info", .gauge,
        "1 for the release each member's IM server says it runs (a member that does not answer has no series)", labels: ["member", "version"])
    public static let clusterReleases = MetricDescriptor("warbler_cluster_releases", .gauge,
        "How many distinct releases the members run: more than 1 during a rolling upgrade or rollback")
    public static let clusterReleasesFresh = MetricDescriptor("warbler_cluster_releases_fresh", .gauge,
        "1 while the cluster agent's record of the members' releases is under 5 minutes old; 0 when it is older or missing (the release series are then dropped)")
    public static let clusterReleasesAge = MetricDescriptor("warbler_cluster_releases_age_seconds", .gauge,
        "Seconds since the cluster agent last read the members' releases")

    // MARK: TLS and backups
    public static let tlsExpiry = MetricDescriptor("warbler_tls_certificate_expiry_seconds", .gauge,
        "Seconds until the certificate's notAfter (negative once expired)", labels: ["path"])
    public static let tlsNotAfter = MetricDescriptor("warbler_tls_certificate_not_after_timestamp_seconds", .gauge,
        "The certificate's notAfter, in seconds since the epoch", labels: ["path"])
    public static let backupPresent = MetricDescriptor("warbler_backup_present", .gauge,
        "1 when the last-success marker of `warbler backup` exists, 0 when no backup has succeeded yet")
    public static let backupTimestamp = MetricDescriptor("warbler_backup_last_success_timestamp_seconds", .gauge,
        "When the last successful backup finished (absent when there is none)")
    public static let backupAge = MetricDescriptor("warbler_backup_age_seconds", .gauge,
        "Seconds since the last successful backup finished; +Inf when there has never been one")
    public static let backupBytes = MetricDescriptor("warbler_backup_last_size_bytes", .gauge, "Size of the last successful backup")

    /// Every fixed family (the node_memory_* fields come from the host and are not listed).
    public static let all: [MetricDescriptor] = [
        collectorUp, collectorDuration, buildInfo,
        cpuSeconds, cpuGuestSeconds, contextSwitches, interrupts, forks, procsRunning, procsBlocked, bootTime,
        load1, load5, load15, uptime, time, timexSync, timexOffset, timexMaxError, timexEstError,
        fsSize, fsFree, fsAvail, fsFiles, fsFilesFree, fsReadonly, fsDeviceError,
        diskReads, diskReadsMerged, diskReadBytes, diskReadTime, diskWrites, diskWritesMerged, diskWrittenBytes, diskWriteTime,
        diskIONow, diskIOTime, diskIOWeighted,
        netRxBytes, netRxPackets, netRxErrs, netRxDrop, netTxBytes, netTxPackets, netTxErrs, netTxDrop,
        fdAllocated, fdMaximum,
        componentUp, componentInfo, componentRestarts, componentResident, componentCgroupMemory, componentCPU, componentFDs, componentStart,
        sqliteBytes, sqliteWALBytes, sqliteCheckpoint, sqliteWALResets,
        pgUp, pgSize, pgConnections, pgMaxConnections, pgInRecovery, pgReplicas, pgReplicationLag, pgReplicationLagBytes, pgReplayDelay,
        tlsExpiry, tlsNotAfter, backupPresent, backupTimestamp, backupAge, backupBytes,
        clusterIMServerUp, clusterPatroniUp, clusterPostgresPrimary, clusterPostgresTimeline, clusterStandbyStreaming, clusterStandbyLagBytes,
        clusterEtcdHasLeader, clusterEtcdPeerConnected, clusterVIPHeld,
        clusterMemberRelease, clusterReleases, clusterReleasesFresh, clusterReleasesAge,
    ]

    /// True for a name the exporter can emit.
    public static func contains(_ name: String) -> Bool {
        all.contains { $0.name == name } || (name.hasPrefix(memoryPrefix) && name.count > memoryPrefix.count)
    }
}
