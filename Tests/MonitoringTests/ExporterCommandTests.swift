import Foundation
import Operations
import Testing

/// `warbler exporter` as systemd runs it: the built executable, a config file, SIGTERM.
@Suite struct ExporterCommandTests {
    /// The `warbler` executable `swift build --build-tests` (or `swift test`) put beside the test bundle.
    static func executable() throws -> String {
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [dir.appendingPathComponent("warbler").path, dir.deletingLastPathComponent().appendingPathComponent("warbler").path]
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw MonitoringTestError("no warbler executable at \(candidates.joined(separator: " or ")): build it with `swift build --build-tests`")
        }
        return found
    }

    @Test func theCommandServesUntilSIGTERMAndThenExitsZeroPromptly() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-cmd-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            exporter:
              port: 0
              manager: supervisor
              backup_marker: \(dir)/last-success.json
            storage:
              path: \(dir)/warbler.db
            """.write(toFile: dir + "/warbler.yaml", atomically: true, encoding: .utf8)
        let log = dir + "/stderr.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try Self.executable())
        p.arguments = ["exporter", "--config", dir + "/warbler.yaml"]
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        p.standardOutput = FileHandle.nullDevice
        p.environment = ["PATH": "/usr/bin:/bin"]
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }

        // The log names the bound port ("exporter listening on [IPv4]127.0.0.1/127.0.0.1:PORT").
        var port: Int?
        let deadline = ContinuousClock.now + .seconds(20)
        while port == nil, ContinuousClock.now < deadline, p.isRunning {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { $0.contains("exporter listening on") }) {
                port = line.split(separator: ":").last.flatMap { Int($0) }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        let bound = try #require(port, "the exporter did not report its port: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        let health = try await LiveStatusProbe().get("http://127.0.0.1:\(bound)/healthz", caFile: nil)
        #expect(health.status == 200)
        let metrics = try await LiveStatusProbe().get("http://127.0.0.1:\(bound)/metrics", caFile: nil)
        #expect(metrics.body.contains(#"warbler_component_up{component="server"} 0"#))

        let sent = ContinuousClock.now
        kill(p.processIdentifier, SIGTERM)
        while p.isRunning, ContinuousClock.now - sent < .seconds(5) { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!p.isRunning, "still running 5 s after SIGTERM")
        p.waitUntilExit()
        #expect(p.terminationReason == .exit && p.terminationStatus == 0)
    }

    @Test func aBadConfigIsOneLineAndExitStatusOne() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-\(UUID().uuidString).yaml").path
        try "exporter:\n  manager: runit\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try Self.executable())
        p.arguments = ["exporter", "--config", path]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 1)
        #expect(text == "warbler: exporter.manager must be auto, systemd or supervisor, not 'runit'\n")
    }
}

struct MonitoringTestError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
