import AlertReceivers
import Alerting
import ArgumentParser
import Foundation
import Logging
import Templates

extension Warbler {
    struct Alertd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the alerting daemon (normally started by systemd or the supervisor).", shouldDisplay: false)
        @Option(help: "The rules file.") var config = "/etc/warbler/alerts.yaml"
        @Option(help: "debug, info, warning, error.") var logLevel = "info"

        func run() async throws {
            let cfg: AlertsConfig
            let receivers: [any AlertReceiver]
            do {
                cfg = try AlertsConfig.load(path: config)
                receivers = try cfg.makeReceivers()
            } catch { throw fail(error) }
            bootstrapLogging(level: logLevel)
            let logger = Logger(label: "warbler.alertd")
            let dispatcher = NotificationDispatcher(receivers: receivers, logger: logger)
            do {
                let daemon = try AlertDaemon(config: cfg, deliver: { await dispatcher.dispatch($0, to: $1) }, logger: logger)
                try await daemon.run()
            } catch {
                logger.critical("alertd stopped: \(error)")
                throw fail(error)
            }
        }
    }

    struct Alerts: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the rules file, list alerts, manage silences, test receivers, export Prometheus rules.",
            subcommands: [Check.self, List.self, Silence.self, Unsilence.self, Test.self, ExportRules.self])
    }
}

/// Where alertd's control API is: --url, else the rules file's `global.listen`, else 127.0.0.1:9102.
struct AlertdAddress: ParsableArguments {
    @Option(help: "The rules file alertd runs with (its global.listen is the address).") var config = "/etc/warbler/alerts.yaml"
    @Option(help: "alertd's control API, such as http://127.0.0.1:9102 (overrides --config).") var url: String?

    /// A client for alertd; `silences`: with the control token, which only root and the service user can read.
    func client(silences: Bool = false) throws -> AlertsClient {
        let cfg = FileManager.default.isReadableFile(atPath: config) ? try AlertsConfig.load(path: config) : AlertsConfig()
        let token = silences ? try ControlToken.read(path: cfg.controlTokenPath) : nil
        return AlertsClient(baseURL: url ?? cfg.controlURL, token: token)
    }
}

extension Warbler.Alerts {
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Load and validate a rules file; a problem prints FILE:LINE: reason and exits 1.")
        @Argument(help: "The rules file.") var file: String

        func run() throws {
            do {
                let c = try AlertsConfig.load(path: file)
                _ = try c.makeReceivers()
                print("\(file): OK (\(c.rules.count) rules, \(c.targets.count) targets, \(c.routes.count) routes, \(c.receivers.count) receivers)")
            } catch { throw fail(error) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List pending, firing and suppressed alerts (or silences).")
        @OptionGroup var address: AlertdAddress
        @Flag(help: "Print JSON for scripts.") var json = false
        @Flag(help: "List silences instead of alerts.") var silences = false

        func run() async throws {
            do {
                let client = try address.client(silences: silences)
                if silences {
                    let list = try await client.silences()
                    if json { print(try AlertsTable.json(list)); return }
                    print(AlertsTable.silences(list))
                } else {
                    let list = try await client.alerts()
                    if json { print(try AlertsTable.json(list)); return }
                    print(AlertsTable.alerts(list))
                }
            } catch { throw fail(error) }
        }
    }

    struct Silence: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Silence alerts matching every MATCHER (NAME=VALUE, NAME!=VALUE, NAME=~REGEX, NAME!~REGEX).")
        @OptionGroup var address: AlertdAddress
        @Argument(help: "Matchers, such as alertname=DiskAlmostFull instance=~\"node1.*\".") var matchers: [String]
        @Option(name: .customLong("for"), help: "How long, such as 30m, 2h or 1d.") var duration: String
        @Option(help: "Why (shown in alerts list --silences).") var comment: String
        @Option(help: "Who (default: $SUDO_USER or $USER).") var author: String?

        func validate() throws {
            guard let d = parseDuration(duration), d > 0 else { throw ValidationError("--for '\(duration)' is not a duration: use 30m, 2h, 1d") }
            guard !comment.trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("--comment must say why") }
            _ = try Matchers.parse(matchers)
        }

        func run() async throws {
            do {
                let env = ProcessInfo.processInfo.environment
                let who = author ?? env["SUDO_USER"] ?? env["USER"] ?? "unknown"
                let s = try await address.client(silences: true).silence(matchers: matchers, duration: parseDuration(duration)!, comment: comment, createdBy: who)
                print("silenced \(s.matchers.map(\.description).joined(separator: ", ")) until \(AlertsTable.time(s.endsAt)); id \(s.id)")
            } catch { throw fail(error) }
        }
    }

    struct Unsilence: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End a silence by its id (see alerts list --silences).")
        @OptionGroup var address: AlertdAddress
        @Argument(help: "The silence id.") var id: String

        func run() async throws {
            do {
                try await address.client(silences: true).unsilence(id)
                print("silence \(id) removed")
            } catch { throw fail(error) }
        }
    }

    struct Test: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Send a test notification to RECEIVER from the rules file.")
        @Argument(help: "A receiver name from the rules file.") var receiver: String
        @Option(help: "The rules file.") var config = "/etc/warbler/alerts.yaml"

        func run() async throws {
            do {
                let cfg = try AlertsConfig.load(path: config)
                guard let rc = cfg.receivers.first(where: { $0.name == receiver }) else {
                    throw AlertsClientError("\(config) has no receiver named \(receiver) (it has: \(cfg.receivers.map(\.name).joined(separator: ", ")))")
                }
                let r = try Receivers.make(rc)
                try await r.send(AlertTest.notification(receiver: receiver, externalURL: cfg.externalURL))
                print("sent a test notification to \(receiver)")
            } catch { throw fail(error) }
        }
    }

    struct ExportRules: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export-rules", abstract: "Write Prometheus alerting rules equivalent to alertd's.")
        @Option(help: "The rules file (default: /etc/warbler/alerts.yaml, else the defaults from the templates).") var config: String?
        @Option(help: "The templates directory for the defaults (default: found beside the release or in the checkout).") var templates: String?
        @Option(help: "Write here instead of standard output.") var output: String?

        func run() throws {
            do {
                let cfg: AlertsConfig
                if let path = config ?? (FileManager.default.isReadableFile(atPath: "/etc/warbler/alerts.yaml") ? "/etc/warbler/alerts.yaml" : nil) {
                    cfg = try AlertsConfig.load(path: path)
                } else {
                    let exe = Bundle.main.executablePath ?? CommandLine.arguments[0]
                    let set = try TemplateSet(directory: templates ?? TemplateSet.locate(executable: exe))
                    cfg = try AlertsConfig.parse(try set.renderAlertsConfig(AlertsConfigContext()), file: "alerts.yaml (defaults)")
                }
                let text = try PrometheusRules.export(cfg)
                if let output { try text.write(toFile: output, atomically: true, encoding: .utf8) } else { print(text, terminator: "") }
            } catch { throw fail(error) }
        }
    }
}
