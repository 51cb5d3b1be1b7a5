import Foundation
import IMStorage

/// What `warbler version --json` says about a binary.
public struct ReleaseInfo: Codable, Sendable, Equatable {
    public var version: String
    public var build: String
    /// The newest schema version its migrations reach.
    public var schema: Int
    /// Each of its migrations' version and phase (expand or contract): what a cluster upgrade's version-skew check
    /// reads. Nil from releases made before cluster upgrades.
    public var migrations: [MigrationPhaseInfo]?
    public init(version: String, build: String, schema: Int, migrations: [MigrationPhaseInfo]? = nil) {
        self.version = version; self.build = build; self.schema = schema; self.migrations = migrations
    }
}

/// One migration of a release, as `warbler version --json` lists it.
public struct MigrationPhaseInfo: Codable, Sendable, Equatable {
    public var version: Int
    public var phase: Migration.Phase
    public init(version: Int, phase: Migration.Phase) { self.version = version; self.phase = phase }
}

/// The installed release, as `/opt/warbler/current` and `previous` point.
public struct InstalledReleases: Sendable, Equatable {
    public var current: String
    public var currentBinary: String
    public var previous: String?
    /// Every directory under /opt/warbler/releases, oldest first by modification time.
    public var all: [String]
    public init(current: String, currentBinary: String, previous: String?, all: [String]) {
        self.current = current; self.currentBinary = currentBinary; self.previous = previous; self.all = all
    }
}

/// The last upgrade (or rollback), kept in /var/lib/warbler-install/upgrade.json (root's): what `rollback` undoes.
public struct UpgradeRecord: Codable, Sendable, Equatable {
    public enum Outcome: String, Codable, Sendable { case inProgress = "in-progress", done, rolledBack = "rolled-back", failed }
    public var from: String
    public var to: String
    public var backup: String
    public var schemaBefore: Int
    public var schemaAfter: Int?
    public var startedAt: Date
    public var outcome: Outcome
    public var failure: String?
    public init(from: String, to: String, backup: String, schemaBefore: Int, schemaAfter: Int? = nil, startedAt: Date,
                outcome: Outcome, failure: String? = nil) {
        self.from = from; self.to = to; self.backup = backup; self.schemaBefore = schemaBefore; self.schemaAfter = schemaAfter
        self.startedAt = startedAt; self.outcome = outcome; self.failure = failure
    }
}

/// Everything an upgrade does to the host, so the sequence and its failure handling are tested against a recording
/// fake and run for real by `LiveUpgradeHost`.
public protocol UpgradeHost: Sendable {
    /// Copies the installer file (and its .sig) into a directory only root can write and returns the copy's path:
    /// what is verified is then what runs, whoever can write where the file was given.
    func stage(file: String) throws -> String
    /// Removes a copy `stage` made.
    func removeStaged(_ path: String)
    /// Checks the file's payload checksum, and its signature when the install has a release key.
    func verify(file: String) throws
    /// Asks a binary what it is (`BINARY version --json`).
    func releaseInfo(binary: String) throws -> ReleaseInfo
    func installed() throws -> InstalledReleases
    /// Problems with free space for a backup and the new release; empty when there is room.
    func spaceProblems(newFile: String) throws -> [String]
    /// Why the install is not healthy now, or nil.
    func healthProblem() async -> String?
    /// The database's schema version now.
    func schemaVersion() async throws -> Int
    /// Takes a full backup with the installed release's own `warbler backup`; returns its path.
    func backup(label: String) async throws -> String
    /// Puts a backup back for `binary`'s release (the release the data is being returned to: nothing migrates it
    /// past that release's schema). The server must be stopped. Runs as root, so it must refuse an archive that is
    /// not authenticated, links, modes and owners a backup never has, exactly as `warbler restore` does.
    func restore(backup: String, using binary: String) async throws
    /// Deletes pre-upgrade backups other than `keeping` (the one the latest upgrade record names); daily retention
    /// leaves them alone so that a rollback finds its backup however late it comes.
    func prunePreUpgradeBackups(keeping: String) throws -> [String]
    /// Runs `BINARY install --yes`: the release in that binary becomes current; config and units are rendered from its
    /// templates; changed services restart, each start gated on readiness. Returns its output; throws on failure.
    func converge(binary: String) throws -> String
    /// A real login and a message round trip through the running server.
    func selfCheck() async throws
    func stopServer() throws
    func startServer() throws
    func setPrevious(_ version: String?) throws
    /// Removes one release's directory (a failed upgrade's, after rolling back).
    func removeRelease(_ version: String) throws
    /// Removes releases beyond `keep`, never `protecting` ones; returns the removed versions.
    func pruneReleases(keep: Int, protecting: [String]) throws -> [String]
    func save(_ record: UpgradeRecord) throws
    func lastRecord() throws -> UpgradeRecord?
    func now() -> Date
}

