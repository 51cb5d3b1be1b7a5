import ArgumentParser
import Foundation
import Installer
import Logging
import Upgrade

extension Warbler {
    struct UpgradeCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "upgrade",
            abstract: "Upgrade this host to the release in an installer file, rolling back by itself if anything fails.",
            discussion: """
                Verifies FILE (and its signature when /etc/warbler/release-key.pub exists), refuses a downgrade, checks \
                free space and health, backs up, installs the new release beside the old one, restarts with readiness \
                gates, and runs a self-check (a login and a message round trip). On any failure it returns to the old \
                release, restoring the backup if the schema changed. Run without FILE, an installer file upgrades to itself.

                On a cluster member it plans the upgrade of the whole cluster instead: verifies FILE, reads every \
                member's release and the schema, checks version skew, and lists the steps; it refuses, naming them, \
                while steps the cluster upgrade needs are not available in this build.
                """)

        @Argument(help: "The newer installer file (default: this file).") var file: String?
        @Flag(help: "Install an older release than the one installed.") var allowDowngrade = false
        @Flag(help: "Upgrade even if the install is unhealthy now.") var force = false
        @Option(help: "Releases to keep under /opt/warbler/releases (at least 2: current and previous).") var keep = 3
        @Flag(help: "Do not ask before starting.") var yes = false
        @Flag(help: "On a cluster member: continue the recorded, stopped cluster upgrade (give the same FILE).") var resume = false
        @Flag(help: "On a cluster member: run the upgrade's contract (destructive) migrations, once every member runs the new release.")
        var contract = false
        @Flag(help: "On a cluster member: upgrade only this host, as on a single host (what `upgrade` did on members before the cluster engine); the member is not drained first.")
        var hostOnly = false

        func run() async throws {
            let path = file.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? "/proc/self/exe"
            // /proc/self/exe is this process's image; the installed copy must come from a stable path.
            let target = path == "/proc/self/exe" ? ((try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? path) : path
            if LiveClusterUpgradeDriver.isClusterMember && !hostOnly {
                do { try await upgradeCluster(file: target) } catch let e as ExitCode { throw e } catch { throw fail(error) }
                return
            }
            if resume || contract {
                throw fail(ValidationError("--resume and --contract are for a cluster upgrade, on a cluster member\(hostOnly ? ", not with --host-only" : "; this host is not one")"))
            }
            if !yes && isatty(0) == 1 {
                print("Upgrade this host to the release in \(target)? Connected clients reconnect by themselves. [y/N] ", terminator: "")
                guard ["y", "yes"].contains(readLine()?.lowercased() ?? "") else { throw ExitCode(1) }
            }
            let upgrader = Upgrader(host: LiveUpgradeHost())
            do {
                let outcome = try await upgrader.upgrade(file: target, options: UpgradeOptions(allowDowngrade: allowDowngrade, force: force,
                                                                                                keepReleases: keep)) { print("  - \($0)") }
                switch outcome {
                case .alreadyCurrent(let v):
                    print("Already running \(v), this very build; nothing to do.")
                case .upgraded(let from, let to, let backup, _):
                    print("Upgraded \(from) → \(to). The pre-upgrade backup is \(backup); `warbler rollback` returns to \(from).")
                }
            } catch {
                throw fail(error)
            }
        }
    }

    struct Rollback: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Return to the previous release (restoring the last upgrade's backup if it changed the schema).")
        @Flag(help: "Do not ask before starting.") var yes = false
        @Flag(help: "Restore the upgrade's backup even if it is not authenticated by this install's backup key (one made by a release from before backups were authenticated).")
        var trustUnauthenticated = false
        @Flag(help: "On a cluster member: continue the recorded, stopped cluster rollback.") var resume = false

        func run() async throws {
            if LiveClusterUpgradeDriver.isClusterMember {
                do {
                    let upgrader = ClusterUpgrader(driver: try LiveClusterUpgradeDriver(log: { print("    \($0)") }))
                    if !resume {
                        // The checks first (a contract migration ran, nothing to return), then what this build can do.
                        let planned = try await upgrader.planRollback()
                        print("Cluster rollback \(planned.from) → \(planned.to):")
                        for (i, step) in planned.steps.enumerated() { print("  \(i + 1). \(step)") }
                        let missing = upgrader.unavailable(planned)
                        if !missing.isEmpty { throw ClusterUpgradeRefusal(missing.joined(separator: "\n")) }
                    }
                    let done = try await upgrader.rollback(resume: resume) { print("  - \($0)") }
                    print("Rolled the cluster back \(done.from) → \(done.to).")
                } catch {
                    throw fail(error)
                }
                return
            }
            if resume { throw fail(ValidationError("--resume is for cluster members; this host is not one")) }
            if !yes && isatty(0) == 1 {
                print("Return to the previous release? If the last upgrade changed the schema, messages sent since then are lost. [y/N] ", terminator: "")
                guard ["y", "yes"].contains(readLine()?.lowercased() ?? "") else { throw ExitCode(1) }
            }
            do {
                let (from, to, restored) = try await Upgrader(host: LiveUpgradeHost(trustUnauthenticated: trustUnauthenticated)).rollback { print("  - \($0)") }
                print("Rolled back \(from) → \(to)\(restored ? ", restoring the pre-upgrade backup" : ", data untouched").")
            } catch {
                throw fail(error)
            }
        }
    }
}

