import Foundation

/// Applies a plan step by step, journaling each step before and after it runs.
public struct Applier: Sendable {
    public let system: any System
    public let store: JournalStore

    public init(system: any System, store: JournalStore) { self.system = system; self.store = store }

    /// Runs every step in order; on failure the journal says where it stopped and the error says how to go on.
    public func apply(_ plan: Plan, journal initial: Journal, progress: @Sendable (String) -> Void = { _ in }) throws -> Journal {
        var journal = initial
        journal.entries = plan.steps.map { Journal.Entry(summary: $0.summary, status: .pending, service: $0.serviceAction, undo: []) }
        journal.state = .running
        try store.save(journal)
        let backups = store.layout.path(Paths.journalBackups) + "/" + journal.runID

        for (i, step) in plan.steps.enumerated() {
            progress(step.summary)
            do {
                journal.entries[i].undo = try undoActions(for: step, index: i, backups: backups)
                journal.entries[i].status = .running
                try store.save(journal)
                try execute(step)
                journal.entries[i].status = .done
                try store.save(journal)
            } catch {
                journal.entries[i].status = .failed
                journal.state = .failed
                journal.error = "\(error)"
                journal.finishedAt = system.now()
                _ = try? store.save(journal)
                throw ApplyError(step: step.summary, underlying: "\(error)")
            }
        }
        journal.state = .complete
        journal.finishedAt = system.now()
        try store.save(journal)
        // A completed run has nothing to undo: its backups go.
        if try system.info(backups) != nil {
            for e in journal.entries { for case .restoreFile(_, let b, _, _) in e.undo { try? system.remove(b) } }
            try? system.remove(backups)
        }
        return journal
    }

