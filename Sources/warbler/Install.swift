import AlertReceivers
import DurableFiles
import ArgumentParser
import Payload
import Foundation
import IMServer
import Installer
import Operations
import Templates
import Yams

/// The answers `install` and `doctor` share: flags, and `--config FILE` under them.
struct InstallFlags: ParsableArguments {
    @Option(help: "Stage the whole install under DIR and start nothing (image builders, tests).")
    var root: String?
    @Option(name: .customLong("init"), help: "What runs the services: systemd, builtin (Warbler's supervisor) or none (files only). Default: systemd when it is PID 1, else builtin.")
    var initSystem: String?
    @Option(help: "The server's port (default 8443).")
    var port: Int?
    @Option(help: "The address the server listens on (default 0.0.0.0).")
    var host: String?
    @Option(help: "The Prometheus metrics port on 127.0.0.1 (default 9464; -1 turns it off).")
    var metricsPort: Int?
    @Option(help: "A name clients use to reach the server; the certificate covers it. Repeat for more.")
    var domain: [String] = []
    @Option(help: "Your own PEM certificate chain, instead of the internal CA (with --tls-key).")
    var tlsCert: String?
    @Option(help: "The private key of --tls-cert (PEM).")
    var tlsKey: String?
    @Flag(help: "Serve plain HTTP (only behind a proxy that terminates TLS).")
    var noTLS = false
    @Option(help: "A YAML answers file (keys: port, host, metrics_port, domains, tls_cert, tls_key, tls, registration, admin_user, admin_password_file, log_level, init, skip_checks, min_free_disk_mb, min_memory_mb, alert_webhooks, alert_receivers, release_key, ai_endpoint, ai_model, ai_key_file). Flags override it.")
    var config: String?
    @Option(help: "Skip a preflight check by name (root, platform, init, disk, memory, ports, clock, hostname, existing-install). Repeatable.")
    var skipCheck: [String] = []
    @Option(help: "A file whose first line is the first admin's password (default: a random one, kept in /etc/warbler/secrets/admin-password).")
    var adminPasswordFile: String?
    @Option(help: "The first admin's username (default admin).")
    var adminUser: String?
    @Option(help: "admin (default): only admins create accounts; open: anyone who reaches the server may register.")
    var registration: String?
    @Option(help: "The base64 Ed25519 public key (packaging/sign.sh --new-key) every release `warbler upgrade` installs must be signed with.")
    var releaseKey: String?
    @Option(help: "A webhook alertd notifies (Alertmanager's JSON). Repeatable; other receivers (Slack, DingTalk, WeCom, Feishu, email) go in the answers file's alert_receivers.")
    var alertWebhook: [String] = []
    @Option(help: "Turn on the AI assistant: an OpenAI-compatible API base, e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1 (with --ai-model; empty turns it off).")
    var aiEndpoint: String?
    @Option(help: "The model the AI assistant asks, e.g. gpt-4o-mini, deepseek-chat, qwen-plus, qwen2.5:7b.")
    var aiModel: String?
    @Option(help: "A file holding the endpoint's API key; copied to /etc/warbler/secrets/ai.key (0600), never logged or shown.")
    var aiKeyFile: String?
    @Flag(help: "Found a cluster on this host: etcd, PostgreSQL under Patroni, HAProxy and the IM server on PostgreSQL; prints a join token for the other hosts.")
    var clusterInit = false
    @Option(help: "This host's IPv4 address the other cluster members reach (a cluster member needs it).")
    var advertiseAddress: String?
    @Option(help: "How HAProxy spreads clients over the IM servers: leastconn (default), roundrobin, or source (consistent hashing).")
    var balance: String?
    @Option(help: "This member's name in the cluster (default: the hostname's first label).")
    var nodeName: String?
    @Option(help: "With --cluster-init: use the site's PostgreSQL instead of running one, as postgres://USER@HOST[:PORT]/DATABASE[?sslmode=disable] (no password in it).")
    var databaseURL: String?
    @Option(help: "With --cluster-init: the cluster's virtual IPv4 address (unused, on the members' network); keepalived holds it on one member's HAProxy at a time, and clients use it.")
    var vip: String?
    @Option(help: "With --database-url: a root-owned file holding the password of the URL's user.")
    var databasePasswordFile: String?
    @Option(help: "With --database-url: the CA certificate (PEM) the database's TLS certificate chains to (default: the system's trusted roots).")
    var databaseCaFile: String?

