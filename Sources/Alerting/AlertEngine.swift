import AlertReceivers
import Foundation

public enum AlertStatus: String, Codable, Sendable {
    case pending, firing
}

/// An alert whose rule currently holds.
public struct ActiveAlert: Codable, Sendable, Equatable {
    public var fingerprint: String
    public var rule: String
    public var severity: Severity
    public var labels: Labels
    public var annotations: [String: String]
    public var value: Double
    public var status: AlertStatus
    /// When the expression started to hold (pending since).
    public var activeAt: Date
    public var firedAt: Date?
}

/// Suppresses notifications for alerts whose labels match every matcher between `startsAt` and `endsAt`.
public struct Silence: Codable, Sendable, Equatable {
    public var id: String
    public var matchers: [LabelMatcher]
    public var startsAt: Date
    public var endsAt: Date
    public var comment: String
    public var createdBy: String

    public init(id: String = UUID().uuidString.lowercased(), matchers: [LabelMatcher], startsAt: Date, endsAt: Date, comment: String, createdBy: String) {
        self.id = id
        self.matchers = matchers
        self.startsAt = startsAt
        self.endsAt = endsAt
        self.comment = comment
        self.createdBy = createdBy
    }

    public func isActive(at now: Date) -> Bool { startsAt <= now && now < endsAt }
    public func matches(_ labels: Labels) -> Bool { matchers.allSatisfy { $0.matches(labels) } }
}

/// A notification group: the alerts one route gathers under the same values of its group_by labels.
struct NotificationGroup: Codable, Sendable, Equatable {
    struct Resolved: Codable, Sendable, Equatable {
        var alert: ActiveAlert
        var endsAt: Date
    }
    var key: String
    var receivers: [String]
    var groupLabels: Labels
    var groupWait: Double
    /// Firing alerts the last notification carried: they are not announced again until the repeat interval.
    var sent: Set<String> = []
    /// When a firing alert the group has not announced first appeared (the group wait runs from here).
    var waitingSince: Date?
    var lastSent: Date?
    /// Announced alerts that resolved since the last notification.
    var resolved: [Resolved] = []
}

/// Everything alertd must remember across a restart.
public struct EngineState: Codable, Sendable, Equatable {
    public var alerts: [String: ActiveAlert] = [:]
    var groups: [String: NotificationGroup] = [:]
    public var silences: [Silence] = []

    public init() {}
}

/// A notification for one receiver.
public struct Outgoing: Sendable, Equatable {
    public var receiver: String
    public var notification: AlertNotification
}

/// An alert as `alerts list` and the control API show it.
public struct AlertView: Codable, Sendable, Equatable {
    public var fingerprint: String
    public var name: String
    public var severity: Severity
    /// `pending`, `firing`, or `suppressed` (firing, but a silence holds its notifications back).
    public var state: String
    public var labels: Labels
    public var annotations: [String: String]
    public var value: Double
    public var activeAt: Date
    public var firedAt: Date?
    /// The silences that match it.
    public var silencedBy: [String]
    /// Whether an inhibit rule mutes it (a firing alert it depends on is more severe).
    public var inhibited: Bool
}

/// The alert state machine, without I/O: rule results in, notifications out, the clock passed in.
///
/// inactive → pending (the expression holds) → firing (it held for the rule's `for`) → resolved (it no longer
/// holds; pending alerts just drop back to inactive). Firing alerts are routed into groups; a group notifies each of
/// its receivers after the group wait, when an announced alert resolves, and again every repeat interval.
public struct AlertEngine: Sendable {
    public var config: AlertsConfig
    public var state: EngineState
    /// When this process's history started (the first scrape after a start). Until a rule's longest window has
    /// passed since then, its range functions lack samples, so an alert of that rule missing from the results is
    /// kept rather than resolved: a restart must not resolve (and later re-announce) what is still wrong.
    public var warmUpStart: Date?

    public init(config: AlertsConfig, state: EngineState = EngineState()) {
        self.config = config
        self.state = state
    }

    /// Evaluates every rule against `history` at `now` and returns the notifications due.
    public mutating func evaluate(history: History, at now: Date) -> [Outgoing] {
        let evaluator = Evaluator(history: history, time: now)
        return apply(config.rules.map { (rule: $0, elements: evaluator.vector($0.expr)) }, at: now)
    }

