import DurableFiles
import Foundation
import IMCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Persists the per-conversation cursors (highest seq received) of an ``IMConnection``.
///
/// The connection keeps the cursors in memory and hands the store the latest snapshot after messages
/// arrive; saves are coalesced (while one save runs, newer changes wait for the next one), so a store
/// sees every cursor it needs without one write per message under load.
public protocol CursorStore: Sendable {
    /// Returns the saved cursors (empty when nothing was saved yet).
    func load() async throws -> [ConversationID: Int64]
    /// Replaces the saved cursors with `cursors`.
    func save(_ cursors: [ConversationID: Int64]) async throws
}

/// A ``CursorStore`` that keeps cursors in memory only (every new process syncs from the beginning).
public actor InMemoryCursorStore: CursorStore {
    private var cursors: [ConversationID: Int64]

    /// Creates a store holding `initial`.
    public init(_ initial: [ConversationID: Int64] = [:]) { self.cursors = initial }

    /// Returns the stored cursors.
    public func load() -> [ConversationID: Int64] { cursors }

    /// Replaces the stored cursors.
    public func save(_ cursors: [ConversationID: Int64]) { self.cursors = cursors }
}

/// A ``CursorStore`` that keeps cursors in a JSON file (`{"<conversationId>": seq, …}`), replaced
/// atomically on every save by writing a temporary file in the same directory and renaming it over the old one.
public actor FileCursorStore: CursorStore {
    /// The file's path.
    public nonisolated let path: String

    /// Creates a store for the file at `path` (created on the first save; its directory must exist).
    public init(path: String) { self.path = path }

    /// Reads the file; a missing file means no cursors. Throws `IMError(.internal)` for an unreadable file.
    public func load() throws -> [ConversationID: Int64] {
        guard FileManager.default.fileExists(atPath: path) else { return [:] }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            let raw = try JSONDecoder().decode([String: Int64].self, from: data)
            var cursors: [ConversationID: Int64] = [:]
            for (key, seq) in raw {
                guard let id = ConversationID(key) else { continue }
                cursors[id] = seq
            }
            return cursors
        } catch {
            throw IMError(.internal, "cannot read cursor file '\(path)': \(error)")
        }
    }

    /// Writes the cursors to a temporary file and renames it over `path`.
    public func save(_ cursors: [ConversationID: Int64]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let raw = Dictionary(uniqueKeysWithValues: cursors.map { (String($0.key), $0.value) })
        do {
            try AtomicFile.write(try encoder.encode(raw), to: path, mode: 0o644)
        } catch {
            throw IMError(.internal, "cannot write cursor file '\(path)': \(error)")
        }
    }
}
