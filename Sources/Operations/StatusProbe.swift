import Foundation
import Installer

/// The unit (or supervisor) state of one service, as its manager reports it.
public struct ServiceFacts: Sendable, Equatable {
    public var activeState: String
    public var subState: String
    public var pid: Int?
    public var uptimeSeconds: Double?
    public var restarts: Int?

    public init(activeState: String, subState: String, pid: Int? = nil, uptimeSeconds: Double? = nil, restarts: Int? = nil) {
        self.activeState = activeState; self.subState = subState; self.pid = pid; self.uptimeSeconds = uptimeSeconds; self.restarts = restarts
    }

    public var active: Bool { activeState == "active" || activeState == "reloading" }
}

/// An HTTP GET's outcome.
public struct HTTPAnswer: Sendable, Equatable {
    public var status: Int
    public var body: String
    public init(status: Int, body: String) { self.status = status; self.body = body }
}

/// Everything `status` looks at on the host, so the report can be computed against a fake in tests.
public protocol StatusProbe: Sendable {
    /// `systemctl show UNIT`.
    func systemdService(_ unit: String) async -> ServiceFacts?
    /// The built-in supervisor's view: its PID file, the child's PID file, /proc.
    func supervisedService(supervisorPIDFile: String, childPIDFile: String) async -> ServiceFacts?
    func readFile(_ path: String) -> Data?
    func fileSize(_ path: String) -> UInt64?
    func linkTarget(_ path: String) -> String?
    /// GET `url`; `caFile` is the CA to trust for https. Throws when nothing answered.
    func get(_ url: String, caFile: String?) async throws -> HTTPAnswer
    func sleep(seconds: Double) async
    func now() -> Date
}

/// Parsers for what the live probe reads; pure, so tests feed them fixtures.
public enum StatusParsing {
    /// `systemctl show -p ActiveState,SubState,MainPID,ActiveEnterTimestampMonotonic,NRestarts` output, with the
    /// current monotonic clock in microseconds.
    public static func systemctlShow(_ text: String, monotonicNowMicroseconds: UInt64) -> ServiceFacts? {
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        guard let active = values["ActiveState"] else { return nil }
        var facts = ServiceFacts(activeState: active, subState: values["SubState"] ?? "")
        if let pid = values["MainPID"].flatMap(Int.init), pid > 0 { facts.pid = pid }
        if facts.active, let since = values["ActiveEnterTimestampMonotonic"].flatMap(UInt64.init), since > 0, since <= monotonicNowMicroseconds {
            facts.uptimeSeconds = Double(monotonicNowMicroseconds - since) / 1_000_000
        }
        facts.restarts = values["NRestarts"].flatMap(Int.init)
        return facts
    }

    /// A process's start, in seconds after boot, from /proc/PID/stat (field 22, in clock ticks). The command name
    /// (field 2) may hold spaces and parentheses, so fields are counted after its last ')'.
    public static func processStartSeconds(stat: String, ticksPerSecond: Double) -> Double? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state), so field 22 is fields[19].
        guard fields.count > 19, let ticks = Double(fields[19]) else { return nil }
        return ticks / ticksPerSecond
    }

    /// The sum of every sample of `name` (any labels) in Prometheus text format.
    public static func metric(_ name: String, in text: String) -> Double? {
        var total: Double?
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count >= 2 else { continue }
            let key = parts[0]
            let base = key.firstIndex(of: "{").map { key[..<$0] } ?? key
            if base == name, let v = Double(parts[1]) { total = (total ?? 0) + v }
        }
        return total
    }

    /// The release name `current` points at (`releases/0.1.0` gives 0.1.0).
    public static func release(linkTarget: String) -> String {
        (linkTarget as NSString).lastPathComponent
    }
}
