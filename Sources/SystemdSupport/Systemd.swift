import CSystemd
import Foundation
import Logging

/// systemd integration through libsystemd: readiness, watchdog and the journal. Every call is a no-op
/// when the process was not started by systemd (no NOTIFY_SOCKET / WATCHDOG_USEC / JOURNAL_STREAM).
public enum Systemd {
    /// Sends a state string such as `READY=1` to the service manager. Returns true if it was delivered.
    @discardableResult
    public static func notify(_ state: String) -> Bool {
        sd_notify(0, state) > 0
    }

    /// The interval at which to send WATCHDOG=1 (half the configured timeout), or nil when no watchdog is set.
    public static func watchdogInterval() -> Duration? {
        var usec: UInt64 = 0
        guard sd_watchdog_enabled(0, &usec) > 0, usec > 0 else { return nil }
        return .microseconds(Int64(usec / 2))
    }

    /// True when stderr is connected to the journal, so logs should go there with structured fields.
    public static var stderrIsJournal: Bool {
        guard let stream = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] else { return false }
        var st = stat()
        guard fstat(2, &st) == 0 else { return false }
        return stream == "\(st.st_dev):\(st.st_ino)"
    }
}

/// A swift-log handler that writes to the systemd journal with priority and metadata as fields.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let priority: Int = switch event.level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
        var fields = ["MESSAGE=\(event.message)", "PRIORITY=\(priority)", "SYSLOG_IDENTIFIER=warbler", "WARBLER_LOGGER=\(label)"]
        for (k, v) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
            // Journal field names: upper case letters, digits and underscores.
            let name = k.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" }
            fields.append("\(String(name))=\(v)")
        }
        Self.send(fields)
    }

    static func send(_ fields: [String]) {
        let cstrings = fields.map { strdup($0) }
        defer { cstrings.forEach { free($0) } }
        var iov = cstrings.map { iovec(iov_base: UnsafeMutableRawPointer($0), iov_len: strlen($0!)) }
        _ = sd_journal_sendv(&iov, Int32(iov.count))
    }
}
