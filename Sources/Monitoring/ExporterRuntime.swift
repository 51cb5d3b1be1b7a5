import Foundation
import Hummingbird
import WarblerConfig
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import SystemdSupport

/// `warbler exporter`: serves `GET /metrics` (every collector, fresh on each scrape) and `GET /healthz` on its own
/// listener. It needs nothing from the server process, so it keeps answering while the server is down.
public final class ExporterRuntime: Sendable {
    public let config: ServerConfig
    public let scraper: Scraper
    let logger: Logger
    private let boundPort = NIOLockedValueBox<Int?>(nil)
    private let group = NIOLockedValueBox<ServiceGroup?>(nil)

    public init(config: ServerConfig, collectors: [any Collector], logger: Logger) {
        self.config = config
        self.logger = logger
        scraper = Scraper(collectors: collectors, timeout: .milliseconds(Int64(config.exporter.collectorTimeoutSeconds * 1000)), logger: logger)
    }

    /// The collectors for this host as `config` describes it.
    public static func liveCollectors(config: ServerConfig, logger: Logger, files: HostFiles = HostFiles()) -> [any Collector] {
        let manager: ComponentManager = switch config.exporter.manager {
        case "systemd": .systemd
        case "supervisor": .supervisor
        default: ComponentManager.detect(files: files)
        }
        var collectors: [any Collector] = [
            CPUCollector(files: files), LoadCollector(files: files), MemoryCollector(files: files),
            FilesystemCollector(files: files), DiskStatsCollector(files: files), NetworkCollector(files: files),
            FileDescriptorCollector(files: files), UptimeCollector(files: files), TimexCollector(),
            ComponentCollector(components: config.exporter.components, manager: manager, files: files),
            TLSCollector(paths: [config.server.tlsCert], files: files),
            BackupCollector(markerPath: config.exporter.backupMarker, files: files),
        ]
        if config.cluster.enabled { collectors += [ClusterCollector(files: files), ClusterReleasesCollector(files: files)] }
        switch config.storage.driver {
        case "postgres": collectors.append(PostgresCollector(settings: config.storage, logger: logger))
        default: collectors.append(SQLiteCollector(path: config.storage.path, files: files))
        }
        return collectors
    }

    /// The port the listener is bound to, once it runs.
    public var port: Int? { boundPort.withLockedValue { $0 } }

    func makeApplication() -> some ApplicationProtocol {
        let router = Router()
        let scraper = self.scraper
        router.get("/metrics") { _, _ -> Response in
            let text = await scraper.scrape().render()
            return Response(status: .ok, headers: [.contentType: MetricSet.contentType], body: .init(byteBuffer: ByteBuffer(string: text)))
        }
        router.get("/healthz") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        let logger = self.logger
        return Application(
            router: router,
            configuration: .init(address: .hostname(config.exporter.host, port: config.exporter.port), serverName: "warbler-exporter"),
            onServerRunning: { [boundPort] channel in
                boundPort.withLockedValue { $0 = channel.localAddress?.port }
                logger.info("exporter listening on \(channel.localAddress?.description ?? "?")")
                Systemd.notify("READY=1\nSTATUS=serving /metrics")
            },
            logger: logger)
    }

    /// Runs until SIGTERM/SIGINT (when `handleSignals`) or `shutdown()`, then closes the collectors.
    public func run(handleSignals: Bool = true) async throws {
        let g = ServiceGroup(configuration: .init(
            services: [.init(service: makeApplication()), .init(service: ExporterLifecycle(logger: logger))],
            gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [],
            logger: logger))
        group.withLockedValue { $0 = g }
        do {
            try await g.run()
        } catch {
            for c in scraper.collectors { await c.shutdown() }
            throw error
        }
        for c in scraper.collectors { await c.shutdown() }
    }

    /// Starts graceful shutdown (as SIGTERM does).
    public func shutdown() async {
        await group.withLockedValue { $0 }?.triggerGracefulShutdown()
    }

    /// Waits until the listener is bound and returns its port.
    public func waitUntilListening(timeout: Duration = .seconds(30)) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let p = port { return p }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw MonitoringError("the exporter did not start listening on \(config.exporter.host):\(config.exporter.port) within \(timeout)")
    }
}

/// Pings systemd's watchdog while the exporter runs, and says STOPPING=1 when shutdown begins.
struct ExporterLifecycle: Service {
    let logger: Logger

    func run() async throws {
        if let interval = Systemd.watchdogInterval() {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                Systemd.notify("WATCHDOG=1")
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
            }
        } else {
            try? await gracefulShutdown()
        }
        Systemd.notify("STOPPING=1")
        logger.info("exporter stopping")
    }
}
