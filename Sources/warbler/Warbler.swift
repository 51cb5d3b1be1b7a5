import ArgumentParser
import Foundation
import IMServer
import IMStorage
import Logging
import Operations
import SystemdSupport

@main
struct Warbler: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warbler",
        abstract: "Warbler: an instant-messaging private cloud in one file.",
        subcommands: [Install.self, Doctor.self, Status.self, Uninstall.self, Server.self, Supervise.self, Version.self, UserAdd.self,
                      Bench.self, PayloadCommand.self, Certs.self, UpgradeCommand.self, Rollback.self, BackupCommand.self, RestoreCommand.self, BackupLock.self, SchemaVersion.self,
                      Alertd.self, Alerts.self, Exporter.self, Join.self, ClusterCommand.self, Bots.self, Probe.self,
                      ComplianceVerify.self])

    /// keepalived runs `warbler cluster vip-check` every second: it is answered before anything starts a thread of
    /// the concurrency pool (each new pool thread logs a line when the unit's sandbox refuses it a priority).
    static func main() async {
        if Array(CommandLine.arguments.dropFirst()) == ["cluster", "vip-check"] { Glibc.exit(HAProxyHealth.ok() ? 0 : 1) }
        await main(nil)
    }
}

/// Options every command that reads the server config shares.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: "The server's YAML config (default: /etc/warbler/warbler.yaml when it exists).")
    var config: String?

    func load() throws -> ServerConfig {
        let path = config ?? (FileManager.default.fileExists(atPath: "/etc/warbler/warbler.yaml") ? "/etc/warbler/warbler.yaml" : nil)
        return try ServerConfig.load(path: path)
    }
}

func bootstrapLogging(level: String) {
    let lvl = Logger.Level(rawValue: level) ?? .info
    let journal = Systemd.stderrIsJournal
    LoggingSystem.bootstrap { label in
        var h: any LogHandler = journal ? JournalLogHandler(label: label) : StreamLogHandler.standardError(label: label)
        h.logLevel = lvl
        return h
    }
}

/// Maps a failure to a one-line message and exit code 1, instead of a stack of Swift errors.
func fail(_ error: any Error) -> ExitCode {
    // What was printed comes first (stdout is buffered when it is a file; both may share one): flush every stream.
    fflush(nil)
    FileHandle.standardError.write(Data("warbler: \(error)\n".utf8))
    return ExitCode(1)
}

extension Warbler {
    struct Server: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the IM server (normally started by systemd or the supervisor).")
        @OptionGroup var options: ConfigOptions

        func run() async throws {
            let config: ServerConfig
            do { config = try options.load() } catch { throw fail(error) }
            bootstrapLogging(level: config.logLevel)
            let logger = Logger(label: "warbler.server")
            do {
                let runtime = try await ServerRuntime.open(config: config, logger: logger)
                try await runtime.run()
            } catch {
                logger.critical("server stopped: \(error)")
                throw fail(error)
            }
        }
    }

    struct Version: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the version and build.")
        @Flag(help: "Print {\"version\", \"build\", \"schema\", \"migrations\"} as JSON (what `upgrade` reads).") var json = false
        func run() {
            if json {
                // Each migration's phase: a cluster upgrade's version-skew check reads it from the new release's file.
                let migrations = Migrations.all.map { #"{"version":\#($0.version),"phase":"\#($0.phase.rawValue)"}"# }.joined(separator: ",")
                print(#"{"version":"\#(WarblerVersion.version)","build":"\#(WarblerVersion.build)","schema":\#(Migrations.latest),"migrations":[\#(migrations)]}"#)
            } else {
                print("warbler \(WarblerVersion.version) (build \(WarblerVersion.build))")
            }
        }
    }

    struct UserAdd: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "user-add", abstract: "Create an account directly in the database (for the first admin).")
        @OptionGroup var options: ConfigOptions
        @Argument(help: "Username (3-32 of a-z 0-9 . _ -).") var username: String
        @Option(help: "A file holding the password (the first line is used).") var passwordFile: String
        @Flag(help: "Make the account an administrator.") var admin = false
        @Flag(help: "Succeed without changing anything when the account exists (the installer creates the first admin this way).")
        var existsOk = false
        @Flag(help: "With --exists-ok: set the existing account's password from the file (and enable it).")
        var updatePassword = false

        func run() async throws {
            do {
                let config = try options.load()
                guard let pw = try? String(contentsOfFile: passwordFile, encoding: .utf8).split(separator: "\n").first.map(String.init) else {
                    throw ConfigError("cannot read a password from \(passwordFile)")
                }
                let runtime = try await ServerRuntime.open(config: config, logger: Logger(label: "warbler.user-add"))
                if existsOk, let existing = try await runtime.storage.user(username: username.lowercased()) {
                    if updatePassword {
                        try await runtime.resetPassword(id: existing.profile.id, password: pw)
                        try await runtime.storage.close()
                        print("user \(existing.profile.username) exists; password set")
                        return
                    }
                    try await runtime.storage.close()
                    print("user \(existing.profile.username) exists; left as it is")
                    return
                }
                let user = try await runtime.createUser(username: username, password: pw, displayName: nil, admin: admin)
                try await runtime.storage.close()
                print("created \(admin ? "admin " : "")user \(user.username) (id \(user.id))")
            } catch { throw fail(error) }
        }
    }
}
