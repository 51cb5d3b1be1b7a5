import ArgumentParser
import Backup
import Foundation
import IMServer
import Installer
import Glibc
import Logging

extension Warbler {
    struct BackupCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "backup",
            abstract: "Take an online backup (database snapshot, /etc/warbler with secrets, attachments) while the server runs.")

        @Option(name: .long, help: "The server's YAML config (default: /etc/warbler/warbler.yaml when it exists).")
        var config: String?
        @Option(help: "Write the archive here (default: <backup.directory>/warbler-<host>-<UTC time>.tar.gz).")
        var output: String?
        @Option(help: "Encrypt the secrets in the archive with the passphrase on this file's first line.")
        var passphraseFile: String?
        @Option(help: "Keep this many backups in the backup directory, deleting the oldest (default: backup.keep; 0 keeps all).")
        var keep: Int?
        @Option(help: "Back up an install staged under DIR.")
        var root: String?

        func validate() throws {
            if let keep, keep < 0 { throw ValidationError("--keep must be 0 (keep every backup) or more") }
            if let r = root, !r.hasPrefix("/") { throw ValidationError("--root needs an absolute path") }
        }

        func run() async throws {
            bootstrapLogging(level: "warning")
            do {
                let layout = Layout(root: root)
                let path = config ?? (FileManager.default.fileExists(atPath: layout.path(Paths.config)) ? layout.path(Paths.config) : nil)
                let serverConfig = try ServerConfig.load(path: path)
                let passphrase = try passphraseFile.map { try BackupEngine.readPassphrase(file: $0) }
                let request = BackupRequest(layout: layout, config: serverConfig, output: output, passphrase: passphrase, keep: keep)
                let result = try await BackupEngine(logger: Logger(label: "warbler.backup")).create(request)
                let m = result.manifest
                print("backup written: \(result.file) (\(result.bytes) bytes, \(m.entries.count) members, \(m.backend.rawValue) schema \(m.schemaVersion)\(m.encryption != nil ? ", secrets encrypted" : ""))")
                if let c = m.cluster {
                    print("a cluster backup: cluster \(c.id ?? "id unknown"), taken on \(c.node), members \(c.members.isEmpty ? "unknown" : c.members.map(\.name).joined(separator: ", "))\(c.note.map { " (\($0))" } ?? "")")
                }
                for old in result.removed { print("deleted old backup \(old)") }
            } catch { throw fail(error) }
        }
    }

    struct RestoreCommand: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "restore",
            abstract: "Restore a backup onto a stopped or freshly installed host, after checking every checksum.")

        @Argument(help: "The backup archive (warbler-<host>-<time>.tar.gz).")
        var file: String
        @Option(help: "The file holding the passphrase the backup's secrets were encrypted with (first line).")
        var passphraseFile: String?
        @Flag(help: "Replace a database that already holds messages.")
        var force = false
        @Flag(help: "Only check the archive (authentication, checksums, schema version, passphrase); change nothing.")
        var verifyOnly = false
        @Flag(help: "Accept an archive that is not authenticated by this install's backup key or its passphrase (a timer-run backup, one from another host). Only for a file you know nobody altered.")
        var trustUnauthenticated = false
        @Option(help: "Restore into an install staged under DIR.")
        var root: String?

        func validate() throws {
            if let r = root, !r.hasPrefix("/") { throw ValidationError("--root needs an absolute path") }
        }

        func run() async throws {
            bootstrapLogging(level: "warning")
            do {
                let passphrase = try passphraseFile.map { try BackupEngine.readPassphrase(file: $0) }
                let engine = RestoreEngine(logger: Logger(label: "warbler.restore"))
                let layout = Layout(root: root)
                if verifyOnly {
                    let verified = try engine.verify(file: file, passphrase: passphrase, layout: layout, trustUnauthenticated: trustUnauthenticated,
                                                     environment: ProcessInfo.processInfo.environment)
                    let m = verified.manifest
                    print("\(file): good; authenticated by \(verified.authentication.rawValue); \(m.entries.count) members match the manifest; made \(m.createdAt) on \(m.hostname) by Warbler \(m.warblerVersion), \(m.backend.rawValue) schema \(m.schemaVersion)\(m.encryption != nil ? (passphrase != nil ? ", passphrase opens the secrets" : ", secrets encrypted (not checked without --passphrase-file)") : "")")
                    if let c = m.cluster {
                        print("a cluster backup: cluster \(c.id ?? "id unknown"), taken on \(c.node), members \(c.members.isEmpty ? "unknown" : c.members.map(\.name).joined(separator: ", "))")
                    }
                    return
                }
                let result = try await engine.restore(RestoreRequest(layout: layout, file: file, passphrase: passphrase, force: force,
                                                                     trustUnauthenticated: trustUnauthenticated,
                                                                     environment: ProcessInfo.processInfo.environment))
                let m = result.manifest
                let migrated = result.migrationsApplied.isEmpty ? "" : "; migrated to schema \(result.migrationsApplied.last!)"
                print("restored \(file) (made \(m.createdAt) on \(m.hostname), \(m.backend.rawValue) schema \(m.schemaVersion)\(migrated); authenticated by \(result.authentication.rawValue))")
                if let note = result.caNote { print(note) }
                for note in result.notes { print(note) }
                if m.cluster != nil {
                    print("start the IM server: systemctl start warbler-server; then join the other hosts (`warbler cluster token` here, `warbler join …` there): each receives the restored token key")
                } else {
                    print("start the server: systemctl start warbler-server (or warbler supervise)")
                }
            } catch { throw fail(error) }
        }
    }
}

extension Warbler {
    /// The cluster's daily backup lock, run as root by `warbler-backup.service` around the service user's backup.
    struct BackupLock: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "backup-lock",
            abstract: "Take or release the cluster's daily backup lock in etcd (run by warbler-backup.service on a cluster member).",
            shouldDisplay: false)

        @Argument(help: "acquire (exit 0: this member backs up today; 1: another member does or did) or release.")
        var action: String

        func validate() throws {
            guard ["acquire", "release"].contains(action) else { throw ValidationError("give acquire or release, not '\(action)'") }
        }

        func run() async throws {
            bootstrapLogging(level: "warning")
            guard geteuid() == 0 else { throw fail(BackupError(.usage, "backup-lock runs as root (it uses root's etcd client key)")) }
            let layout = Layout()
            do {
                if action == "acquire" {
                    let decision = try ClusterDailyBackup.acquire(layout: layout, now: Date())
                    print(decision.message)
                    // ExecCondition: 1 skips the run without failing the unit.
                    if !decision.takeBackup { throw ExitCode(1) }
                } else {
                    // ExecStopPost: systemd says how the run ended.
                    let succeeded = ProcessInfo.processInfo.environment["SERVICE_RESULT"] == "success"
                    print(try ClusterDailyBackup.release(layout: layout, succeeded: succeeded, now: Date()))
                }
            } catch let exit as ExitCode {
                throw exit
            } catch {
                // Anything else (etcd unreachable): 255 fails the unit instead of skipping, so the operator sees it.
                fflush(nil)
                FileHandle.standardError.write(Data("warbler: the cluster's daily backup lock: \(error)\n".utf8))
                throw ExitCode(255)
            }
        }
    }
}
