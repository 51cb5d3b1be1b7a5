import ArgumentParser
import Foundation
import IMStorage
import Installer
import Logging
import Operations

extension Warbler {
    struct ClusterCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cluster",
            abstract: "A cluster member's commands: join tokens, the cluster's status.",
            subcommands: [Token.self, Status.self, HAProxy.self, Register.self, Promote.self, SetupDatabase.self, WaitDatabase.self, Agent.self,
                          Migrate.self, VIPAgentCommand.self, VIPWait.self, VIPRelease.self, VIPCheck.self, Switchover.self, Failover.self, Drain.self, Undrain.self,
                          Remove.self, UpgradeReceiverCommand.self])
    }
}

func requireRoot(_ what: String) throws {
    guard getuid() == 0 else { throw fail(JoinError("\(what) needs root (it reads the cluster's secrets); run it with sudo")) }
}

extension Warbler.ClusterCommand {
    struct Token: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a new join token (or list or revoke them).",
            discussion: "The token carries the hash of the cluster CA's key and a secret; `warbler join` on a new host uses it once or until it expires.")
        @Option(help: "How long the token works: 30m, 24h, 7d.") var ttl = "24h"
        @Flag(help: "The token works for one join only.") var singleUse = false
        @Option(help: "End the token with this id (the part before the dot).") var revoke: String?
        @Flag(help: "List the tokens (ids, expiry, uses; never the secrets).") var list = false

        func run() async throws {
            try requireRoot("warbler cluster token")
            do {
                let logger = Logger(label: "warbler.cluster")
                guard revoke != nil || list else {
                    let (token, member) = try await JoinTokens.issue(ttl: try TokenTTL.parse(ttl), singleUse: singleUse, logger: logger)
                    print(Self.render(token: token, member: member, ttl: ttl, singleUse: singleUse))
                    return
                }
                let store = try await JoinTokens.openStore(logger: logger)
                defer { Task { try? await store.close() } }
                if let id = revoke {
                    guard try await store.revokeJoinToken(id: id) else { throw JoinError("no token with id \(id) (see `warbler cluster token --list`)") }
                    print("revoked token \(id)")
                    return
                }
                if list {
                    let now = Int64(Date().timeIntervalSince1970)
                    print("ID          EXPIRES                 USES  STATE")
                    for t in try await store.joinTokens() {
                        let state = t.revoked ? "revoked" : t.expiresAt <= now ? "expired" : (t.singleUse && t.uses > 0) ? "used" : "valid"
                        let expires = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: TimeInterval(t.expiresAt)))
                        print("\(t.id.padding(toLength: 12, withPad: " ", startingAt: 0))\(expires.padding(toLength: 24, withPad: " ", startingAt: 0))\(String(t.uses).padding(toLength: 6, withPad: " ", startingAt: 0))\(state)\(t.singleUse ? " (single use)" : "")")
                    }
                }
            } catch let e as ExitCode { throw e } catch { throw fail(error) }
        }

        static func render(token: JoinToken, member: MemberFile, ttl: String, singleUse: Bool) -> String {
            """
            Join token (valid \(ttl)\(singleUse ? ", one join" : "")): \(token)
            On each new host, as root:
              warbler join --server https://\(member.member.address):\(member.frontendPort) --token \(token) --advertise-address THAT_HOST'S_ADDRESS
            """
        }
    }

    struct Register: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Register this member in etcd (run by install).", shouldDisplay: false)
        func run() async throws {
            try requireRoot("warbler cluster register")
            do { try await ClusterTasks().register() } catch { throw fail(error) }
        }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "etcd-promote", abstract: "Make this member's etcd a voter (run by join).", shouldDisplay: false)
        func run() async throws {
            try requireRoot("warbler cluster etcd-promote")
            do { try await ClusterTasks().promote() } catch { throw fail(error) }
        }
    }

    struct SetupDatabase: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "setup-database", abstract: "Create the IM server's role and database (run by install).", shouldDisplay: false)
        func run() async throws {
            try requireRoot("warbler cluster setup-database")
            do { try await ClusterTasks().setupDatabase() } catch { throw fail(error) }
        }
    }

    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run this release's expand or contract migrations on the cluster's database (run by a cluster upgrade).", shouldDisplay: false)
        @Option(help: "expand: the additive migrations, stopping before the first contract one; contract: the rest, from a contract one.")
        var phase: String
        @Option(help: "The schema version to stop at.") var through: Int
        func validate() throws {
            guard Migration.Phase(rawValue: phase) != nil else { throw ValidationError("--phase is expand or contract, not '\(phase)'") }
        }
        func run() async throws {
            try requireRoot("warbler cluster migrate")
            var logger = Logger(label: "warbler.migrate")
            logger.logLevel = .error
            do {
                let run = try await ClusterTasks(logger: logger).migrate(phase: Migration.Phase(rawValue: phase)!, through: through)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(run), as: UTF8.self))
            } catch {
                throw fail(error)
            }
        }
    }

    struct WaitDatabase: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "wait-database", abstract: "Wait until the cluster's database answers through HAProxy (run by join).", shouldDisplay: false)
        @Option(help: "Seconds to wait.") var timeout: Double = 120
        func run() async throws {
            try requireRoot("warbler cluster wait-database")
            do { try await ClusterTasks().waitDatabase(seconds: timeout) } catch { throw fail(error) }
        }
    }

    struct Agent: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Fill HAProxy's server slots from the members in etcd (warbler-cluster-agent.service).", shouldDisplay: false)
        @Option(help: "Seconds between passes.") var interval: Double = 3
        func run() async throws {
            let member: MemberFile
            do {
                // The agent runs as HAProxy's user: member.json is root's and world-readable (no secrets).
                member = try MemberFile.load(try Data(contentsOf: URL(fileURLWithPath: ClusterPaths.memberFile)))
            } catch { throw fail(error) }
            let etcd = Etcdctl(endpoints: member.etcdEndpoints, caFile: ClusterPaths.caCert, certFile: ClusterPaths.tls + "/agent.crt",
                               keyFile: ClusterPaths.tls + "/agent.key")
            let agent = ClusterAgent(etcd: etcd, member: member.member.name, interval: interval, primaryBackend: member.database == nil)
            await agent.run { line in FileHandle.standardError.write(Data("warbler cluster agent: \(line)\n".utf8)) }
        }
    }
}

