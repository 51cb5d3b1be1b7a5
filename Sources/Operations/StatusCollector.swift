import Foundation
import IMServer
import Installer
import X509

/// Gathers `warbler status` for this node through a `StatusProbe`, and decides what is unhealthy.
public struct StatusCollector: Sendable {
    public let probe: any StatusProbe
    public let layout: Layout
    /// Seconds between the two metric scrapes the message rate comes from.
    public var scrapeInterval: Double
    /// A certificate closer than this to expiry makes the server unhealthy.
    public var certificateMinimumDays: Int

    public init(probe: any StatusProbe, layout: Layout, scrapeInterval: Double = 1, certificateMinimumDays: Int = 7) {
        self.probe = probe; self.layout = layout; self.scrapeInterval = scrapeInterval; self.certificateMinimumDays = certificateMinimumDays
    }

    public func collect(manager: InitSystem, host: String) async -> StatusReport {
        StatusReport(host: host, components: [await server(manager: manager)])
    }

    func server(manager: InitSystem) async -> ComponentStatus {
        var facts: ServiceFacts?
        switch manager {
        case .systemd: facts = await probe.systemdService(Paths.serverUnitName)
        case .builtin: facts = await probe.supervisedService(supervisorPIDFile: layout.path(Paths.supervisorPID), childPIDFile: layout.path(Paths.serverPID))
        case .none: facts = nil
        }
        var c = ComponentStatus(name: "server", manager: manager.rawValue,
                                state: facts.map { $0.subState.isEmpty ? $0.activeState : "\($0.activeState)/\($0.subState)" } ?? "unknown",
                                active: facts?.active ?? false)
        c.pid = facts?.pid
        c.uptimeSeconds = facts?.uptimeSeconds
        c.restarts = facts?.restarts
        c.version = probe.linkTarget(layout.path(Paths.current)).map(StatusParsing.release(linkTarget:))

        let configPath = layout.path(Paths.config)
        guard probe.readFile(configPath) != nil else {
            c.problems.append("no config at \(configPath): is Warbler installed?")
            return c
        }
        let config: ServerConfig
        // The file alone, as the server under its unit sees it (no WARBLER_ overrides from this shell).
        do { config = try ServerConfig.load(path: configPath, environment: [:]) } catch {
            c.problems.append("the config \(configPath) does not load: \(error)")
            return c
        }
        let tls = !config.server.tlsCert.isEmpty && !config.server.tlsKey.isEmpty
        let scheme = tls ? "https" : "http"
        c.listen.append("\(scheme)://\(Self.shown(config.server.host)):\(config.server.port)")
        if config.metrics.port >= 0 { c.listen.append("metrics http://\(Self.shown(config.metrics.host)):\(config.metrics.port)") }

        if config.storage.driver == "sqlite" {
            let db = layout.path(config.storage.path)
            if let size = probe.fileSize(db) { c.databaseBytes = size + (probe.fileSize(db + "-wal") ?? 0) }
        }
        if tls {
            let certPath = layout.path(config.server.tlsCert)
            if let pem = probe.readFile(certPath).map({ String(decoding: $0, as: UTF8.self) }),
               let notAfter = try? CertificateExpiry.notValidAfter(pem: pem) {
                let days = Int((notAfter.timeIntervalSince(probe.now()) / 86400).rounded(.down))
                c.certificateDaysLeft = days
                if days < certificateMinimumDays {
                    c.problems.append(days < 0 ? "the TLS certificate \(certPath) has expired" : "the TLS certificate \(certPath) expires in \(days) days")
                } else if days < 30 {
                    c.warnings.append("the TLS certificate expires in \(days) days")
                }
            } else {
                c.problems.append("cannot read the TLS certificate \(certPath)")
            }
        }

        guard c.active else {
            c.problems.append(manager == .none ? "no init system manages the server here" : "the server is not running (\(c.state))")
            return c
        }
        let base = "\(scheme)://\(Self.probeHost(config.server.host)):\(config.server.port)"
        let ca = tls ? layout.path(Paths.caCert) : nil
        do {
            let answer = try await probe.get(base + "/readyz", caFile: ca.flatMap { probe.readFile($0) != nil ? $0 : nil })
            c.ready = answer.status == 200
            c.readyDetail = answer.status == 200 ? nil : "GET /readyz answered \(answer.status): \(answer.body.prefix(200))"
        } catch {
            c.ready = false
            c.readyDetail = "GET \(base)/readyz failed: \(error)"
        }
        if c.ready == false { c.problems.append("not ready: \(c.readyDetail ?? "")") }

        if config.metrics.port >= 0 {
            let url = "http://\(Self.probeHost(config.metrics.host)):\(config.metrics.port)/metrics"
            do {
                let first = try await probe.get(url, caFile: nil)
                await probe.sleep(seconds: scrapeInterval)
                let second = try await probe.get(url, caFile: nil)
                c.connections = StatusParsing.metric("warbler_connections", in: second.body)
                if let a = StatusParsing.metric("warbler_sends_total", in: first.body),
                   let b = StatusParsing.metric("warbler_sends_total", in: second.body), scrapeInterval > 0 {
                    c.messagesPerMinute = max(0, b - a) / scrapeInterval * 60
                }
            } catch {
                c.warnings.append("metrics at \(url) unreachable: \(error)")
            }
        }
        return c
    }

    static func shown(_ host: String) -> String { host.contains(":") ? "[\(host)]" : host }

    /// Where to reach a listener bound to `host` from this machine.
    static func probeHost(_ host: String) -> String {
        switch host {
        case "0.0.0.0", "": "127.0.0.1"
        case "::": "[::1]"
        default: shown(host)
        }
    }
}
