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

        func exit(_ report: StatusReport) throws {
            if !report.healthy { throw ExitCode(1) }
        }

        func validate() throws {
            if let r = root, !r.hasPrefix("/") { throw ValidationError("--root needs an absolute path") }
        }

        func run() async throws {
            let layout = Layout(root: root)
            let collector = StatusCollector(probe: LiveStatusProbe(), layout: layout)
            let report = await collector.collect(manager: installedInitSystem(layout: layout), host: LiveHostProbe().hostname())
            // On a cluster member (as root, which may read the cluster's client key): every member too.
            var cluster: ClusterStatusReport?
            var clusterError: String?
            if root == nil, getuid() == 0, FileManager.default.fileExists(atPath: ClusterPaths.memberFile) {
                do {
                    let tasks = ClusterTasks()
                    let member = try tasks.memberFile()
                    cluster = try await ClusterStatusCollector(member: member, etcd: tasks.etcd(member)).collect()
                } catch { clusterError = "\(error)" }
            }
            do {
                if json {
                    guard cluster != nil || clusterError != nil else { print(try report.json(), terminator: ""); return try exit(report) }
                    // A member's JSON: this host's report under "host", the cluster's under "cluster".
                    let e = JSONEncoder()
                    e.outputFormatting = [.prettyPrinted, .sortedKeys]
                    let host = try report.json()
                    let clusterJSON = try cluster.map { String(decoding: try e.encode($0), as: UTF8.self) } ?? "{\"error\": \(String(decoding: try e.encode(clusterError ?? ""), as: UTF8.self))}"
                    print("{\"host\": \(host.trimmingCharacters(in: .whitespacesAndNewlines)),\n\"cluster\": \(clusterJSON)}")
                } else {
                    print(report.render(), terminator: "")
                    if let cluster { print("\nCluster:\n" + cluster.render(), terminator: "") }
                    if let clusterError { print("\nCluster: unknown (\(clusterError))") }
                }
            } catch { throw fail(error) }
            if !report.healthy || cluster?.healthy == false || clusterError != nil { throw ExitCode(1) }
        }
    }
}
