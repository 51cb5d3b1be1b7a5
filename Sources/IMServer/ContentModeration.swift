import Foundation
import IMCore
import Logging
import Synchronization

/// The running server's word list (`moderation.words_file`): loaded at start, reloaded when the file changes (its
/// modification time, checked at most every `reload_seconds`) or when an admin asks. Applied to message text
/// before it is stored.
final class ContentModeration: Sendable {
    enum Verdict: Equatable { case pass(String), masked(String), blocked(word: String) }

    struct Loaded: Sendable {
        var filter = WordFilter([])
        var modified: Date?
        var loadedAt: Int64 = 0
        var checkedAt: ContinuousClock.Instant = .now
        var error: String?
    }

    let config: ServerConfig.Moderation
    let logger: Logger
    private let state = Mutex(Loaded())

    init(config: ServerConfig.Moderation, logger: Logger) {
        self.config = config; self.logger = logger
        guard !config.wordsFile.isEmpty else { return }
        do { _ = try reload() } catch {
            logger.error("content moderation: \(error); messages are not moderated until the file can be read")
        }
    }

    var enabled: Bool { !config.wordsFile.isEmpty }

    /// Reads the word list again; returns how many words it has. Throws (keeping the old list) when it cannot be read.
    @discardableResult
    func reload() throws -> Int {
        let path = config.wordsFile
        let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            let why = "cannot read moderation.words_file \(path) as UTF-8 text; check the path and that the server's user may read it"
            state.withLock { $0.error = why; $0.checkedAt = .now }
            throw IMError(.unavailable, why)
        }
        let filter = WordFilter(fileText: text)
        state.withLock { $0 = Loaded(filter: filter, modified: modified, loadedAt: nowMillis(), checkedAt: .now, error: nil) }
        logger.notice("content moderation: loaded \(filter.words.count) words from \(path) (action \(config.action.rawValue))")
        return filter.words.count
    }

    /// What the list is now, for the admin console.
    func status() -> API.ModerationStatus {
        state.withLock { s in
            API.ModerationStatus(enabled: enabled, action: config.action.rawValue, words: s.filter.words.count,
                                 loadedAt: s.loadedAt == 0 ? nil : s.loadedAt, error: s.error)
        }
    }

    /// The verdict on `text`: unchanged, masked, or blocked (with the word that blocked it).
    func check(_ text: String) -> Verdict {
        guard enabled else { return .pass(text) }
        reloadIfChanged()
        let filter = state.withLock { $0.filter }
        guard !filter.isEmpty else { return .pass(text) }
        switch config.action {
        case .block:
            if let word = filter.firstMatch(in: text) { return .blocked(word: word) }
            return .pass(text)
        case .mask:
            let masked = filter.masked(text)
            return masked == text ? .pass(text) : .masked(masked)
        }
    }

    private func reloadIfChanged() {
        let due = state.withLock { s -> Date?? in
            guard s.checkedAt.duration(to: .now) >= .seconds(config.reloadSeconds) else { return .none }
            s.checkedAt = .now
            return .some(s.modified)
        }
        guard case .some(let known) = due else { return }
        let modified = (try? FileManager.default.attributesOfItem(atPath: config.wordsFile))?[.modificationDate] as? Date
        guard modified != known else { return }
        do { try reload() } catch { logger.error("content moderation: \(error); keeping the previous list") }
    }
}
