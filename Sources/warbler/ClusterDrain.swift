import ArgumentParser
import Foundation
import Installer
import Operations

extension Warbler.ClusterCommand {
    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Drain a member in every member's HAProxy (its connections stay, new ones go to the others) and wait until all have.",
            discussion: "Puts a drain mark for NODE in etcd; each member's agent applies it (docs/operations.md, \"Draining a member\"). Undo with `warbler cluster undrain NODE`.")
        @Argument(help: "The member to drain (its name in `warbler cluster status`).") var node: String
        @Option(help: "Seconds to wait for every member's agent.") var timeout: Int = 30
        func run() async throws {
            try requireRoot("warbler cluster drain")
            do {
                let tasks = ClusterTasks()
                let member = try tasks.memberFile()
                try await DrainControl(etcd: tasks.etcd(member), by: member.member.name)
                    .drain(node: node, reason: "warbler cluster drain", timeout: .seconds(timeout))
                print("\(node) is drained in every member's HAProxy; `warbler cluster undrain \(node)` puts it back")
            } catch { throw fail(error) }
        }
    }

    struct Undrain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a member's drain mark (left by `cluster drain` or a stopped upgrade) and wait until every HAProxy has it ready.")
        @Argument(help: "The member to put back.") var node: String
        @Option(help: "Seconds to wait for every member's agent.") var timeout: Int = 30
        func run() async throws {
            try requireRoot("warbler cluster undrain")
            do {
                let tasks = ClusterTasks()
                let member = try tasks.memberFile()
                try await DrainControl(etcd: tasks.etcd(member), by: member.member.name).undrain(node: node, timeout: .seconds(timeout))
                print("\(node) is ready in every member's HAProxy")
            } catch { throw fail(error) }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take a member that is gone (powered off, its disk lost) out of the cluster, from any other member.",
            discussion: """
            Removes its record (every HAProxy stops sending it clients), its VIP and drain records and its etcd member; \
            Patroni drops it by itself. Refused for this host (use `warbler uninstall`), for the PostgreSQL primary \
            (switch over first), for a member that still runs, and when it would leave the database without a standby \
            (--force overrides the last two). docs/operations.md, "Removing a member".
            """)
        @Argument(help: "The member to remove (its name in `warbler cluster status`).") var node: String
        @Flag(help: "Remove it even if it still runs or it leaves the database without a standby.") var force = false
        func run() async throws {
            try requireRoot("warbler cluster remove")
            do {
                for line in try await ClusterTasks().remove(node: node, force: force) { print(line) }
                print("\(node) is no longer a member; `warbler cluster status` shows the rest")
            } catch { throw fail(error) }
        }
    }
}
