import Foundation

/// Root's state files (the install journal, the upgrade record, the first-admin marker): where they are, whether
/// root may believe them, and the move out of the service user's data directory where earlier releases kept them.
///
/// Root acts on these files (undo actions name paths, modes and owners; answers name files to read), so a file is
/// believed only when it and every directory above it belong to root and nobody else can write them. Under a staging
/// root (`--root`) there are no owners to check, and the walk stops at the staging directory.
public struct RootState: Sendable {
    public let system: any System
    public let layout: Layout

    public init(system: any System, layout: Layout) { self.system = system; self.layout = layout }

    /// The files earlier releases kept under `Paths.legacyInstallState`.
    static let files = ["journal.json", "upgrade.json", "admin-created"]

    /// The bytes of root's state file `target` (a host path under `Paths.installState`), or nil when there is none.
    /// Before the move, a trustworthy file at the old place is read instead (an untrustworthy one is as good as
    /// none). Throws when the file is in its place but someone other than root could have written it.
    public func read(_ target: String) throws -> Data? {
        let path = layout.path(target)
        if try system.info(path) != nil {
            try requireTrusted(path)
            return try system.read(path)
        }
        let old = layout.path(Self.legacy(target))
        guard try system.info(old) != nil, (try? requireTrusted(old, stopAt: layout.path(Paths.data))) != nil else { return nil }
        return try system.read(old)
    }

    /// Whether root's state file `target` exists (at its place, or trustworthy at the old one).
    public func exists(_ target: String) throws -> Bool {
        if try system.info(layout.path(target)) != nil { return true }
        return (try? read(target)) != nil
    }

    /// Throws unless `path` is a regular file (or `kind`) and it and every directory above it (up to `/`, the staging root, or
    /// `stopAt`, which is skipped) are root's and not writable by group or others.
    public func requireTrusted(_ path: String, kind: FileInfo.Kind = .file, stopAt: String? = nil) throws {
        var p = path
        var leaf = true
        while true {
            if p == stopAt {
                p = parent(p)
                continue
            }
            if layout.isStaging && (p == layout.root || !p.hasPrefix(layout.root + "/")) { return }
            guard let info = try system.info(p) else { throw untrusted(path, "\(p) is missing") }
            if leaf && info.kind != kind { throw untrusted(path, kind == .file ? "it is not a regular file" : "it is not a directory") }
            if !leaf && info.kind != .directory { throw untrusted(path, "\(p) is not a directory") }
            if info.mode & 0o022 != 0 { throw untrusted(path, "\(p) is writable by group or others") }
            if !layout.isStaging && info.owner?.user != "root" {
                throw untrusted(path, "\(p) belongs to \(info.owner?.description ?? "an unknown user"), not root")
            }
            if p == "/" { return }
            p = parent(p)
            leaf = false
        }
    }

    /// Moves root's state from the old place (inside the service user's data directory) to `Paths.installState`.
    /// Only files that only root could have written go, and only out of an old directory that is root's (then the
    /// service user cannot have changed anything inside it); the old directory is emptied name by name. Returns what
    /// it did, for the operator.
    @discardableResult
    public func migrate() throws -> [String] {
        let oldDir = layout.path(Paths.legacyInstallState)
        guard let info = try system.info(oldDir), info.kind == .directory else { return [] }
        let rootsOwn = layout.isStaging || info.owner?.user == "root"
        guard rootsOwn, info.mode & 0o022 == 0 else {
            return ["left \(oldDir) alone: it belongs to \(info.owner?.description ?? "someone else") (mode \(String(info.mode, radix: 8))), so nothing in it is trusted"]
        }
        let newDir = layout.path(Paths.installState)
        if try system.info(newDir) == nil {
            try system.makeDirectory(newDir, mode: 0o700, owner: layout.isStaging ? nil : .root)
        }
        try requireTrustedDirectory(newDir)
        var notes: [String] = []
        var movedBackups: [String] = []
        for name in Self.files {
            let old = "\(oldDir)/\(name)", new = "\(newDir)/\(name)"
            guard try system.info(old) != nil, try system.info(new) == nil else { continue }
            do { try requireTrusted(old, stopAt: layout.path(Paths.data)) } catch {
                notes.append("did not move \(old): \(error)")
                continue
            }
            var data = try system.read(old)
            if name == "journal.json" { (data, movedBackups) = try movingBackups(in: data, from: oldDir, to: newDir) }
            try system.write(new, data, mode: 0o600, owner: layout.isStaging ? nil : .root)
            notes.append("moved \(old) to \(new)")
        }
        // One name at a time (unlink, rmdir), never a recursive removal: this is the service user's tree.
        for name in Self.files { try? system.remove("\(oldDir)/\(name)") }
        for backup in movedBackups { try? system.remove(backup); try? system.remove(parent(backup)) }
        try? system.remove(oldDir + "/backup")
        if (try? system.remove(oldDir)) == nil || (try? system.info(oldDir)) != nil {
            notes.append("kept \(oldDir): it holds files this release does not know")
        }
        return notes
    }

    /// The undo backups of an interrupted run move with its journal.
    func movingBackups(in data: Data, from oldDir: String, to newDir: String) throws -> (Data, [String]) {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard var journal = try? decoder.decode(Journal.self, from: data) else { return (data, []) }
        var movedFrom: [String] = []
        let backups = layout.path(Paths.journalBackups)
        for i in journal.entries.indices {
            for j in journal.entries[i].undo.indices {
                guard case .restoreFile(let path, let backup, let mode, let owner) = journal.entries[i].undo[j],
                      backup.hasPrefix(oldDir + "/backup/") else { continue }
                let moved = backups + "/" + backup.dropFirst((oldDir + "/backup/").count)
                if try system.info(backup) != nil {
                    try requireTrusted(backup, stopAt: layout.path(Paths.data))
                    try system.makeDirectory(parent(moved), mode: 0o700, owner: nil)
                    try system.copy(from: backup, to: moved, mode: 0o600, owner: nil)
                    movedFrom.append(backup)
                }
                journal.entries[i].undo[j] = .restoreFile(path: path, backup: moved, mode: mode, owner: owner)
            }
        }
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try encoder.encode(journal) + Data("\n".utf8), movedFrom)
    }

    func requireTrustedDirectory(_ dir: String) throws { try requireTrusted(dir, kind: .directory) }

    static func legacy(_ target: String) -> String {
        target.hasPrefix(Paths.installState + "/")
            ? Paths.legacyInstallState + target.dropFirst(Paths.installState.count) : target
    }

    func parent(_ path: String) -> String {
        let p = (path as NSString).deletingLastPathComponent
        return p.isEmpty ? "/" : p
    }

    func untrusted(_ path: String, _ why: String) -> SystemError {
        SystemError("refusing \(path): \(why); root acts only on state that only root can write (move it away and run the command again)")
    }
}
