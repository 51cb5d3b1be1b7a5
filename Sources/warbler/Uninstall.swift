import ArgumentParser
import Foundation
import Installer
import Operations

extension Warbler {
    struct Uninstall: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Stop and remove Warbler: services, releases, config, journal. Keeps /var/lib/warbler unless --purge.")

        @Flag(help: "Remove the data (/var/lib/warbler), the logs and the warbler user too. Asks first unless --yes.")
        var purge = false
        @Flag(help: "Do not ask; needed for --purge without a terminal.")
        var yes = false
        @Option(help: "Uninstall an install staged under DIR.")
        var root: String?

        func validate() throws {
            if let r = root, !r.hasPrefix("/") { throw ValidationError("--root needs an absolute path") }
        }

        func run() async throws {
            do {
                let layout = Layout(root: root)
                let uninstaller = Uninstaller(system: LocalSystem(), probe: LiveHostProbe())
                let plan = try uninstaller.plan(layout: layout, purge: purge)
                if purge && !yes {
                    guard isatty(0) == 1 else {
                        throw ValidationError("--purge deletes every message and account in \(layout.path(Paths.data)); without a terminal to confirm on, add --yes")
                    }
                    print("This deletes ALL Warbler data in \(layout.path(Paths.data)) (messages, accounts, attachments). Type 'purge' to go ahead: ", terminator: "")
                    guard readLine()?.trimmingCharacters(in: .whitespaces) == "purge" else { print("Nothing changed."); throw ExitCode(1) }
                }
                if plan.steps.isEmpty { print("Nothing to uninstall.") }
                // A cluster member leaves the cluster cleanly before its files go.
                if root == nil, FileManager.default.fileExists(atPath: ClusterPaths.memberFile), !plan.steps.isEmpty {
                    for line in try await ClusterTasks().leave() { print("  - \(line)") }
                }
                try uninstaller.apply(plan) { print("  - \($0)") }
                print(plan.kept.isEmpty ? "Warbler is uninstalled." : "Warbler is uninstalled; kept \(plan.kept.joined(separator: ", ")) (warbler uninstall --purge removes it).")
            } catch let e as ExitCode {
                throw e
            } catch let e as ValidationError {
                throw fail(e)
            } catch {
                throw fail(error)
            }
        }
    }
}
