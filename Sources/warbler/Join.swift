import ArgumentParser
import Foundation
import Installer
import Operations

extension Warbler {
    struct Join: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Join this host to a Warbler cluster with a token from `warbler cluster token`.",
            discussion: """
                Fetches the cluster's CA (checked against the token), receives the cluster's secrets over TLS verified \
                against it, becomes an etcd member (first as a learner), then converges the host with the same engine \
                as `install`: a PostgreSQL replica when it carries the database role, an IM server, HAProxy.
                """)
        @Option(help: "A member's address, https://ADDR:8443.") var server: String
        @Option(help: "The join token (W10…).") var token: String
        @Option(help: "This host's IPv4 address the other members reach.") var advertiseAddress: String
        @Option(help: "What this host carries besides the IM server and HAProxy: database, etcd (repeatable; `none` for neither). Default: database+etcd while the cluster has fewer than two database hosts, then etcd (the witness) while etcd has fewer than three voters.")
        var role: [String] = []
        @Option(help: "This member's name (default: the hostname's first label).") var nodeName: String?
        @Option(help: "The warbler executable to install (default: this one).") var binary = "/proc/self/exe"
        @Option(help: "A file whose first line is the first admin's password (unused: the cluster has its admin).") var adminPasswordFile: String?
        @Option(help: "Skip a preflight check by name. Repeatable.") var skipCheck: [String] = []
        @Flag(help: "Do not ask before restarting a running service.") var yes = false

        func validate() throws {
            for r in role where r != "none" && ClusterRole(rawValue: r) == nil {
                throw ValidationError("--role must be database, etcd or none, not '\(r)'")
            }
        }

        func run() async throws {
            try requireRoot("warbler join")
            do {
                let layout = Layout(root: nil)
                let lock = try InstallLock(path: InstallLock.path(for: layout))
                defer { withExtendedLifetime(lock) {} }
                let probe = LiveHostProbe()
                let installer = Installer(system: LocalSystem(), probe: probe)
                guard let payload = try PayloadTemplates(binary: binary) else {
                    throw JoinError("join from the installer file (packaging/build.sh): it carries the cluster's components")
                }
                defer { payload.remove() }
                let work = payload.directory + "/join"
                try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
                _ = try ComponentUnpacker.unpack(payloadDirectory: payload.directory + "/payload", names: ["etcd"], into: payload.directory + "/join-etcd")
                let name = nodeName ?? ClusterSettings.nodeName(fromHostname: probe.hostname())
                let roles: [ClusterRole]? = role.isEmpty ? nil : role.compactMap(ClusterRole.init(rawValue:))
                let join = ClusterJoin(token: try JoinToken.parse(token), client: try JoinClient(server: server), advertise: advertiseAddress,
                                       nodeName: name, roles: roles, etcdctl: payload.directory + "/join-etcd/etcd/usr/bin/etcdctl",
                                       workDirectory: work)
                print("Joining the cluster at \(server) as \(name) (\(advertiseAddress))…")
                let prepared = try await join.prepare()
                print("  the cluster's CA matches the token; roles: \(prepared.roles.isEmpty ? "IM server only" : prepared.roles.map(\.rawValue).joined(separator: ", "))")
                var answers = InstallAnswers()
                answers.cluster = prepared.answers
                answers.port = prepared.bundle.port
                answers.domains = prepared.bundle.domains.isEmpty ? nil : prepared.bundle.domains
                answers.registration = prepared.bundle.registration
                answers.adminPasswordFile = adminPasswordFile
                answers.skipChecks = skipCheck.isEmpty ? nil : skipCheck
                let request = try InstallRun.request(installer: installer, answers: answers, layout: layout, binary: binary, templates: nil,
                                                     payload: payload, bundle: prepared.bundle)
                _ = try InstallRun.perform(installer: installer, request: request, dryRun: false) { _ in true }
            } catch let e as ExitCode { throw e } catch { throw fail(error) }
        }
    }
}
