import AlertReceivers
import Foundation
import Logging

/// alertd's shared state: the sample history, the engine, and its persisted copy.
public actor AlertService {
    public private(set) var engine: AlertEngine
    var history: History
    let store: StateStore
    let deliver: @Sendable (AlertNotification, String) async -> Void
    let logger: Logger
    /// When the last evaluation finished (the watchdog checks the loop is alive).
    public private(set) var lastEvaluation: Date?

    /// Loads the persisted state from the config's state file.
    public init(config: AlertsConfig, deliver: @escaping @Sendable (AlertNotification, String) async -> Void, logger: Logger) throws {
        store = StateStore(path: config.stateFile)
        let state = try store.load()
        engine = AlertEngine(config: config, state: state)
        history = History(retention: config.retention, lookback: config.lookback)
        self.deliver = deliver
        self.logger = logger
    }

    /// Marks a finished round of scrapes; evaluations wait for the first (with no samples yet every alert would
    /// look resolved), and the range rules' warm-up runs from it.
    public func scrapeRoundFinished(at time: Date) {
        if engine.warmUpStart == nil { engine.warmUpStart = time }
    }

    public func ingest(_ result: ScrapeResult, at time: Date) {
        if let error = result.error { logger.warning("scrape failed: \(error)", metadata: ["alertd.target": "\(result.target.job)"]) }
        history.append(source: result.target.url, samples: result.samples, at: time)
    }

    /// Evaluates every rule, sends what is due, and saves the state when it changed.
    public func evaluate(at now: Date) async {
        guard engine.warmUpStart != nil || engine.config.targets.isEmpty else { return }
        let before = engine.state
        let out = engine.evaluate(history: history, at: now)
        for o in out {
            logger.info("notifying \(o.receiver): \(o.notification.status) \(o.notification.groupKey) (\(o.notification.alerts.count) alerts)")
            await deliver(o.notification, o.receiver)
        }
        if engine.state != before { persist() }
        lastEvaluation = now
    }

    func persist() {
        do { try store.save(engine.state) } catch { logger.error("\(error)") }
    }

    public func alerts(at now: Date = Date()) -> [AlertView] { engine.alerts(at: now) }

    public func silences() -> [Silence] { engine.state.silences }

    public func addSilence(_ s: Silence) {
        engine.addSilence(s)
        persist()
    }

    /// Adds `s` unless `limit` silences are active at `now`; false when refused. Silences that ended more than a day
    /// ago are dropped first, so the state file does not grow without end.
    public func addSilence(_ s: Silence, limit: Int, now: Date = Date()) -> Bool {
        let before = engine.state.silences.count
        engine.state.silences.removeAll { $0.endsAt < now.addingTimeInterval(-86400) }
        guard engine.state.silences.filter({ $0.endsAt > now }).count < limit else {
            if engine.state.silences.count != before { persist() }
            return false
        }
        addSilence(s)
        return true
    }

    public func removeSilence(_ id: String) -> Bool {
        let removed = engine.removeSilence(id)
        if removed { persist() }
        return removed
    }

    public func save() { persist() }
}
