import Foundation

/// One element of an instant vector.
public struct Element: Sendable, Equatable {
    public var labels: Labels
    public var value: Double

    public init(labels: Labels, value: Double) {
        self.labels = labels
        self.value = value
    }
}

/// Scraped samples kept in memory for as long as the longest rule window needs (plus the lookback).
///
/// Every series remembers which source (scrape target) wrote it: when a scrape of that source succeeds without
/// a series, or fails, the series gets a stale marker and stops answering instant selections at once.
public struct History: Sendable {
    struct Point: Sendable {
        var t: Double
        var v: Double
        var stale: Bool
    }
    struct Series: Sendable {
        var labels: Labels
        var points: [Point]
    }

    var series: [String: Series] = [:]
    var bySource: [String: Set<String>] = [:]
    /// How far back (seconds) range functions may look: the longest window of any rule.
    public var retention: Double
    /// How old (seconds) the newest sample of a series may be for an instant selection to still use it.
    public var lookback: Double

    public init(retention: Double, lookback: Double) {
        self.retention = retention
        self.lookback = lookback
    }

    static func key(_ labels: Labels) -> String {
        labels.sorted { $0.key < $1.key }.map { "\($0.key)\u{1}\($0.value)" }.joined(separator: "\u{0}")
    }

    /// Records one scrape of `source` taken at `time`; samples' own timestamps are ignored.
    public mutating func append(source: String, samples: [Sample], at time: Date) {
        let t = time.timeIntervalSince1970
        var seen = Set<String>()
        for s in samples {
            var labels = s.labels
            labels["__name__"] = s.name
            let k = Self.key(labels)
            seen.insert(k)
            series[k, default: Series(labels: labels, points: [])].points.append(Point(t: t, v: s.value, stale: false))
        }
        for k in bySource[source, default: []].subtracting(seen) {
            series[k]?.points.append(Point(t: t, v: .nan, stale: true))
        }
        bySource[source] = seen
        prune(before: t)
    }

    /// A failed scrape: every series of `source` goes stale.
    public mutating func markStale(source: String, at time: Date) {
        let t = time.timeIntervalSince1970
        for k in bySource[source, default: []] {
            series[k]?.points.append(Point(t: t, v: .nan, stale: true))
        }
        bySource[source] = []
        prune(before: t)
    }

    mutating func prune(before t: Double) {
        let horizon = t - retention - lookback
        for (k, s) in series {
            guard let first = s.points.first, first.t < horizon else { continue }
            let kept = s.points.filter { $0.t >= horizon }
            if kept.isEmpty || kept.allSatisfy(\.stale) { series[k] = nil } else { series[k]!.points = kept }
        }
    }

    /// The newest sample of each matching series at `time`, unless it is stale or older than the lookback.
    public func instant(_ selector: Selector, at time: Date) -> [Element] {
        let t = time.timeIntervalSince1970
        var out: [Element] = []
        for s in series.values where selector.matches(s.labels) {
            guard let p = s.points.last(where: { $0.t <= t }), !p.stale, t - p.t <= lookback else { continue }
            out.append(Element(labels: s.labels, value: p.v))
        }
        return out
    }

    /// The samples of each matching series inside (time - window, time], stale markers left out.
    func range(_ selector: Selector, window: Double, at time: Date) -> [(labels: Labels, points: [Point])] {
        let t = time.timeIntervalSince1970
        var out: [(labels: Labels, points: [Point])] = []
        for s in series.values where selector.matches(s.labels) {
            let pts = s.points.filter { !$0.stale && $0.t > t - window && $0.t <= t }
            if !pts.isEmpty { out.append((labels: s.labels, points: pts)) }
        }
        return out
    }

    /// How many series the history holds (for logs and tests).
    public var seriesCount: Int { series.count }
}
