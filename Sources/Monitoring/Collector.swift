import Foundation
import WarblerConfig
import Logging
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// One source of metrics. Each scrape calls `collect()` afresh; a collector that throws (or runs past the scrape's
/// timeout) is reported as `warbler_exporter_collector_up{collector="name"} 0` and the others still answer.
public protocol Collector: Sendable {
    /// The `collector` label: `cpu`, `filesystem`, `components`, …
    var name: String { get }
    func collect() async throws -> MetricSet
    /// Releases what the collector holds open (a database connection); called once when the exporter stops.
    func shutdown() async
}

extension Collector {
    public func shutdown() async {}
}

/// A collector's failure, saying what it could not read and what to check.
public struct MonitoringError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Reads host files under a root directory: `/` on the live host, a fixture tree in tests (`root + "/proc/stat"`).
public struct HostFiles: Sendable {
    public let root: String

    public init(root: String = "/") {
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        self.root = r == "/" ? "" : r
    }

    /// The path this process opens for the host path `path`.
    public func path(_ path: String) -> String { root + path }

    /// The whole file. procfs files report size 0, so this reads until end of file rather than trusting stat.
    public func read(_ path: String) throws -> String {
        let full = self.path(path)
        let fd = open(full, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw MonitoringError("cannot read \(full): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var data = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw MonitoringError("cannot read \(full): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            data.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: data, as: UTF8.self)
    }

    public func exists(_ path: String) -> Bool { access(self.path(path), F_OK) == 0 }
}

/// Runs every collector for one scrape, concurrently, each within `timeout`, and adds the exporter's own series.
public struct Scraper: Sendable {
    public let collectors: [any Collector]
    public var timeout: Duration
    let logger: Logger

    public init(collectors: [any Collector], timeout: Duration = .seconds(5), logger: Logger) {
        self.collectors = collectors; self.timeout = timeout; self.logger = logger
    }

    struct Outcome: Sendable {
        var name: String
        var set: MetricSet?
        var error: String?
        var seconds: Double
    }

    /// One scrape's metrics.
    public func scrape() async -> MetricSet {
        let timeout = self.timeout
        let outcomes = await withTaskGroup(of: Outcome.self) { group in
            for collector in collectors {
                group.addTask {
                    let start = ContinuousClock.now
                    var outcome = Outcome(name: collector.name, seconds: 0)
                    do {
                        outcome.set = try await Self.within(timeout, what: "the \(collector.name) collector") { try await collector.collect() }
                    } catch {
                        outcome.error = "\(error)"
                    }
                    let d = ContinuousClock.now - start
                    outcome.seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
                    return outcome
                }
            }
            var all: [Outcome] = []
            for await o in group { all.append(o) }
            return all.sorted { $0.name < $1.name }
        }
        var set = MetricSet()
        set.add(Catalog.buildInfo, ["version": WarblerVersion.version], 1)
        for o in outcomes {
            set.add(Catalog.collectorUp, ["collector": o.name], o.set == nil ? 0 : 1)
            set.add(Catalog.collectorDuration, ["collector": o.name], o.seconds)
            if let s = o.set { set.merge(s) }
            if let e = o.error { logger.warning("collector failed", metadata: ["monitoring.collector": "\(o.name)", "monitoring.error": "\(e)"]) }
        }
        for p in set.problems { logger.warning("metric refused", metadata: ["monitoring.problem": "\(p)"]) }
        return set
    }

    /// `body`'s result, or a timeout error once `timeout` passes; a body that ignores cancellation is left to finish
    /// on its own rather than holding up the scrape.
    static func within<T: Sendable>(_ timeout: Duration, what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let state = NIOLockedValueBox<(done: Bool, continuation: CheckedContinuation<T, any Error>?, tasks: [Task<Void, Never>])>((false, nil, []))
        @Sendable func finish(_ result: Result<T, any Error>) {
            let (cont, tasks): (CheckedContinuation<T, any Error>?, [Task<Void, Never>]) = state.withLockedValue { s in
                guard !s.done else { return (nil, []) }
                s.done = true
                defer { s.continuation = nil; s.tasks = [] }
                return (s.continuation, s.tasks)
            }
            tasks.forEach { $0.cancel() }
            cont?.resume(with: result)
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                let cancelledAlready = state.withLockedValue { s -> Bool in
                    if s.done { return true }
                    s.continuation = continuation
                    return false
                }
                if cancelledAlready { continuation.resume(throwing: CancellationError()); return }
                let work = Task {
                    do { finish(.success(try await body())) } catch { finish(.failure(error)) }
                }
                let timer = Task {
                    try? await Task.sleep(for: timeout)
                    if !Task.isCancelled { finish(.failure(MonitoringError("\(what) took longer than \(timeout)"))) }
                }
                state.withLockedValue { s in if !s.done { s.tasks = [work, timer] } else { work.cancel(); timer.cancel() } }
            }
        } onCancel: {
            finish(.failure(CancellationError()))
        }
    }
}
