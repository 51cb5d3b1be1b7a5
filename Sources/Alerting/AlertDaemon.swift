import AlertReceivers
import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import SystemdSupport

/// `warbler alertd`: scrapes the targets, evaluates the rules, notifies, and serves the control API.
///
/// Under systemd it sends READY=1 once the control API listens, WATCHDOG=1 while evaluations keep running, and
/// STOPPING=1 when it shuts down (after which it saves the state a last time).
public final class AlertDaemon: Sendable {
    public let service: AlertService
    let config: AlertsConfig
    let scraper: Scraper
    let logger: Logger
    let group = NIOLockedValueBox<ServiceGroup?>(nil)
    let port = NIOLockedValueBox<Int?>(nil)
    /// What clients must present to change silences (`ControlToken`).
    public let controlToken: String

    /// `deliver` sends one notification to the receiver it names (normally `NotificationDispatcher.dispatch`).
    public init(config: AlertsConfig, deliver: @escaping @Sendable (AlertNotification, String) async -> Void, logger: Logger) throws {
        self.config = config
        self.logger = logger
        service = try AlertService(config: config, deliver: deliver, logger: logger)
        controlToken = try ControlToken.loadOrCreate(path: config.controlTokenPath)
        scraper = try Scraper(targets: config.targets, timeout: config.scrapeTimeout)
    }

    /// Runs until SIGTERM/SIGINT (when `handleSignals`) or `shutdown()`.
    public func run(handleSignals: Bool = true) async throws {
        let logger = self.logger
        let port = self.port
        let app = Application(
            router: ControlAPI.router(service: service, token: controlToken),
            configuration: .init(address: .hostname(config.listenHost, port: config.listenPort), serverName: "warbler-alertd"),
            onServerRunning: { channel in
                port.withLockedValue { $0 = channel.localAddress?.port }
                logger.info("control API listening on \(channel.localAddress?.description ?? "?")")
                Systemd.notify("READY=1\nSTATUS=evaluating rules")
            },
            logger: logger)
        let service = self.service, scraper = self.scraper, targets = config.targets
        let scrape = Loop(interval: config.scrapeInterval) {
            let now = Date()
            await withTaskGroup(of: ScrapeResult.self) { g in
                for t in targets { g.addTask { await scraper.scrape(t) } }
                for await r in g { await service.ingest(r, at: now) }
            }
            await service.scrapeRoundFinished(at: now)
        }
        let evaluate = Loop(interval: config.evaluationInterval) { await service.evaluate(at: Date()) }
        let watchdog = Watchdog(service: service, stallAfter: 3 * config.evaluationInterval + 30, logger: logger)
        let stop = Stop(service: service, scraper: scraper)
        let g = ServiceGroup(configuration: .init(
            services: [.init(service: stop), .init(service: app), .init(service: scrape), .init(service: evaluate), .init(service: watchdog)],
            gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [],
            logger: logger))
        group.withLockedValue { $0 = g }
        logger.info("alertd: \(config.rules.count) rules, \(config.targets.count) targets, \(config.receivers.count) receivers")
        try await g.run()
    }

    /// Starts graceful shutdown (as SIGTERM does).
    public func shutdown() async {
        await group.withLockedValue { $0 }?.triggerGracefulShutdown()
    }

    /// Waits until the control API listens and returns its port.
    public func waitUntilListening(timeout: Duration = .seconds(30)) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let p = port.withLockedValue({ $0 }) { return p }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw StateError("alertd's control API did not start listening within \(timeout)")
    }
}

/// Runs `body` every `interval` seconds until shutdown.
struct Loop: Service {
    let interval: Double
    let body: @Sendable () async -> Void

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let start = ContinuousClock.now
                await body()
                try await Task.sleep(until: start + .milliseconds(Int64(interval * 1000)), clock: .continuous)
            }
        }
    }
}

/// Pings systemd's watchdog while evaluations keep finishing; a wedged loop stops the pings and systemd restarts us.
struct Watchdog: Service {
    let service: AlertService
    let stallAfter: Double
    let logger: Logger

    func run() async throws {
        guard let interval = Systemd.watchdogInterval() else {
            try? await gracefulShutdown()
            return
        }
        let started = Date()
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let last = await service.lastEvaluation ?? started
            if Date().timeIntervalSince(last) < stallAfter {
                Systemd.notify("WATCHDOG=1")
            } else {
                logger.error("no evaluation for \(Int(Date().timeIntervalSince(last)))s; withholding the watchdog ping")
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}

/// Last to stop: tells systemd, saves the state, closes the scrape clients.
struct Stop: Service {
    let service: AlertService
    let scraper: Scraper

    func run() async throws {
        try? await gracefulShutdown()
        Systemd.notify("STOPPING=1")
        await service.save()
        await scraper.shutdown()
    }
}