    static func fingerprint(_ labels: Labels) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for (k, v) in labels.sorted(by: { $0.key < $1.key }) {
            for b in k.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            h = (h ^ 0xff) &* 0x100_0000_01b3
            for b in v.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            h = (h ^ 0xfe) &* 0x100_0000_01b3
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// Feeds each rule's result vector into the state machine.
    public mutating func apply(_ results: [(rule: Rule, elements: [Element])], at now: Date) -> [Outgoing] {
        var present = Set<String>()
        for (rule, elements) in results {
            for e in elements {
                var labels = Evaluator.dropName(e.labels)
                for (k, v) in rule.labels { labels[k] = v }
                labels["alertname"] = rule.name
                labels["severity"] = rule.severity.rawValue
                let fp = Self.fingerprint(labels)
                guard present.insert(fp).inserted else { continue }
                var annotations: [String: String] = [:]
                let s = rule.summary.render(labels: labels, value: e.value)
                let d = rule.description.render(labels: labels, value: e.value)
                if !s.isEmpty { annotations["summary"] = s }
                if !d.isEmpty { annotations["description"] = d }
                if var a = state.alerts[fp] {
                    a.value = e.value
                    a.annotations = annotations
                    if a.status == .pending && now.timeIntervalSince(a.activeAt) >= rule.forSeconds {
                        a.status = .firing
                        a.firedAt = now
                    }
                    state.alerts[fp] = a
                } else {
                    let fires = rule.forSeconds <= 0
                    state.alerts[fp] = ActiveAlert(fingerprint: fp, rule: rule.name, severity: rule.severity, labels: labels,
                                                   annotations: annotations, value: e.value, status: fires ? .firing : .pending,
                                                   activeAt: now, firedAt: fires ? now : nil)
                }
            }
        }
        var windows: [String: Double] = [:]
        for (rule, _) in results { windows["\(rule.name)/\(rule.severity.rawValue)"] = rule.expr.longestWindow }
        var resolvedNow: [NotificationGroup.Resolved] = []
        for (fp, a) in state.alerts where !present.contains(fp) {
            if let start = warmUpStart, let window = windows["\(a.rule)/\(a.severity.rawValue)"], now.timeIntervalSince(start) < window {
                continue
            }
            state.alerts[fp] = nil
            if a.status == .firing { resolvedNow.append(.init(alert: a, endsAt: now)) }
        }
        return notifications(resolvedNow, at: now)
    }

    func silences(for labels: Labels, at now: Date) -> [String] {
        state.silences.filter { $0.isActive(at: now) && $0.matches(labels) }.map(\.id)
    }

    /// Whether another firing alert mutes `labels` through an inhibit rule.
    func inhibited(_ labels: Labels, fingerprint: String, firing: [ActiveAlert]) -> Bool {
        config.inhibitRules.contains { rule in
            rule.target.allSatisfy { labels[$0.key] == $0.value } && firing.contains { source in
                source.fingerprint != fingerprint && rule.source.allSatisfy { source.labels[$0.key] == $0.value }
                    && rule.equal.allSatisfy { source.labels[$0] == labels[$0] }
            }
        }
    }

    func muted(_ labels: Labels, fingerprint: String, firing: [ActiveAlert], at now: Date) -> Bool {
        !silences(for: labels, at: now).isEmpty || inhibited(labels, fingerprint: fingerprint, firing: firing)
    }

    mutating func notifications(_ resolvedNow: [NotificationGroup.Resolved], at now: Date) -> [Outgoing] {
        // Silences that ended a day ago are forgotten.
        state.silences.removeAll { now.timeIntervalSince($0.endsAt) > 86400 }
        let firing = state.alerts.values.filter { $0.status == .firing }
        for r in resolvedNow where !muted(r.alert.labels, fingerprint: r.alert.fingerprint, firing: firing, at: now) {
            for key in state.groups.keys where state.groups[key]!.sent.contains(r.alert.fingerprint) {
                state.groups[key]!.resolved.append(r)
                state.groups[key]!.sent.remove(r.alert.fingerprint)
            }
        }
        var members: [String: [ActiveAlert]] = [:]
        for a in firing where !muted(a.labels, fingerprint: a.fingerprint, firing: firing, at: now) {
            for (i, route) in config.routes.enumerated() where route.matches(a.labels, severity: a.severity) {
                var groupLabels: Labels = [:]
                for l in route.groupBy { if let v = a.labels[l] { groupLabels[l] = v } }
                let key = "route\(i + 1):{" + groupLabels.sorted { $0.key < $1.key }.map { "\($0.key)=\"\($0.value)\"" }.joined(separator: ",") + "}"
                members[key, default: []].append(a)
                if state.groups[key] == nil {
                    state.groups[key] = NotificationGroup(key: key, receivers: route.receivers, groupLabels: groupLabels, groupWait: route.groupWait)
                }
                if !route.continueMatching { break }
            }
        }
        let firingIDs = Set(firing.map(\.fingerprint))
        var out: [Outgoing] = []
        for key in state.groups.keys.sorted() {
            var g = state.groups[key]!
            let current = (members[key] ?? []).sorted { ($0.activeAt, $0.fingerprint) < ($1.activeAt, $1.fingerprint) }
            let fresh = current.filter { !g.sent.contains($0.fingerprint) }
            if fresh.isEmpty { g.waitingSince = nil } else if g.waitingSince == nil { g.waitingSince = now }
            let repeatEvery = current.map { config.repeatInterval[$0.severity] ?? 3600 }.min() ?? .infinity
            let waited = g.waitingSince.map { now.timeIntervalSince($0) >= g.groupWait } ?? false
            let repeatDue = !current.isEmpty && g.lastSent.map { now.timeIntervalSince($0) >= repeatEvery } ?? false
            if waited || !g.resolved.isEmpty || repeatDue {
                let n = Self.notification(group: g, firing: current, externalURL: config.externalURL)
                out += g.receivers.map { r in
                    var n = n
                    n.receiver = r
                    return Outgoing(receiver: r, notification: n)
                }
                g.sent = g.sent.intersection(firingIDs).union(current.map(\.fingerprint))
                g.resolved = []
                g.waitingSince = nil
                g.lastSent = now
            }
            g.sent = g.sent.intersection(firingIDs)
            if current.isEmpty && g.resolved.isEmpty && g.sent.isEmpty { state.groups[key] = nil } else { state.groups[key] = g }
        }
        return out
    }

    static func notification(group g: NotificationGroup, firing: [ActiveAlert], externalURL: String) -> AlertNotification {
        func payload(_ a: ActiveAlert, _ endsAt: Date?) -> AlertNotification.Alert {
            .init(status: endsAt == nil ? "firing" : "resolved", labels: a.labels, annotations: a.annotations, startsAt: a.activeAt,
                  endsAt: endsAt, generatorURL: externalURL, fingerprint: a.fingerprint)
        }
        let alerts = firing.map { payload($0, nil) } + g.resolved.map { payload($0.alert, $0.endsAt) }
        func common(_ maps: [[String: String]]) -> [String: String] {
            guard var c = maps.first else { return [:] }
            for m in maps.dropFirst() { c = c.filter { m[$0.key] == $0.value } }
            return c
        }
        return AlertNotification(groupKey: g.key, status: firing.isEmpty ? "resolved" : "firing", receiver: g.receivers.first ?? "",
                                 groupLabels: g.groupLabels, commonLabels: common(alerts.map(\.labels)),
                                 commonAnnotations: common(alerts.map(\.annotations)), externalURL: externalURL, alerts: alerts)
    }

    /// Every pending and firing alert, most severe first; silenced and inhibited ones are listed as `suppressed`.
    public func alerts(at now: Date) -> [AlertView] {
        let firing = state.alerts.values.filter { $0.status == .firing }
        return state.alerts.values.map { a in
            let silenced = silences(for: a.labels, at: now)
            let isInhibited = a.status == .firing && inhibited(a.labels, fingerprint: a.fingerprint, firing: firing)
            let muted = !silenced.isEmpty || isInhibited
            return AlertView(fingerprint: a.fingerprint, name: a.rule, severity: a.severity,
                             state: a.status == .pending ? "pending" : (muted ? "suppressed" : "firing"),
                             labels: a.labels, annotations: a.annotations, value: a.value, activeAt: a.activeAt, firedAt: a.firedAt,
                             silencedBy: silenced, inhibited: isInhibited)
        }.sorted { ($1.severity, $0.name, $0.fingerprint) < ($0.severity, $1.name, $1.fingerprint) }
    }

    public mutating func addSilence(_ s: Silence) { state.silences.append(s) }

    /// Removes the silence `id`; false when there is none.
    public mutating func removeSilence(_ id: String) -> Bool {
        let before = state.silences.count
        state.silences.removeAll { $0.id == id }
        return state.silences.count != before
    }
}