extension UpgradeHost {
    public func prunePreUpgradeBackups(keeping: String) throws -> [String] { [] }
}

public struct UpgradeOptions: Sendable {
    public var allowDowngrade = false
    /// Go ahead although the install is unhealthy now.
    public var force = false
    public var keepReleases = 3
    /// One member's switch in a cluster upgrade (its upgrade receiver): no backup of this member (the cluster's was
    /// taken, and the database is shared), and no restore when it returns (the expand-only migrations leave a schema
    /// the old release runs on; a restore would destroy the other members' writes).
    public var clusterMember = false
    public init(allowDowngrade: Bool = false, force: Bool = false, keepReleases: Int = 3, clusterMember: Bool = false) {
        self.allowDowngrade = allowDowngrade; self.force = force; self.keepReleases = keepReleases; self.clusterMember = clusterMember
    }
}

public enum UpgradeOutcome: Sendable, Equatable {
    case alreadyCurrent(String)
    case upgraded(from: String, to: String, backup: String, pruned: [String])
}

extension UpgradeHost {
    /// Hosts with nothing to stage (test fakes) use the file where it is.
    public func stage(file: String) throws -> String { file }
    public func removeStaged(_ path: String) {}
}

/// An upgrade that stopped. `rolledBack` says whether the host is back on the old release; `detail` is what failed.
public struct UpgradeError: Error, CustomStringConvertible, Sendable {
    public var step: String
    public var detail: String
    public var rolledBack: Bool
    public var restoredBackup: Bool
    public var rollbackFailure: String?
    public var changedNothing: Bool

    public var description: String {
        if changedNothing { return "\(step): \(detail)" }
        var s = "the upgrade failed at \(step): \(detail)"
        if rolledBack {
            s += restoredBackup ? "; rolled back to the previous release and restored the pre-upgrade backup (the schema had changed)"
                                : "; rolled back to the previous release, data untouched"
        } else if let rollbackFailure {
            s += "; ROLLING BACK FAILED TOO: \(rollbackFailure) — run `warbler rollback`, and `warbler status` to see the state"
        }
        return s
    }

    static func refused(_ step: String, _ detail: String) -> Self {
        Self(step: step, detail: detail, rolledBack: false, restoredBackup: false, rollbackFailure: nil, changedNothing: true)
    }
}

/// `warbler upgrade FILE`: verify, check, back up, install the new release beside the old one, switch and restart
/// with readiness and a self-check, and on any failure switch back (restoring the backup if the schema moved).
public struct Upgrader: Sendable {
    public let host: any UpgradeHost

    public init(host: any UpgradeHost) { self.host = host }