    func execute(_ step: Step) throws {
        switch step {
        case .createUser(let name, let home):
            try system.createSystemUser(name, home: home)
        case .createDirectory(let path, let mode, let owner):
            try system.makeDirectory(path, mode: mode, owner: owner)
            // makeDirectory may have met a umask; the step promises the mode.
            try system.setAttributes(path, mode: mode, owner: owner)
        case .writeFile(let path, let content, let mode, let owner, _, _):
            switch content {
            case .bytes(let data): try system.write(path, data, mode: mode, owner: owner)
            case .copy(let source, let hash):
                try system.copy(from: source, to: path, mode: mode, owner: owner)
                guard try system.sha256(path) == hash else {
                    throw SystemError("\(path) does not match \(source) after copying (the source changed during the install?)")
                }
            }
        case .setAttributes(let path, let mode, let owner):
            try system.setAttributes(path, mode: mode, owner: owner)
        case .link(let path, let target, _):
            try system.symlink(path, to: target)
        case .service(let action, _):
            try system.perform(action)
        case .runOnce(let command):
            let result = try system.run(command.argv, as: command.user)
            guard result.status == 0 else {
                throw SystemError("\(command.name) failed (exit \(result.status)): \(result.output.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            try system.write(command.marker, Data((result.output.isEmpty ? "done\n" : result.output).utf8), mode: 0o600, owner: nil)
        case .installTree(let tree):
            // Copied beside its place, marked, then renamed in: a tree is either whole or absent.
            let staging = tree.path + ".partial"
            try system.removeTree(staging)
            let copied = try system.run(["cp", "-R", "--preserve=mode,timestamps", "--no-dereference", tree.source, staging], as: nil)
            guard copied.status == 0 else {
                throw SystemError("cannot copy \(tree.label) into \(staging): \(copied.output.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            try system.write(staging + "/" + DesiredState.Tree.markerName, Data((tree.digest + "\n").utf8), mode: 0o644, owner: nil)
            try system.removeTree(tree.path)
            let moved = try system.run(["mv", "-T", staging, tree.path], as: nil)
            guard moved.status == 0 else { throw SystemError("cannot move \(staging) to \(tree.path): \(moved.output)") }
        }
    }

    /// Captured before the step runs, so that even a step cut off halfway can be taken back.
    func undoActions(for step: Step, index: Int, backups: String) throws -> [UndoAction] {
        switch step {
        case .createUser(let name, _):
            return [.keep("the system user \(name) stays (userdel \(name) removes it)")]
        case .createDirectory(let path, _, _):
            // The directory and each parent it brings into being, deepest first.
            var created: [UndoAction] = []
            var p = path
            while p != "/", !p.isEmpty, try system.info(p) == nil {
                created.append(.remove(path: p))
                p = (p as NSString).deletingLastPathComponent
            }
            return created
        case .writeFile(let path, _, _, _, _, _):
            guard let info = try system.info(path) else { return [.remove(path: path)] }
            try system.makeDirectory(backups, mode: 0o700, owner: nil)
            let backup = "\(backups)/\(index)"
            try system.copy(from: path, to: backup, mode: 0o600, owner: nil)
            return [.restoreFile(path: path, backup: backup, mode: info.mode, owner: info.owner)]
        case .setAttributes(let path, _, _):
            guard let info = try system.info(path) else { return [] }
            return [.restoreAttributes(path: path, mode: info.mode, owner: info.owner)]
        case .link(let path, _, _):
            guard let info = try system.info(path), let old = info.linkTarget else { return [.remove(path: path)] }
            return [.restoreLink(path: path, target: old)]
        case .service(let action, _):
            switch action {
            case .daemonReload: return [.service(.daemonReload)]
            case .enable(let u): return [.service(.disable(u))]
            case .disable(let u): return [.service(.enable(u))]
            case .start(let u): return [.service(.stop(u))]
            case .stop(let u): return [.service(.start(u))]
            case .restart(let u): return [.service(.restart(u))]
            }
        case .runOnce(let command):
            return [.keep("\(command.name): done once, kept")]
        case .installTree(let tree):
            return [.removeTree(path: tree.path)]
        }
    }
}

/// Takes back the done steps of an interrupted run.
public struct Undoer: Sendable {
    public let system: any System
    public let store: JournalStore

    public init(system: any System, store: JournalStore) { self.system = system; self.store = store }

    /// Stops and disables what the run started, restores files, links and attributes, then reloads and restarts
    /// what it had restarted so they run the restored files. Returns what it did and what it kept.
    public func undo(_ initial: Journal) throws -> (journal: Journal, report: [String]) {
        guard initial.interrupted else {
            throw SystemError("the last install run \(initial.state == .undone ? "was already undone" : "completed"); there is nothing to undo")
        }
        var journal = initial
        var first: [UndoAction] = [], files: [UndoAction] = [], reload = false, restarts: [String] = []
        for entry in journal.entries.reversed() where entry.status != .pending {
            for action in entry.undo {
                switch action {
                case .service(.daemonReload): reload = true
                case .service(.restart(let u)): if !restarts.contains(u) { restarts.append(u) }
                case .service: first.append(action)
                default: files.append(action)
                }
            }
        }
        // All or nothing: a journal asking for anything outside the install is refused before anything changes.
        for action in first + files { try confine(action) }
        var report: [String] = []
        for action in first + files {
            report.append(try perform(action))
        }
        if reload { try system.perform(.daemonReload); report.append("daemon-reload") }
        for u in restarts { try system.perform(.restart(u)); report.append("restart \(u)") }
        journal.state = .undone
        journal.finishedAt = system.now()
        try store.save(journal)
        return (journal, report)
    }

    /// The paths an install manages (as this process sees them): only these are removed, restored or relinked.
    var managedRoots: [String] {
        ([Paths.etc, Paths.opt, Paths.data, Paths.installState, Paths.logs, Paths.run, Paths.binLink,
          ClusterPaths.etcdData, ClusterPaths.postgresHome, ClusterPaths.haproxyState]
            + Paths.unitNames.map(Paths.unitFile)).map(store.layout.path)
    }

    func isManaged(_ path: String) -> Bool {
        guard !path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else { return false }
        return managedRoots.contains { path == $0 || path.hasPrefix($0 + "/") }
    }

    /// A directory above a managed path (`/opt` on a host that had none): removing it is an rmdir, which only
    /// succeeds when it is empty.
    func isManagedParent(_ path: String) -> Bool {
        !path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." })
            && managedRoots.contains { $0.hasPrefix(path.hasSuffix("/") ? path : path + "/") }
    }

    /// Throws unless `action` stays inside what the install manages: its paths, its units, modes without
    /// setuid/setgid/sticky bits, owners among root and the service user, backups in root's state directory, links
    /// into /opt/warbler.
    func confine(_ action: UndoAction) throws {
        func refuse(_ why: String) -> SystemError {
            SystemError("the install journal asks to \(why), outside what Warbler installs; nothing was undone (move \(store.path) away)")
        }
        func check(_ path: String, _ mode: UInt16, _ owner: Owner?) throws {
            guard isManaged(path) else { throw refuse("change \(path)") }
            guard mode & 0o7000 == 0 else { throw refuse("give \(path) mode \(String(mode, radix: 8))") }
            let allowed: Set<String> = ["root", Blueprint.user, ClusterPaths.etcdUser, ClusterPaths.postgresUser, ClusterPaths.haproxyUser]
            if let owner, !allowed.contains(owner.user) || !allowed.contains(owner.group) {
                throw refuse("give \(path) to \(owner)")
            }
        }
        switch action {
        case .remove(let path):
            let isDirectory = (try system.info(path))?.kind ?? .directory == .directory
            guard isManaged(path) || (isManagedParent(path) && isDirectory) else { throw refuse("remove \(path)") }
        case .restoreFile(let path, let backup, let mode, let owner):
            try check(path, mode, owner)
            let backups = store.layout.path(Paths.journalBackups)
            guard backup.hasPrefix(backups + "/"), !backup.split(separator: "/").contains("..") else {
                throw refuse("copy \(backup) over \(path)")
            }
        case .restoreAttributes(let path, let mode, let owner):
            try check(path, mode, owner)
        case .restoreLink(let path, let target):
            guard isManaged(path) else { throw refuse("point \(path) at \(target)") }
            let inside = !target.split(separator: "/").contains("..")
                && (target.hasPrefix("/") ? target.hasPrefix(Paths.opt + "/") : path.hasPrefix(store.layout.path(Paths.opt) + "/"))
            guard inside else { throw refuse("point \(path) at \(target)") }
        case .service(let a):
            if let unit = a.unit, !Paths.unitNames.contains(unit) { throw refuse("\(a)") }
        case .removeTree(let path):
            // Only a release's embedded component, which the run copied in whole.
            guard isManaged(path), path.hasPrefix(store.layout.path(Paths.releases) + "/"), path.contains("/embedded/") else {
                throw refuse("remove the tree \(path)")
            }
        case .keep:
            break
        }
    }

    func perform(_ action: UndoAction) throws -> String {
        switch action {
        case .remove(let path):
            do { try system.remove(path) } catch {
                // A directory that holds something this run did not make (the journal itself) stays.
                guard try system.info(path)?.kind == .directory else { throw error }
                return "kept \(path): not empty"
            }
            return "removed \(path)"
        case .removeTree(let path):
            try system.removeTree(path)
            try system.removeTree(path + ".partial")
            return "removed \(path)"
        case .restoreFile(let path, let backup, let mode, let owner):
            try system.copy(from: backup, to: path, mode: mode, owner: owner)
            try system.remove(backup)
            return "restored \(path)"
        case .restoreAttributes(let path, let mode, let owner):
            try system.setAttributes(path, mode: mode, owner: owner)
            return "restored the mode and owner of \(path)"
        case .restoreLink(let path, let target):
            try system.symlink(path, to: target)
            return "pointed \(path) back at \(target)"
        case .service(let a):
            try system.perform(a)
            return "\(a)"
        case .keep(let why):
            return "kept: \(why)"
        }
    }
}

/// A step failed; the journal records where, so the next run resumes or undoes.
public struct ApplyError: Error, CustomStringConvertible, Sendable, Equatable {
    public var step: String
    public var underlying: String
    public var description: String {
        "\(step) failed: \(underlying)\nFix the cause and run `warbler install` again to resume, or `warbler install --undo` to revert this run."
    }
}