    func validate() throws {
        if let i = initSystem, InitSystem(rawValue: i) == nil {
            throw ValidationError("--init must be systemd, builtin or none, not '\(i)'")
        }
        if let r = root, !r.hasPrefix("/") { throw ValidationError("--root needs an absolute path") }
        if vip != nil && !clusterInit {
            throw ValidationError("--vip belongs to the cluster: give it with --cluster-init (joining hosts get it with the token)")
        }
        if databaseURL != nil && !clusterInit {
            throw ValidationError("--database-url founds a cluster on the site's PostgreSQL: give it with --cluster-init (joining hosts get it with the token)")
        }
        if (databasePasswordFile != nil || databaseCaFile != nil) && databaseURL == nil {
            throw ValidationError("--database-password-file and --database-ca-file go with --database-url")
        }
    }

    /// The site database's password and CA from the files the operator named (root's, read without following links).
    func externalDatabaseInputs() throws -> (password: String?, ca: String?) {
        guard databaseURL != nil else { return (nil, nil) }
        guard let pf = databasePasswordFile else {
            throw ValidationError("--database-url needs --database-password-file FILE: the password of the URL's user, in a file only root can read")
        }
        let password: String
        do { password = try RootFile.readText(pf) } catch { throw ValidationError("--database-password-file: \(error)") }
        guard !password.isEmpty, !password.contains(where: \.isNewline) else {
            throw ValidationError("--database-password-file \(pf) must hold the password on one line")
        }
        var ca: String?
        if let cf = databaseCaFile {
            do { ca = String(decoding: try RootFile.read(cf), as: UTF8.self) } catch { throw ValidationError("--database-ca-file: \(error)") }
        }
        return (password, ca)
    }

    var layout: Layout { Layout(root: root) }

    /// The flags over the answers file.
    func answers() throws -> InstallAnswers {
        var flags = InstallAnswers()
        flags.port = port
        flags.host = host
        flags.metricsPort = metricsPort
        flags.domains = domain.isEmpty ? nil : domain
        flags.tlsCert = tlsCert
        flags.tlsKey = tlsKey
        flags.tls = noTLS ? false : nil
        flags.skipChecks = skipCheck.isEmpty ? nil : skipCheck
        flags.adminPasswordFile = adminPasswordFile
        flags.adminUser = adminUser
        flags.registration = registration
        flags.initSystem = initSystem.flatMap(InitSystem.init(rawValue:))
        flags.alertWebhooks = alertWebhook.isEmpty ? nil : alertWebhook
        flags.releaseKey = releaseKey
        flags.aiEndpoint = aiEndpoint
        flags.aiModel = aiModel
        flags.aiKeyFile = aiKeyFile
        if clusterInit || advertiseAddress != nil || balance != nil || nodeName != nil {
            flags.cluster = ClusterAnswers(founder: clusterInit ? true : nil, advertiseAddress: advertiseAddress, nodeName: nodeName,
                                           roles: clusterInit ? (databaseURL == nil ? [.database, .etcd] : [.etcd]) : nil, balance: balance,
                                           databaseURL: databaseURL, vip: vip)
        }
        let answers = try config.map { flags.over(try InstallAnswers.load(path: $0)) } ?? flags
        try Self.checkReceivers(answers.alertReceivers ?? [])
        return answers
    }

    /// Each receiver the answers give, checked by alertd's own rules before anything changes.
    static func checkReceivers(_ receivers: [AlertReceiverAnswer]) throws {
        for r in receivers {
            do {
                try YAMLDecoder().decode(ReceiverConfig.self, from: try r.yamlLine()).validate()
            } catch {
                throw OptionsError("alert_receivers: \(ReceiverConfigError.find(in: error).map { "\($0)" } ?? "receiver '\(r.name)': \(error)")")
            }
        }
    }
}

