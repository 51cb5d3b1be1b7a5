import Foundation

/// How to take back one step of an interrupted run.
public enum UndoAction: Sendable, Equatable, Codable {
    case remove(path: String)
    /// A directory tree the run copied in whole (an embedded component).
    case removeTree(path: String)
    case restoreFile(path: String, backup: String, mode: UInt16, owner: Owner?)
    case restoreAttributes(path: String, mode: UInt16, owner: Owner?)
    case restoreLink(path: String, target: String)
    case service(ServiceAction)
    /// Not undone, and why (the system user, the first admin's account).
    case keep(String)
}

/// The record of the last install run, kept in /var/lib/warbler-install/journal.json (root's, see `RootState`): its inputs, every step of its
/// plan and how far it got, and how to undo each done step. The next run resumes an interrupted run (or undoes it
/// with `--undo`) from here, and inherits its answers.
public struct Journal: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable {
        case running, complete, failed, undone
    }
    public enum EntryStatus: String, Sendable, Codable {
        case pending, running, done, failed
    }
    public struct Entry: Sendable, Equatable, Codable {
        public var summary: String
        public var status: EntryStatus
        public var service: ServiceAction?
        public var undo: [UndoAction]
    }

    public var format = 1
    public var runID: String
    public var version: String
    public var state: State
    public var startedAt: Date
    public var finishedAt: Date?
    /// This run's answers (the lasting ones).
    public var inputs: InstallAnswers
    /// The answers of the last run that completed before this one: what `--undo` returns to.
    public var baseline: InstallAnswers?
    /// The server ports of this run's settings (for the port check of the next run).
    public var ports: [Int]
    public var entries: [Entry]
    public var error: String?

    public init(runID: String, version: String, state: State, startedAt: Date, finishedAt: Date? = nil, inputs: InstallAnswers,
                baseline: InstallAnswers? = nil, ports: [Int], entries: [Entry] = [], error: String? = nil) {
        self.runID = runID; self.version = version; self.state = state; self.startedAt = startedAt; self.finishedAt = finishedAt
        self.inputs = inputs; self.baseline = baseline; self.ports = ports; self.entries = entries; self.error = error
    }

    public var interrupted: Bool { state == .running || state == .failed }

    /// The answers the next run starts from.
    public var inheritedAnswers: InstallAnswers {
        state == .undone ? (baseline ?? InstallAnswers()) : inputs
    }

    /// The service work an interrupted run had not done yet.
    public var pendingWork: PendingWork {
        guard interrupted else { return PendingWork() }
        var p = PendingWork()
        for e in entries where e.status != .done {
            switch e.service {
            case .daemonReload?: p.daemonReload = true
            case .start(let u)?, .restart(let u)?: p.restarts.insert(u)
            default: break
            }
        }
        return p
    }

    /// The step an interrupted run stopped at.
    public var stoppedAt: String? {
        entries.first { $0.status == .running || $0.status == .failed }?.summary
            ?? entries.first { $0.status == .pending }?.summary
    }
}

/// Reads and writes the journal through a `System`.
public struct JournalStore: Sendable {
    public let system: any System
    public let layout: Layout

    public init(system: any System, layout: Layout) { self.system = system; self.layout = layout }

    public var path: String { layout.path(Paths.journal) }

    /// The journal, when there is one; throws when it is there but root did not write it (see `RootState`).
    public func load() throws -> Journal? {
        guard let data = try RootState(system: system, layout: layout).read(Paths.journal) else { return nil }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do { return try decoder.decode(Journal.self, from: data) } catch {
            throw SystemError("the install journal \(path) is unreadable (\(error)); move it away to start over")
        }
    }

    /// Writes the journal when its directory exists; before the plan has created it there is nothing to resume.
    /// Returns whether it was written.
    @discardableResult
    public func save(_ journal: Journal) throws -> Bool {
        guard try system.info(layout.path(Paths.installState))?.kind == .directory else { return false }
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try system.write(path, try encoder.encode(journal) + Data("\n".utf8), mode: 0o600, owner: nil)
        return true
    }
}