extension Warbler.ClusterCommand {
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Every member: roles, version, IM readiness, HAProxy's view, PostgreSQL role and lag, etcd; exit 1 when anything is unhealthy.")
        @Flag(help: "Print JSON.") var json = false
        func run() async throws {
            try requireRoot("warbler cluster status")
            let report: ClusterStatusReport
            do {
                let tasks = ClusterTasks()
                let member = try tasks.memberFile()
                report = try await ClusterStatusCollector(member: member, etcd: tasks.etcd(member)).collect()
            } catch { throw fail(error) }
            if json {
                let e = JSONEncoder()
                e.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try e.encode(report), as: UTF8.self))
            } else {
                print(report.render(), terminator: "")
            }
            if !report.healthy { throw ExitCode(1) }
        }
    }

    struct HAProxy: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "haproxy",
            abstract: "Send HAProxy runtime commands (one per line on stdin, or the arguments) to this member's HAProxy, e.g. `set server im/m2 state drain`.")
        @Argument(help: "A runtime command; without one, lines are read from stdin.") var command: [String] = []
        func run() async throws {
            try requireRoot("warbler cluster haproxy")
            let lines = command.isEmpty ? (readLine(strippingNewline: true).map { [$0] + Array(sequence(state: (), next: { _ in readLine() })) } ?? [])
                                        : [command.joined(separator: " ")]
            do {
                for line in lines where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                    print(try HAProxyRuntime().send(line), terminator: "")
                }
            } catch { throw fail(error) }
        }
    }
}
