import ArgumentParser
import Foundation
import Installer
import Operations

/// The virtual IP's commands, run by its units (warbler-vip-agent.service, warbler-keepalived.service), never by
/// hand. Each is root's and reads only root's files.
extension Warbler.ClusterCommand {
    static func vipMember() throws -> MemberFile {
        let member = try ClusterTasks().memberFile()
        guard member.vip != nil else { throw ClusterOpsError("this cluster has no virtual IP (install --cluster-init --vip ADDR)") }
        return member
    }

    static func say(_ line: String) { FileHandle.standardError.write(Data("warbler cluster: \(line)\n".utf8)) }

    struct VIPAgentCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "vip-agent",
            abstract: "Keep keepalived's peers in step with the members in etcd (warbler-vip-agent.service).", shouldDisplay: false)
        @Option(help: "Seconds between passes.") var interval: Double = 3
        func run() async throws {
            try requireRoot("warbler cluster vip-agent")
            let member: MemberFile
            do { member = try Warbler.ClusterCommand.vipMember() } catch { throw fail(error) }
            let agent = VIPAgent(member: member, etcd: ClusterTasks().etcd(member), interval: interval)
            await agent.run { Warbler.ClusterCommand.say("vip agent: \($0)") }
        }
    }

    struct VIPWait: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "vip-wait",
            abstract: "Wait until the other members' keepalived send to this host (keepalived's ExecStartPre).", shouldDisplay: false)
        @Option(help: "Seconds to wait at most.") var timeout: Double = 60
        func run() async throws {
            try requireRoot("warbler cluster vip-wait")
            do {
                let member = try Warbler.ClusterCommand.vipMember()
                try await VIPAgent(member: member, etcd: ClusterTasks().etcd(member)).waitForPeers(seconds: timeout) { Warbler.ClusterCommand.say($0) }
            } catch { throw fail(error) }
        }
    }

    struct VIPRelease: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "vip-release",
            abstract: "Remove the virtual IP from this host's interfaces (keepalived's ExecStopPost).", shouldDisplay: false)
        func run() async throws {
            try requireRoot("warbler cluster vip-release")
            do {
                let member = try Warbler.ClusterCommand.vipMember()
                for nic in try VIPAgent.release(vip: member.vip!) { Warbler.ClusterCommand.say("removed \(member.vip!) from \(nic)") }
            } catch { throw fail(error) }
        }
    }

    struct VIPCheck: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "vip-check",
            abstract: "Exit 0 while this member's HAProxy runs and answers (keepalived's track script).", shouldDisplay: false)
        func run() throws {
            guard HAProxyHealth.ok() else { throw ExitCode(1) }
        }
    }
}

/// Moving the PostgreSQL primary by hand, through Patroni.
extension Warbler.ClusterCommand {
    struct Switchover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move the PostgreSQL primary to the synchronous standby (or --to NODE), planned: nothing acknowledged is lost.")
        @Option(help: "The standby to promote (default: the synchronous standby).") var to: String?
        func run() async throws {
            try requireRoot("warbler cluster switchover")
            do {
                let tasks = ClusterTasks()
                let member = try tasks.memberFile()
                let patroni = try PatroniControl.fromMember(member, etcd: tasks.etcd(member))
                let (leader, candidate) = try PatroniControl.plan(try await patroni.members(), to: to, forced: false)
                print("switching the primary over from \(leader?.name ?? "?") to \(candidate.name) …")
                let took = try await patroni.move(to: candidate, from: leader, forced: false) { print($0) }
                print(String(format: "%@ is the primary (%.1f s); %@ follows it as a standby", candidate.name, took, leader?.name ?? "the old primary"))
            } catch { throw fail(error) }
        }
    }

    struct Failover: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Force a standby to become the PostgreSQL primary (when the primary is gone or stuck); says what can be lost and asks first.")
        @Option(help: "The standby to promote (default: the synchronous standby, else the one least behind).") var to: String?
        @Flag(help: "Do not ask for confirmation.") var yes = false
        func run() async throws {
            try requireRoot("warbler cluster failover")
            do {
                let tasks = ClusterTasks()
                let member = try tasks.memberFile()
                let patroni = try PatroniControl.fromMember(member, etcd: tasks.etcd(member))
                let (leader, candidate) = try PatroniControl.plan(try await patroni.members(), to: to, forced: true)
                print("forced failover to \(candidate.name): \(PatroniControl.risk(candidate, leader: leader)).")
                if !yes {
                    print("Type \(candidate.name) to go ahead: ", terminator: "")
                    fflush(nil)
                    guard readLine()?.trimmingCharacters(in: .whitespaces) == candidate.name else {
                        print("nothing was changed")
                        throw ExitCode(1)
                    }
                }
                let took = try await patroni.move(to: candidate, from: leader, forced: true) { print($0) }
                print(String(format: "%@ is the primary (%.1f s)", candidate.name, took))
            } catch let e as ExitCode { throw e } catch { throw fail(error) }
        }
    }
}
