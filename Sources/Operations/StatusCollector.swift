import Foundation
import WarblerConfig
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
        var components = [await server(manager: manager)]
        var firing: [String]?
        // The exporter and alertd, where the install has them (their unit files are laid out whatever the manager).
        if probe.readFile(layout.path(Paths.unitFile(Paths.exporterUnitName))) != nil {
            let config = try? ServerConfig.load(path: layout.path(Paths.config), environment: [:])
            let port = config?.exporter.port ?? 9101
            components.append(await daemon("exporter", unit: Paths.exporterUnitName, manager: manager,
                                           health: "http://\(Self.probeHost(config?.exporter.host ?? "127.0.0.1")):\(port)/healthz",
                                           listen: "metrics http://\(Self.shown(config?.exporter.host ?? "127.0.0.1")):\(port)"))
        }
        if probe.readFile(layout.path(Paths.unitFile(Paths.alertdUnitName))) != nil {
            let base = "http://" + alertdListen()
            var c = await daemon("alertd", unit: Paths.alertdUnitName, manager: manager, health: base + "/-/healthy", listen: "control \(base)")
            if c.active {
                do {
                    let answer = try await probe.get(base + "/api/v1/alerts", caFile: nil)
                    firing = try Self.firingAlerts(json: answer.body)
                } catch {
                    c.warnings.append("cannot list alerts from \(base): \(error)")
                }
            }
            components.append(c)
        }
        // A cluster member's components, where their units are laid out (whatever the manager: systemd or the
        // built-in supervisor, which runs each from the same description).
        for c in ClusterPaths.laidOutComponents where probe.readFile(layout.path(Paths.unitFile(c.unit))) != nil {
            let supervised = SupervisorConfig.component(c)
            var status = await component(c.name, unit: c.unit, manager: manager, supervisorPIDFile: supervised.pidFile, childPIDFile: supervised.childPIDFile)
            if !status.active {
                status.problems.append(manager == .none ? "no init system manages \(c.name) here" : "\(c.name) is not running (\(status.state))")
            }
            components.append(status)
        }
        var report = StatusReport(host: host, components: components)
        report.firingAlerts = firing
        return report
    }

    /// alertd's control API listener, from alerts.yaml's global.listen.
    func alertdListen() -> String {
        guard let data = probe.readFile(layout.path(Paths.alertsConfig)) else { return "127.0.0.1:9102" }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("listen:") {
                return t.dropFirst("listen:".count).trimmingCharacters(in: CharacterSet(charactersIn: " \"'"))
            }
        }
        return "127.0.0.1:9102"
    }

    /// "name (severity) since …" of every alert alertd's `/api/v1/alerts` says is firing (silenced ones too, marked).
    static func firingAlerts(json: String) throws -> [String] {
        guard let list = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]] else {
            throw StatusError("alertd's alert list is not a JSON array")
        }
        return list.compactMap { a in
            guard let state = a["state"] as? String, state == "firing" || state == "suppressed", let name = a["name"] as? String else { return nil }
            let severity = a["severity"] as? String ?? "?"
            let labels = (a["labels"] as? [String: String] ?? [:]).filter { $0.key != "alertname" && $0.key != "severity" }
                .sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            let summary = (a["annotations"] as? [String: String])?["summary"]
            var text = "\(name) (\(severity))"
            if !labels.isEmpty { text += " {\(labels.joined(separator: ", "))}" }
            if let summary { text += ": \(summary)" }
            if state == "suppressed" { text += " [silenced]" }
            return text
        }
    }

    /// A component's state, PID, uptime and restarts from systemd or its supervisor, and the release it runs.
    func component(_ name: String, unit: String, manager: InitSystem, supervisorPIDFile: String, childPIDFile: String) async -> ComponentStatus {
        var facts: ServiceFacts?
        switch manager {
        case .systemd: facts = await probe.systemdService(unit)
        case .builtin: facts = await probe.supervisedService(supervisorPIDFile: layout.path(supervisorPIDFile), childPIDFile: layout.path(childPIDFile))
        case .none: facts = nil
        }
        var c = ComponentStatus(name: name, manager: manager.rawValue,
                                state: facts.map { $0.subState.isEmpty ? $0.activeState : "\($0.activeState)/\($0.subState)" } ?? "unknown",
                                active: facts?.active ?? false)
        c.pid = facts?.pid
        c.uptimeSeconds = facts?.uptimeSeconds
        c.restarts = facts?.restarts
        c.version = probe.linkTarget(layout.path(Paths.current)).map(StatusParsing.release(linkTarget:))
        return c
    }

    /// A daemon beside the server: its state from systemd or the supervisor, and its health endpoint.
    func daemon(_ name: String, unit: String, manager: InitSystem, health: String, listen: String) async -> ComponentStatus {
        var c = await component(name, unit: unit, manager: manager, supervisorPIDFile: "\(Paths.run)/supervise-\(name).pid",
                                childPIDFile: "\(Paths.run)/\(name).pid")
        c.listen = [listen]
        guard c.active else {
            c.problems.append(manager == .none ? "no init system manages \(name) here" : "\(name) is not running (\(c.state))")
            return c
        }
        do {
            let answer = try await probe.get(health, caFile: nil)
            c.ready = answer.status == 200
            if answer.status != 200 { c.readyDetail = "GET \(health) answered \(answer.status)" }
        } catch {
            c.ready = false
            c.readyDetail = "GET \(health) failed: \(error)"
        }
        if c.ready == false { c.problems.append("not ready: \(c.readyDetail ?? "")") }
        return c
    }

    func server(manager: InitSystem) async -> ComponentStatus {
        var c = await component("server", unit: Paths.serverUnitName, manager: manager,
                                supervisorPIDFile: Paths.supervisorPID, childPIDFile: Paths.serverPID)

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

public struct StatusError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