    public func upgrade(file given: String, options: UpgradeOptions = UpgradeOptions(),
                        progress: @Sendable (String) -> Void = { _ in }) async throws -> UpgradeOutcome {
        // 1. The file: copied where only root writes, so the bytes verified are the bytes run; intact (and signed,
        // when the install asks for it), newer.
        let file: String
        do { file = try host.stage(file: given) } catch { throw UpgradeError.refused("copying \(given)", "\(error)") }
        defer { host.removeStaged(file) }
        do { try host.verify(file: file) } catch { throw UpgradeError.refused("verifying \(given)", "\(error)") }
        let new: ReleaseInfo
        do { new = try host.releaseInfo(binary: file) } catch { throw UpgradeError.refused("reading \(given)'s version", "\(error)") }
        let installed = try host.installed()
        let old = try host.releaseInfo(binary: installed.currentBinary)
        progress("\(given): Warbler \(new.version) (build \(new.build), schema \(new.schema)), verified; installed: \(old.version) (build \(old.build))")
        if new.version == old.version && new.build == old.build { return .alreadyCurrent(new.version) }
        guard let newVersion = ReleaseVersion(new.version), let oldVersion = ReleaseVersion(old.version) else {
            throw UpgradeError.refused("comparing versions", "cannot compare '\(new.version)' with '\(old.version)'")
        }
        if newVersion < oldVersion && !options.allowDowngrade {
            throw UpgradeError.refused("checking the version", "\(new.version) is older than the installed \(old.version); add --allow-downgrade to install it anyway, or use `warbler rollback` to return to the previous release")
        }
        if newVersion == oldVersion && new.build != old.build {
            // Installed over the running build (one directory per version), a failed start would have nothing to
            // return to: the rollback would run the new build again.
            throw UpgradeError.refused("checking the version", "\(given) is \(new.version) again, another build (\(new.build)) of the installed release (build \(old.build)); installed over it, a failed start could not return to the build that runs now. Stamp the rebuild with a version of its own (packaging/build.sh --version) and upgrade to that")
        }
        let schemaBefore = try await host.schemaVersion()
        if new.schema < schemaBefore {
            throw UpgradeError.refused("checking the schema", "the database is at schema \(schemaBefore) but \(new.version) knows only up to \(new.schema); it cannot run on this data (`warbler rollback` restores the backup of the upgrade that moved the schema)")
        }

        // 2. Preflight: room, and a healthy install.
        let space = try host.spaceProblems(newFile: file)
        if !space.isEmpty { throw UpgradeError.refused("checking free space", space.joined(separator: "; ")) }
        if let problem = await host.healthProblem() {
            if options.force { progress("the install is not healthy (\(problem)); going ahead because of --force") }
            else { throw UpgradeError.refused("checking health", "\(problem); fix it first, or add --force to upgrade anyway") }
        }

        // 3. A backup before anything changes (a cluster's member: the cluster upgrade took one of the shared database).
        let backup: String
        if options.clusterMember {
            backup = ""
            progress("no backup of this member: the cluster upgrade backed up the cluster before it began")
        } else {
            progress("backing up the database, config, secrets and attachments")
            do { backup = try await host.backup(label: "pre-upgrade-\(old.version)-to-\(new.version)") } catch {
                throw UpgradeError.refused("taking the pre-upgrade backup", "\(error)")
            }
            progress("backup: \(backup)")
        }
        var record = UpgradeRecord(from: old.version, to: new.version, backup: backup, schemaBefore: schemaBefore,
                                   startedAt: host.now(), outcome: .inProgress)
        try host.save(record)

        // 4-5. Install beside the old release, switch, restart gated on readiness, self-check.
        var step = "installing \(new.version)"
        do {
            progress("installing \(new.version) beside \(old.version), switching, restarting (each start waits for readiness)")
            let out = try host.converge(binary: file)
            for line in out.split(separator: "\n") where line.hasPrefix("  - ") { progress("  \(line.dropFirst(4))") }
            step = "the self-check (a login and a message round trip through \(new.version))"
            progress("self-check: logging in and sending a message through the new server")
            try await host.selfCheck()
        } catch {
            // 6. Back to the old release, as it was.
            progress("\(step) failed: \(error)")
            progress("rolling back to \(old.version)")
            let failure = "\(error)"
            do {
                let restored = try await rollBack(to: installed.currentBinary, backup: options.clusterMember ? nil : backup,
                                                  schemaBefore: schemaBefore, progress: progress)
                // The host as it was: the failed release's directory goes too, unless it was there before.
                if !installed.all.contains(new.version) && new.version != old.version { try? host.removeRelease(new.version) }
                record.outcome = .rolledBack; record.failure = failure
                try? host.save(record)
                throw UpgradeError(step: step, detail: failure, rolledBack: true, restoredBackup: restored, rollbackFailure: nil, changedNothing: false)
            } catch let e as UpgradeError {
                throw e
            } catch {
                record.outcome = .failed; record.failure = "\(failure); rollback: \(error)"
                try? host.save(record)
                throw UpgradeError(step: step, detail: failure, rolledBack: false, restoredBackup: false, rollbackFailure: "\(error)", changedNothing: false)
            }
        }

        record.schemaAfter = try? await host.schemaVersion()
        record.outcome = .done
        try host.save(record)
        try host.setPrevious(old.version)
        let pruned = try host.pruneReleases(keep: max(2, options.keepReleases), protecting: [new.version, old.version])
        if !pruned.isEmpty { progress("removed old releases: \(pruned.joined(separator: ", "))") }
        // Older pre-upgrade backups: no record names them any more. This one stays until the next upgrade.
        if !options.clusterMember, let gone = try? host.prunePreUpgradeBackups(keeping: backup), !gone.isEmpty {
            progress("removed older pre-upgrade backups: \(gone.joined(separator: ", "))")
        }
        return .upgraded(from: old.version, to: new.version, backup: backup, pruned: pruned)
    }

