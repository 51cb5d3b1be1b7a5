import Foundation
import Operations

/// Seconds to expiry of the configured TLS certificates (the server's `server.tls_cert`), read with the same parser
/// `warbler status` uses.
public struct TLSCollector: Collector {
    public let name = "tls"
    let paths: [String]
    let files: HostFiles
    let now: @Sendable () -> Date

    public init(paths: [String], files: HostFiles = HostFiles(), now: @escaping @Sendable () -> Date = { Date() }) {
        self.paths = paths.filter { !$0.isEmpty }; self.files = files; self.now = now
    }

    public func collect() async throws -> MetricSet {
        var set = MetricSet()
        for path in paths {
            let notAfter = try CertificateExpiry.notValidAfter(file: files.path(path))
            set.add(Catalog.tlsExpiry, ["path": path], notAfter.timeIntervalSince(now()))
            set.add(Catalog.tlsNotAfter, ["path": path], notAfter.timeIntervalSince1970)
        }
        return set
    }
}

/// What `warbler backup` writes after each successful backup (`/var/lib/warbler/backups/last-success.json`).
public struct BackupMarker: Codable, Sendable, Equatable {
    /// ISO 8601, with or without fractional seconds.
    public var finishedAt: String
    public var file: String
    public var bytes: Int64

    public init(finishedAt: String, file: String, bytes: Int64) { self.finishedAt = finishedAt; self.file = file; self.bytes = bytes }

    /// `finishedAt` as a date, or nil when it is not ISO 8601.
    public var finished: Date? {
        let f = ISO8601DateFormatter()
        if let d = f.date(from: finishedAt) { return d }
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: finishedAt)
    }
}

/// The age of the last successful backup, from its marker file.
public struct BackupCollector: Collector {
    public let name = "backup"
    let markerPath: String
    let files: HostFiles
    let now: @Sendable () -> Date

    public init(markerPath: String, files: HostFiles = HostFiles(), now: @escaping @Sendable () -> Date = { Date() }) {
        self.markerPath = markerPath; self.files = files; self.now = now
    }

    public func collect() async throws -> MetricSet {
        var set = MetricSet()
        let full = files.path(markerPath)
        guard files.exists(markerPath) else {
            // Never backed up: infinitely stale, so a "backup older than N" rule fires.
            set.add(Catalog.backupPresent, 0)
            set.add(Catalog.backupAge, .infinity)
            return set
        }
        let text = try files.read(markerPath)
        let marker: BackupMarker
        do { marker = try JSONDecoder().decode(BackupMarker.self, from: Data(text.utf8)) } catch {
            throw MonitoringError("\(full) is not a backup marker ({\"finishedAt\": ISO 8601, \"file\": path, \"bytes\": N}): \(error)")
        }
        guard let finished = marker.finished else {
            throw MonitoringError("\(full): finishedAt '\(marker.finishedAt)' is not an ISO 8601 time")
        }
        set.add(Catalog.backupPresent, 1)
        set.add(Catalog.backupTimestamp, finished.timeIntervalSince1970)
        set.add(Catalog.backupAge, max(0, now().timeIntervalSince(finished)))
        set.add(Catalog.backupBytes, Double(marker.bytes))
        return set
    }
}
