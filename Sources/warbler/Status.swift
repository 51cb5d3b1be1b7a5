import ArgumentParser
import Foundation
import Installer
import Operations

extension Warbler {
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show each component's state, PID, uptime, version, readiness, addresses and figures; exit 1 when something is unhealthy.")

        @Flag(help: "Print JSON for scripts instead of the table.")
        var json = false
        @Option(help: "Look at an install staged under DIR.")
        var root: String?

        func validate() throws {
            if let r = root, !r.hasPrefix("/") { throw ValidationError("--root needs an absolute path") }
        }

        func run() async throws {
            let layout = Layout(root: root)
            let collector = StatusCollector(probe: LiveStatusProbe(), layout: layout)
            let report = await collector.collect(manager: installedInitSystem(layout: layout), host: LiveHostProbe().hostname())
            do { print(json ? try report.json() : report.render(), terminator: "") } catch { throw fail(error) }
            if !report.healthy { throw ExitCode(1) }
        }
    }
}