    /// `warbler rollback`: back to `previous`, restoring the last upgrade's backup if that upgrade moved the schema.
    public func rollback(progress: @Sendable (String) -> Void = { _ in }) async throws -> (from: String, to: String, restoredBackup: Bool) {
        let installed = try host.installed()
        guard let previous = installed.previous else {
            throw UpgradeError.refused("finding the previous release", "there is no previous release to return to (/opt/warbler/previous is not set)")
        }
        let record = try host.lastRecord()
        let binary = installed.currentBinary.replacingOccurrences(of: "/releases/\(installed.current)/", with: "/releases/\(previous)/")
        let target = try host.releaseInfo(binary: binary)
        let schemaNow = try await host.schemaVersion()
        var backup: String?
        if schemaNow > target.schema {
            guard let record, record.from == previous, record.to == installed.current else {
                throw UpgradeError.refused("checking the schema", "the database is at schema \(schemaNow), newer than \(previous)'s \(target.schema), and no record of the upgrade to \(installed.current) with its backup is left; restore a backup made by \(previous) with `warbler restore`")
            }
            backup = record.backup
            progress("the upgrade to \(installed.current) moved the schema from \(record.schemaBefore) to \(schemaNow): restoring its backup \(record.backup) (messages since then are lost)")
        }
        let current = installed.current
        let restored = try await rollBack(to: binary, backup: backup, schemaBefore: backup == nil ? schemaNow : (record?.schemaBefore ?? schemaNow),
                                          progress: progress)
        try host.setPrevious(current)
        if var record { record.outcome = .rolledBack; record.failure = "rolled back on request"; try? host.save(record) }
        return (current, previous, restored)
    }

    /// A cluster member's return to its previous release (its upgrade receiver's `return`): converges onto
    /// `previous`, which must be `version`, starts the server and self-checks, without restoring anything (see
    /// `UpgradeOptions.clusterMember`). Nothing to do when the member already runs `version` (its switch returned it
    /// by itself). Returns whether it switched.
    @discardableResult
    public func clusterReturn(to version: String, progress: @Sendable (String) -> Void = { _ in }) async throws -> Bool {
        let installed = try host.installed()
        if installed.current == version {
            progress("already on \(version)")
            return false
        }
        guard let previous = installed.previous, previous == version else {
            throw UpgradeError.refused("finding the previous release", "the previous release here is \(installed.previous ?? "not set"), not \(version); this member runs \(installed.current)")
        }
        let binary = installed.currentBinary.replacingOccurrences(of: "/releases/\(installed.current)/", with: "/releases/\(previous)/")
        let target = try host.releaseInfo(binary: binary)
        guard target.version == version else {
            throw UpgradeError.refused("checking the previous release", "\(binary) says it is \(target.version), not \(version)")
        }
        progress("returning from \(installed.current) to \(version), without restoring anything (the schema is expand-only)")
        _ = try await rollBack(to: binary, backup: nil, schemaBefore: 0, progress: progress)
        try host.setPrevious(installed.current)
        return true
    }

    /// Restores the backup if the schema moved, then converges onto `binary`'s release and checks it serves.
    /// Returns whether the backup was restored.
    func rollBack(to binary: String, backup: String?, schemaBefore: Int, progress: @Sendable (String) -> Void) async throws -> Bool {
        var restored = false
        let schemaNow = try? await host.schemaVersion()
        if let backup, schemaNow != schemaBefore {
            progress("the schema moved (\(schemaBefore) → \(schemaNow.map(String.init) ?? "unknown")): stopping the server and restoring \(backup)")
            try host.stopServer()
            try await host.restore(backup: backup, using: binary)
            restored = true
        }
        let out = try host.converge(binary: binary)
        for line in out.split(separator: "\n") where line.hasPrefix("  - ") { progress("  \(line.dropFirst(4))") }
        try host.startServer()
        try await host.selfCheck()
        progress("back on the previous release; the self-check passed")
        return restored
    }
}