extension Warbler {
    struct Install: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Install Warbler on this host, or converge an install to new settings (safe to re-run).",
            discussion: """
                Checks the host first and reports every problem at once. Re-running with the same settings changes \
                nothing; with changed settings it rewrites only what changed and restarts only what must restart. \
                Settings not given keep their previous values. An interrupted run is resumed by the next one, or \
                reverted with --undo.
                """)

        @OptionGroup var flags: InstallFlags
        @Option(help: "The warbler executable to install (default: this one).")
        var binary = "/proc/self/exe"
        @Option(help: "The templates directory (default: found beside the release or in the checkout).")
        var templates: String?
        @Flag(help: "Do not ask before restarting a running service or undoing.")
        var yes = false
        @Flag(help: "Show the plan and change nothing.")
        var dryRun = false
        @Flag(help: "Revert what an interrupted install did, instead of resuming it.")
        var undo = false

        func run() async throws {
            do {
                let layout = flags.layout
                let lock = try InstallLock(path: InstallLock.path(for: layout))
                defer { withExtendedLifetime(lock) {} }
                let installer = Installer(system: LocalSystem(), probe: LiveHostProbe())
                if undo {
                    guard confirm("Revert the interrupted install?") else { throw ExitCode(1) }
                    for line in try installer.undo(layout: layout) { print("  \(line)") }
                    print("Reverted the interrupted install; run `warbler install` to install again.")
                    return
                }
                // The installer file carries its templates: verify its checksum and unpack them before anything
                // changes (a corrupt or tampered file stops here). A plain build falls back to the checkout's.
                let payload = try PayloadTemplates(binary: binary)
                defer { payload?.remove() }
                let answers = try flags.answers()
                let request = try InstallRun.request(installer: installer, answers: answers, layout: layout, binary: binary,
                                                     templates: templates, payload: payload, bundle: nil,
                                                     external: try flags.externalDatabaseInputs())
                guard let outcome = try InstallRun.perform(installer: installer, request: request, dryRun: dryRun, confirm: confirm) else { return }
                // The founder prints the first join token.
                if outcome.settings.cluster?.founder == true && outcome.initSystem != .none {
                    print(try await InstallRun.firstToken())
                }
            } catch let e as ExitCode {
                throw e
            } catch {
                throw fail(error)
            }
        }

        /// Asks on a terminal unless --yes; scripts (no terminal) go ahead.
        func confirm(_ question: String) -> Bool {
            if yes || isatty(0) == 0 { return true }
            print("\(question) [y/N] ", terminator: "")
            return ["y", "yes"].contains(readLine()?.lowercased() ?? "")
        }
    }
}

/// The templates unpacked from the installer file's own payload, in a private temporary directory.
struct PayloadTemplates {
    let directory: String
    var templatesDirectory: String { directory + "/payload/templates" }
    var webDirectory: String { directory + "/payload/web" }

    /// Nil when `binary` is a plain build without a payload; throws when it has one that fails verification.
    init?(binary: String) throws {
        do {
            _ = try SelfContainedFile.locate(path: binary)
        } catch let e as PayloadError where e.code == .noPayload {
            return nil
        }
        var template = Array((NSTemporaryDirectory() + "warbler-payload-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw PayloadError(.io, "cannot make a temporary directory for the payload") }
        directory = String(cString: made)
        do {
            try SelfContainedFile.extractPayload(from: binary, into: directory + "/payload")
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

/// The install steps `install` and `join` share.
enum InstallRun {
    /// The request, with the cluster's embedded components unpacked from the payload when the settings make this
    /// host a cluster member.
    static func request(installer: Installer, answers: InstallAnswers, layout: Layout, binary: String, templates: String?,
                        payload: PayloadTemplates?, bundle: ClusterBundle?,
                        external: (password: String?, ca: String?) = (nil, nil)) throws -> InstallRequest {
        let dir = try templates ?? payload?.templatesDirectory ?? TemplateSet.locate(executable: binary)
        var request = InstallRequest(answers: answers, layout: layout,
                                     release: try ReleaseWithWeb.from(base: BinaryRelease(version: WarblerVersion.version, binaryPath: binary),
                                                                      webDirectory: payload?.webDirectory),
                                     templates: try TemplateSet(directory: dir))
        let (settings, _, _) = try installer.resolve(answers, layout: layout)
        if let c = settings.cluster {
            guard let payload else {
                throw JoinError("a cluster member is installed from the installer file (packaging/build.sh), which carries the components; this is a plain build")
            }
            let components = try ComponentUnpacker.unpack(payloadDirectory: payload.directory + "/payload",
                                                          names: ClusterPaths.components(for: c.roles, vip: c.vip != nil), into: payload.directory + "/embedded")
            request.cluster = ClusterInputs(bundle: bundle, components: components, externalPassword: external.password, externalCA: external.ca)
        }
        return request
    }

    /// Preflight and plan shown, then applied; nil for a dry run or when the operator declined.
    static func perform(installer: Installer, request: InstallRequest, dryRun: Bool, confirm: (String) -> Bool) throws -> InstallOutcome? {
        var preview = request
        preview.dryRun = true
        let planned = try installer.install(preview)
        print("Preflight:")
        print(planned.preflight.render(), terminator: "")
        print("Plan:")
        print(planned.plan.render(), terminator: "")
        if dryRun { print(planned.render(), terminator: ""); return nil }
        let disruptive = planned.plan.serviceActions.contains { if case .restart = $0 { true } else { false } }
        if disruptive && !confirm("This restarts running services. Go ahead?") { throw ExitCode(1) }
        if !planned.plan.isEmpty { print("Applying:") }
        let outcome = try installer.install(request) { print("  - \($0)") }
        print(outcome.render(), terminator: "")
        return outcome
    }

    static func firstToken() async throws -> String {
        let (token, member) = try await JoinTokens.issue(ttl: 24 * 3600, singleUse: false, logger: ClusterTasks().logger)
        return Warbler.ClusterCommand.Token.render(token: token, member: member, ttl: "24h", singleUse: false)
    }
}
