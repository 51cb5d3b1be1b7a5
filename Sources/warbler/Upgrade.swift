import ArgumentParser
import Foundation
import Installer
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
                """)

        @Argument(help: "The newer installer file (default: this file).") var file: String?
        @Flag(help: "Install an older release than the one installed.") var allowDowngrade = false
        @Flag(help: "Upgrade even if the install is unhealthy now.") var force = false
        @Option(help: "Releases to keep under /opt/warbler/releases (at least 2: current and previous).") var keep = 3
        @Flag(help: "Do not ask before starting.") var yes = false

        func run() async throws {
            let path = file.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? "/proc/self/exe"
            // /proc/self/exe is this process's image; the installed copy must come from a stable path.
            let target = path == "/proc/self/exe" ? ((try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? path) : path
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

        func run() async throws {
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
