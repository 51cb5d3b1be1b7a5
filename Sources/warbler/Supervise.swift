import ArgumentParser
import Foundation
import Installer

extension Warbler {
    struct Supervise: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the server, or a cluster component (--unit), under Warbler's own supervisor (hosts without systemd as PID 1; started by install).",
            shouldDisplay: false)

        @Option(help: "Append the child's output here (default /var/log/warbler/server.log).")
        var log: String?
        @Option(help: "The supervisor's PID file (default /run/warbler/supervise.pid).")
        var pidFile: String?
        @Option(help: "The child's PID file (default /run/warbler/server.pid).")
        var childPidFile: String?
        @Option(help: "Run the child as this user (default warbler; 'none' keeps root).")
        var user: String?
        @Option(help: "Run this cluster component (e.g. warbler-etcd.service) as its unit describes it, from this member's record.")
        var unit: String?
        @Argument(parsing: .postTerminator, help: "The child's command line (default: the installed server).")
        var command: [String] = []

        func run() throws {
            var config = FileManager.default.fileExists(atPath: ClusterPaths.memberFile) ? SupervisorConfig.serverOnClusterMember : SupervisorConfig.server
            if let unit {
                do { config = SupervisorConfig.component(try ClusterPaths.installedComponent(unit)) } catch { throw fail(error) }
            }
            // Another daemon than the server: it gets the supervision, not the server's periodic jobs.
            if !command.isEmpty { config.argv = command; config.periodic = []; config.jobsLogFile = nil }
            if let log { config.logFile = log }
            if let pidFile { config.pidFile = pidFile }
            if let childPidFile { config.childPIDFile = childPidFile }
            if let user { config.user = user == "none" ? nil : user }
            Supervisor.installTerminationHandlers()
            let code: Int32
            do { code = try Supervisor(config: config).run() } catch { throw fail(error) }
            if code != 0 { throw ExitCode(code) }
        }
    }
}