extension Warbler.UpgradeCommand {
    /// `warbler upgrade` on a cluster member: the cluster upgrade engine with this build's real driver.
    func upgradeCluster(file: String) async throws {
        let upgrader = ClusterUpgrader(driver: try LiveClusterUpgradeDriver(log: { print("    \($0)") }))
        if contract {
            let done = try await upgrader.contract { print("  - \($0)") }
            print("Ran the contract migrations of \(done.to) (schema \(done.contracted ?? 0)). The cluster can no longer return to \(done.from) by `warbler rollback`.")
            return
        }
        if !resume {
            let planned = try await upgrader.plan(file: file)
            if planned.state == .finished {
                print("Every member already runs \(planned.to); nothing to do.")
                return
            }
            print("Cluster upgrade \(planned.from) → \(planned.to) (file verified, version skew checked):")
            for (i, step) in planned.steps.enumerated().dropFirst(planned.done) { print("  \(i + 1). \(step)") }
            if let through = planned.contractPending { print("  then, separately: `warbler upgrade --contract` runs the contract migrations through schema \(through)") }
            let missing = upgrader.unavailable(planned)
            if !missing.isEmpty { throw ClusterUpgradeRefusal(missing.joined(separator: "\n")) }
            if !yes && isatty(0) == 1 {
                print("Upgrade the cluster? Each member's clients reconnect to the others while it switches. [y/N] ", terminator: "")
                guard ["y", "yes"].contains(readLine()?.lowercased() ?? "") else { throw ExitCode(1) }
            }
        }
        let done = try await upgrader.upgrade(file: file, resume: resume) { print("  - \($0)") }
        print("Upgraded the cluster \(done.from) → \(done.to).\(done.contractPending.map { " Run `warbler upgrade --contract` once you no longer need `warbler rollback` to \(done.from) (contract migrations through schema \($0))." } ?? "")")
    }
}

extension Warbler {
    /// Run by `warbler upgrade` as the service user, so that root never opens the service user's database.
    struct SchemaVersion: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "schema-version",
            abstract: "Print the database's schema version as one JSON line (run by `warbler upgrade` as the service user).",
            shouldDisplay: false)

        @Option(help: "Read an install staged under DIR.")
        var root: String?

        func validate() throws {
            if let r = root, !r.hasPrefix("/") { throw ValidationError("--root needs an absolute path") }
        }

        func run() async throws {
            // Root believes only the one line printed (stdout and stderr are read together): no log lines.
            bootstrapLogging(level: "critical")
            var logger = Logger(label: "warbler.schema-version")
            logger.logLevel = .critical
            do {
                print(SchemaProbe.line(try await SchemaProbe.read(layout: Layout(root: root), logger: logger)))
            } catch { throw fail(error) }
        }
    }
}
