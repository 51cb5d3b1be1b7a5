import DurableFiles
import Foundation
import Installer
import Templates
import Testing

/// A cluster member's plan on a recording host: the components, the configs and the order of its steps.
@Suite struct ClusterBlueprintTests {
    static let components: [String: ComponentSource] = Dictionary(uniqueKeysWithValues: ["etcd", "haproxy", "patroni", "postgresql"].map {
        ($0, ComponentSource(directory: "/tmp/unpacked/\($0)", digest: String(repeating: "a", count: 64)))
    })

    static func founder(_ host: Host, balance: String? = nil) -> InstallRequest {
        var answers = InstallAnswers()
        answers.cluster = ClusterAnswers(founder: true, advertiseAddress: "10.0.0.5", roles: [.database, .etcd], balance: balance)
        var r = host.request(answers)
        r.cluster = ClusterInputs(bundle: nil, components: Self.components)
        return r
    }

    @Test func theFounderRunsEveryComponentBeforeTheServerAndRegistersBeforePatroni() throws {
        let host = try Host()
        let outcome = try host.installer.install(Self.founder(host))
        let steps = outcome.plan.steps
        func index(_ unit: String) throws -> Int { try #require(steps.firstIndex(of: .service(.start(unit), reason: "not running"))) }
        func command(_ prefix: String) throws -> Int {
            try #require(steps.firstIndex { if case .runOnce(let c) = $0 { c.name.hasPrefix(prefix) } else { false } })
        }
        let etcd = try index(ClusterPaths.etcdUnit), patroni = try index(ClusterPaths.patroniUnit)
        let haproxy = try index(ClusterPaths.haproxyUnit), agent = try index(ClusterPaths.agentUnit), server = try index(Paths.serverUnitName)
        let register = try command("register chat1"), database = try command("create the IM server's database"), admin = try command("create the first admin")
        #expect(etcd < register && register < patroni && patroni < haproxy && haproxy < agent && agent < database && database < admin && admin < server)
        // The components are laid out whole, one step each.
        let trees = steps.compactMap { if case .installTree(let t) = $0 { t.path } else { nil } }
        #expect(trees == ["etcd", "haproxy", "patroni", "postgresql"].map { "/opt/warbler/releases/0.1.0/embedded/\($0)" })
        // The server is behind HAProxy, on PostgreSQL through the local primary listener, over verified TLS.
        let config = try #require(host.text(Paths.config))
        for line in ["host: \"10.0.0.5\"", "port: 8444", "driver: \"postgres\"", "postgres_port: 5433", "postgres_tls: true",
                     "postgres_ca_file: \"/etc/warbler/tls/ca.crt\"", "client_ca_file: \"/etc/warbler/tls/ca.crt\"", "trust_forwarded_for: true",
                     "node_id: \"chat1\""] {
            #expect(config.contains(line), "warbler.yaml lacks \(line)")
        }
        // The certificate names the advertise address and loopback, not the hostname (other members have theirs).
        #expect(outcome.tls?.names == ["10.0.0.5", "127.0.0.1"])
        #expect(outcome.url == "https://10.0.0.5:8443")
        // Every member runs the upgrade receiver (root) on its advertise address.
        #expect(steps.contains(.service(.start(ClusterPaths.upgradeReceiverUnit), reason: "not running")))
        let receiver = try #require(host.text(Paths.unitFile(ClusterPaths.upgradeReceiverUnit)))
        #expect(receiver.contains("ExecStart=/opt/warbler/current/bin/warbler cluster upgrade-receiver") && receiver.contains("10.0.0.5:8445"))
    }

    @Test func withoutSystemdAsPID1TheSupervisorStartsEveryComponentAndUninstallStopsThem() throws {
        var host = try Host()
        host.probe.systemd = false
        host.probe.pid1 = "sh"
        let outcome = try host.installer.install(Self.founder(host))
        #expect(outcome.initSystem == .builtin)
        #expect(outcome.notes.contains { $0.contains("`warbler supervise --unit UNIT`") && $0.hasSuffix("(etcd, patroni, haproxy, cluster-agent)") },
                "\(outcome.notes)")
        let started = outcome.plan.steps.compactMap { if case .service(.start(let u), _) = $0 { u } else { nil } }
        // The upgrade receiver too: a cluster upgrade reaches a member without systemd as it does the others.
        #expect(started == [ClusterPaths.etcdUnit, ClusterPaths.patroniUnit, ClusterPaths.haproxyUnit, ClusterPaths.agentUnit,
                            ClusterPaths.upgradeReceiverUnit, Paths.serverUnitName, Paths.exporterUnitName, Paths.alertdUnitName])
        // No systemctl: nothing to enable, no daemon-reload.
        #expect(!outcome.plan.steps.contains { if case .service(.daemonReload, _) = $0 { true } else { false } })
        // The unit files are laid out all the same (status finds the components by them; systemd would run them).
        #expect(host.text(Paths.unitFile(ClusterPaths.patroniUnit))?.contains("ExecStart=" + ClusterPaths.python) == true)

        let plan = try Uninstaller(system: host.system, probe: host.probe).plan(layout: Layout(), purge: false)
        #expect(plan.initSystem == .builtin)
        #expect(plan.steps.filter { if case .service = $0 { true } else { false } }
                == [ClusterPaths.upgradeReceiverUnit, Paths.alertdUnitName, Paths.exporterUnitName, Paths.serverUnitName, ClusterPaths.agentUnit, ClusterPaths.haproxyUnit,
                    ClusterPaths.patroniUnit, ClusterPaths.etcdUnit].map { .service(.stop($0)) })
    }

    @Test func secretsAreRootsOrTheirComponentsAndConfigsHoldNoForeignValues() throws {
        let host = try Host()
        _ = try host.installer.install(Self.founder(host))
        for path in [ClusterPaths.superuserPassword, ClusterPaths.replicationPassword, ClusterPaths.rewindPassword, ClusterPaths.appPasswordRootCopy,
                     ClusterPaths.jwtKeyRootCopy, ClusterPaths.rootKey] {
            #expect(host.system.attributes(path)?.owner == .root && host.system.attributes(path)?.mode == 0o600, "\(path)")
        }
        #expect(host.system.attributes(ClusterPaths.tls + "/postgres.key")?.owner == Owner(ClusterPaths.postgresUser, ClusterPaths.postgresUser))
        #expect(host.system.attributes(ClusterPaths.tls + "/haproxy.pem")?.owner == Owner(ClusterPaths.haproxyUser, ClusterPaths.haproxyUser))
        #expect(host.system.attributes(ClusterPaths.patroniConfig)?.mode == 0o640)
        let patroni = try #require(host.text(ClusterPaths.patroniConfig))
        let superuser = try #require(host.text(ClusterPaths.superuserPassword)).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(patroni.contains("password: \(superuser)") && superuser.count == 32)
        #expect(patroni.contains("synchronous_mode: true") && patroni.contains("use_pg_rewind: true") && patroni.contains("max_slot_wal_keep_size"))
        let etcd = try #require(host.text(ClusterPaths.etcdConfig))
        #expect(etcd.contains("initial-cluster: chat1=https://10.0.0.5:2380") && etcd.contains("initial-cluster-state: new"))
        // The root copy of the token key equals the server's.
        #expect(host.text(ClusterPaths.jwtKeyRootCopy) == host.text(Paths.jwtKey))
    }

    @Test func aJoiningDatabaseHostUsesTheBundleAndStartsItsEtcdAsAnExistingMember() throws {
        let host = try Host()
        let ca = try PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil, names: CertificateNames(dns: [], ips: []), now: Date())
        let bundle = ClusterBundle(caCert: ca.caCertificatePEM!, caKey: ca.caKeyPEM!, jwtKey: "kI1v0DRpSC5kbwHVh2D2xqQ6x8kzqg3N7+oq1WbZgX8=",
                                   superuserPassword: String(repeating: "s", count: 32), replicationPassword: String(repeating: "r", count: 32),
                                   rewindPassword: String(repeating: "w", count: 32), patroniAPIPassword: String(repeating: "p", count: 32),
                                   appPassword: String(repeating: "a", count: 32), domains: [], port: 8443, balance: "roundrobin",
                                   registration: "admin", members: [ClusterMember(name: "one", address: "10.0.0.1", roles: [.database, .etcd])])
        var answers = InstallAnswers()
        answers.cluster = ClusterAnswers(founder: false, advertiseAddress: "10.0.0.5", nodeName: "two", roles: [.database, .etcd], balance: "roundrobin",
                                         seedMembers: [ClusterMember(name: "one", address: "10.0.0.1", roles: [.etcd]),
                                                       ClusterMember(name: "two", address: "10.0.0.5", roles: [.etcd])])
        var r = host.request(answers)
        r.cluster = ClusterInputs(bundle: bundle, components: Self.components)
        let outcome = try host.installer.install(r)
        #expect(host.text(ClusterPaths.superuserPassword) == String(repeating: "s", count: 32) + "\n")
        #expect(host.text(Paths.caCert) == ca.caCertificatePEM)
        #expect(host.text(Paths.jwtKey) == "kI1v0DRpSC5kbwHVh2D2xqQ6x8kzqg3N7+oq1WbZgX8=")
        let etcd = try #require(host.text(ClusterPaths.etcdConfig))
        #expect(etcd.contains("initial-cluster: one=https://10.0.0.1:2380,two=https://10.0.0.5:2380") && etcd.contains("initial-cluster-state: existing"))
        let names = outcome.plan.steps.compactMap { if case .runOnce(let c) = $0 { c.name } else { nil } }
        #expect(names.contains { $0.hasPrefix("make this host's etcd member a voter") })
        #expect(!names.contains { $0.hasPrefix("create the first admin") || $0.hasPrefix("create the IM server's database") },
                "the cluster has its admin and database already")
        #expect(host.text(ClusterPaths.haproxyConfig)?.contains("balance roundrobin") == true)
    }

    @Test func aJoiningHostWithoutTheSecretsIsToldToJoinAgain() throws {
        let host = try Host()
        var answers = InstallAnswers()
        answers.cluster = ClusterAnswers(founder: false, advertiseAddress: "10.0.0.5", roles: [.etcd])
        var r = host.request(answers)
        r.cluster = ClusterInputs(bundle: nil, components: Self.components)
        #expect(throws: (any Error).self) { try host.installer.install(r) }
    }

    @Test func clusterSettingsAreCheckedAllAtOnce() throws {
        var answers = InstallAnswers()
        answers.cluster = ClusterAnswers(founder: true, advertiseAddress: "0.0.0.0", nodeName: "Bad_Name", roles: [.etcd], balance: "random")
        #expect {
            try InstallSettings(answers, hostname: "h")
        } throws: { error in
            let text = "\(error)"
            return text.contains("--advertise-address") && text.contains("node name") && text.contains("--balance")
                && text.contains("database and etcd roles")
        }
        var tls = InstallAnswers()
        tls.cluster = ClusterAnswers(founder: true, advertiseAddress: "10.0.0.5")
        tls.tls = false
        #expect(throws: (any Error).self) { try InstallSettings(tls, hostname: "h") }
    }

    // MARK: On the site's PostgreSQL (--database-url)

    static let siteCA = try! PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil, names: CertificateNames(dns: [], ips: []), now: Date())

    static func externalFounder(_ host: Host, password: String? = "site-password-1", ca: String? = siteCA.caCertificatePEM) -> InstallRequest {
        var answers = InstallAnswers()
        answers.cluster = ClusterAnswers(founder: true, advertiseAddress: "10.0.0.5", roles: [.etcd],
                                         databaseURL: "postgres://chat@db.example.internal:6432/chat")
        var r = host.request(answers)
        r.cluster = ClusterInputs(bundle: nil, components: Self.components, externalPassword: password, externalCA: ca)
        return r
    }

    @Test func onTheSitesPostgreSQLNoMemberRunsPostgreSQLAndTheServerGoesStraightToIt() throws {
        let host = try Host()
        let outcome = try host.installer.install(Self.externalFounder(host))
        let steps = outcome.plan.steps
        let units = steps.compactMap { if case .service(.start(let u), _) = $0 { u } else { nil } }
        #expect(units.contains(ClusterPaths.etcdUnit) && units.contains(ClusterPaths.haproxyUnit) && !units.contains(ClusterPaths.patroniUnit))
        let trees = steps.compactMap { if case .installTree(let t) = $0 { t.path } else { nil } }
        // PostgreSQL's client tools only (for `warbler backup` and `restore`): no server runs, no Patroni.
        #expect(trees == ["etcd", "haproxy", "postgresql"].map { "/opt/warbler/releases/0.1.0/embedded/\($0)" }, "no Patroni laid out")
        let names = steps.compactMap { if case .runOnce(let c) = $0 { c.name } else { nil } }
        #expect(!names.contains { $0.hasPrefix("create the IM server's database") }, "the site's database is the site's to create")
        #expect(names.contains { $0.hasPrefix("reach the site's database db.example.internal:6432 as chat") })
        let config = try #require(host.text(Paths.config))
        for line in ["postgres_host: \"db.example.internal\"", "postgres_port: 6432", "postgres_user: \"chat\"", "postgres_database: \"chat\"",
                     "postgres_tls: true", "postgres_ca_file: \"\(ClusterPaths.externalDatabaseCA)\""] {
            #expect(config.contains(line), "warbler.yaml lacks \(line)")
        }
        #expect(host.text(ClusterPaths.appPassword) == "site-password-1\n")
        #expect(host.text(ClusterPaths.externalDatabaseCA) == Self.siteCA.caCertificatePEM! + "\n")
        #expect(host.system.attributes(ClusterPaths.superuserPassword) == nil && host.system.attributes(ClusterPaths.patroniConfig) == nil)
        #expect(host.text(ClusterPaths.haproxyConfig)?.contains("listen primary") == false)
        let member = try MemberFile.load(Data(try #require(host.text(ClusterPaths.memberFile)).utf8))
        #expect(member.database == "postgres://chat@db.example.internal:6432/chat")
        #expect(member.member.roles == [.etcd])
    }

    @Test func theSitesDatabaseNeedsItsPasswordAndTakesNoDatabaseRole() throws {
        let host = try Host()
        #expect { try host.installer.install(Self.externalFounder(host, password: nil)) } throws: { "\($0)".contains("--database-password-file") }
        var answers = InstallAnswers()
        answers.cluster = ClusterAnswers(founder: true, advertiseAddress: "10.0.0.5", roles: [.database, .etcd],
                                         databaseURL: "postgres://chat@db:5432/chat")
        #expect { try InstallSettings(answers, hostname: "h") } throws: { "\($0)".contains("drop --role database") }
        // Without TLS (sslmode=disable) and without a CA: the system's roots are not needed, and none is written.
        let plain = try Host()
        var r = Self.externalFounder(plain, ca: nil)
        r.answers.cluster?.databaseURL = "postgres://chat@10.1.2.3/chat?sslmode=disable"
        _ = try plain.installer.install(r)
        let config = try #require(plain.text(Paths.config))
        #expect(config.contains("postgres_tls: false") && config.contains("postgres_ca_file: \"\"") && config.contains("postgres_port: 5432"))
        #expect(plain.system.attributes(ClusterPaths.externalDatabaseCA) == nil)
    }

    @Test(arguments: [
        ("postgres://chat:secret@db/chat", "must not hold the password"),
        ("mysql://chat@db/chat", "not a postgres:// URL"),
        ("postgres://db/chat", "no user"),
        ("postgres://chat@db", "no database name"),
        ("postgres://chat@db/chat?sslmode=prefer", "sslmode prefer"),
        ("postgres://chat@db/chat?application_name=x", "unknown parameter"),
    ])
    func badDatabaseURLsAreRefusedWithWhatToDo(_ url: String, _ why: String) {
        #expect { try ExternalDatabase.parse(url) } throws: { "\($0)".contains(why) }
    }

    @Test func aDatabaseURLParsesAndPrintsBackWithoutSecrets() throws {
        let e = try ExternalDatabase.parse("postgresql://chat@db.example:6432/warbler?sslmode=verify-full")
        #expect(e == ExternalDatabase(host: "db.example", port: 6432, user: "chat", database: "warbler", tls: true))
        #expect(e.url == "postgres://chat@db.example:6432/warbler")
        #expect(try ExternalDatabase.parse(e.url) == e)
        #expect(try ExternalDatabase.parse("postgres://u@h/d?sslmode=disable").url == "postgres://u@h:5432/d?sslmode=disable")
    }

    /// With the embedded HAProxy and etcd at hand (scripts/test.sh stages them), the rendered configs pass the
    /// programs' own checks.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["WARBLER_COMPONENTS_DIR"] != nil))
    func renderedConfigsPassTheComponentsOwnChecks() throws {
        let dir = ProcessInfo.processInfo.environment["WARBLER_COMPONENTS_DIR"]!
        for (balance, external) in [("leastconn", false), ("roundrobin", false), ("source", false), ("leastconn", true)] {
            var ctx = ClusterContext()
            ctx.nodeName = "one"; ctx.advertise = "10.0.0.1"; ctx.balance = balance; ctx.externalDatabase = external
            let tmp = FileManager.default.temporaryDirectory.appendingPathComponent("haproxy-check-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: tmp) }
            let ca = try PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil,
                                        names: CertificateNames(dns: [], ips: [IPAddress.parse("10.0.0.1")!]), now: Date())
            try (ca.serverCertificatePEM + ca.serverKeyPEM).write(to: tmp.appendingPathComponent("haproxy.pem"), atomically: true, encoding: .utf8)
            try ca.caCertificatePEM!.write(to: tmp.appendingPathComponent("ca.crt"), atomically: true, encoding: .utf8)
            ctx.haproxyPem = tmp.path + "/haproxy.pem"; ctx.caFile = tmp.path + "/ca.crt"
            ctx.haproxySocket = tmp.path + "/admin.sock"; ctx.haproxyState = tmp.path
            let cfg = try TemplateSet(directory: Repo.templates).renderCluster("haproxy.cfg", ctx)
            try cfg.write(to: tmp.appendingPathComponent("haproxy.cfg"), atomically: true, encoding: .utf8)
            let r = try Subprocess.run([dir + "/haproxy/usr/sbin/haproxy", "-c", "-f", tmp.path + "/haproxy.cfg"])
            #expect(r.status == 0, "haproxy -c (balance \(balance)): \(r.text)")
        }
    }
}

@Suite struct JoinTokenTests {
    static let ca = try! PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil, names: CertificateNames(dns: [], ips: []), now: Date())

    @Test func aTokenPrintsAndParsesBackAndPinsTheCAKey() throws {
        let token = try JoinToken.generate(caPEM: Self.ca.caCertificatePEM!)
        let text = token.description
        #expect(text.hasPrefix("W10") && text.contains("::"))
        #expect(try JoinToken.parse(text) == token)
        #expect(token.caKeyHash == (try JoinToken.caKeyHash(pem: Self.ca.caCertificatePEM!)))
        // A reissued CA certificate (same key) keeps the pin; another CA does not match.
        let other = try PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil, names: CertificateNames(dns: [], ips: []), now: Date())
        #expect(try JoinToken.caKeyHash(pem: other.caCertificatePEM!) != token.caKeyHash)
    }

    @Test(arguments: ["K10abc::id.secret", "W10" + String(repeating: "a", count: 64) + "::", "W10xyz::abcdefgh.0123456789abcdefghij",
                      "W10" + String(repeating: "a", count: 64) + "::ABCDEFGH.0123456789abcdefghij", "id.secret"])
    func malformedTokensAreRefusedWithWhatToDo(_ text: String) {
        #expect { try JoinToken.parse(text) } throws: { "\($0)".contains("warbler cluster token") || "\($0)".contains("W10") }
    }

    @Test func theBundleOpensOnlyWithItsOwnToken() throws {
        let bundle = ClusterBundle(caCert: Self.ca.caCertificatePEM!, caKey: Self.ca.caKeyPEM!, jwtKey: "k", superuserPassword: "s",
                                   replicationPassword: "r", rewindPassword: "w", patroniAPIPassword: "p", appPassword: "a", domains: ["chat.example"],
                                   port: 8443, balance: "leastconn", registration: "admin", members: [])
        let token = try JoinToken.generate(caPEM: Self.ca.caCertificatePEM!)
        let sealed = try token.seal(bundle)
        #expect(try token.open(sealed) == bundle)
        let other = try JoinToken.generate(caPEM: Self.ca.caCertificatePEM!)
        #expect(throws: JoinError.self) { try other.open(sealed) }
        // A tampered byte fails authentication.
        var bytes = Data(base64Encoded: sealed)!
        bytes[bytes.count / 2] ^= 1
        #expect(throws: JoinError.self) { try token.open(bytes.base64EncodedString()) }
        // The server keeps the proof's hash only; the proof is not the secret.
        #expect(token.proof != token.secret && JoinToken.proofHash(token.proof).count == 64)
    }

    @Test func ttlsParse() throws {
        #expect(try TokenTTL.parse("30m") == 1800)
        #expect(try TokenTTL.parse("24h") == 86400)
        #expect(try TokenTTL.parse("7d") == 604800)
        #expect(throws: JoinError.self) { try TokenTTL.parse("10") }
        #expect(throws: JoinError.self) { try TokenTTL.parse("-1h") }
    }
}
