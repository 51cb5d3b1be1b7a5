import Foundation

/// Evaluates expressions against a history at one instant.
public struct Evaluator: Sendable {
    enum Value {
        case scalar(Double)
        case vector([Element])
    }

    public let history: History
    public let time: Date

    public init(history: History, time: Date) {
        self.history = history
        self.time = time
    }

    /// The expression's result as an instant vector (a scalar result is an error the loader already rejects).
    public func vector(_ expr: Expr) -> [Element] {
        switch eval(expr) {
        case .vector(let v): return v
        case .scalar: return []
        }
    }

    func eval(_ e: Expr) -> Value {
        switch e {
        case .number(let n):
            return .scalar(n)
        case .selector(let s):
            return .vector(history.instant(s, at: time))
        case .range(let fn, let s, let window):
            return .vector(history.range(s, window: window, at: time).compactMap { series in
                Self.apply(fn, series.points.map { (t: $0.t, v: $0.v) }).map { Element(labels: Self.dropName(series.labels), value: $0) }
            })
        case .histogramQuantile(let q, let inner):
            guard case .vector(let v) = eval(inner) else { return .vector([]) }
            return .vector(Self.histogramQuantile(q, v))
        case .negate(let inner):
            switch eval(inner) {
            case .scalar(let n): return .scalar(-n)
            case .vector(let v): return .vector(v.map { Element(labels: Self.dropName($0.labels), value: -$0.value) })
            }
        case .binary(let op, let l, let r):
            return binary(op, eval(l), eval(r))
        }
    }

    static func dropName(_ l: Labels) -> Labels {
        var l = l
        l["__name__"] = nil
        return l
    }

    static func matchKey(_ l: Labels) -> String { History.key(dropName(l)) }

    /// rate and increase count a drop in a counter as a reset to zero; neither extrapolates past the first and
    /// last sample in the window. rate and increase need two samples, the *_over_time functions one.
    static func apply(_ fn: RangeFunction, _ points: [(t: Double, v: Double)]) -> Double? {
        switch fn {
        case .rate, .increase:
            guard points.count >= 2 else { return nil }
            var increase = 0.0
            for i in 1..<points.count {
                let d = points[i].v - points[i - 1].v
                increase += d >= 0 ? d : points[i].v
            }
            if fn == .increase { return increase }
            let span = points.last!.t - points.first!.t
            return span > 0 ? increase / span : nil
        case .avgOverTime: return points.map(\.v).reduce(0, +) / Double(points.count)
        case .minOverTime: return points.map(\.v).min()
        case .maxOverTime: return points.map(\.v).max()
        }
    }

    static func arithmetic(_ op: BinaryOp, _ a: Double, _ b: Double) -> Double {
        switch op {
        case .add: return a + b
        case .sub: return a - b
        case .mul: return a * b
        default: return a / b
        }
    }

    static func compare(_ op: BinaryOp, _ a: Double, _ b: Double) -> Bool {
        switch op {
        case .gt: return a > b
        case .lt: return a < b
        case .ge: return a >= b
        case .le: return a <= b
        case .eq: return a == b
        default: return a != b
        }
    }

    func binary(_ op: BinaryOp, _ l: Value, _ r: Value) -> Value {
        if op.isSet {
            guard case .vector(let lv) = l, case .vector(let rv) = r else { return .vector([]) }
            let rightKeys = Set(rv.map { Self.matchKey($0.labels) })
            switch op {
            case .and: return .vector(lv.filter { rightKeys.contains(Self.matchKey($0.labels)) })
            case .unless: return .vector(lv.filter { !rightKeys.contains(Self.matchKey($0.labels)) })
            default:
                let leftKeys = Set(lv.map { Self.matchKey($0.labels) })
                return .vector(lv + rv.filter { !leftKeys.contains(Self.matchKey($0.labels)) })
            }
        }
        switch (l, r) {
        case (.scalar(let a), .scalar(let b)):
            return .scalar(op.isComparison ? (Self.compare(op, a, b) ? 1 : 0) : Self.arithmetic(op, a, b))
        case (.vector(let v), .scalar(let b)):
            if op.isComparison { return .vector(v.filter { Self.compare(op, $0.value, b) }) }
            return .vector(v.map { Element(labels: Self.dropName($0.labels), value: Self.arithmetic(op, $0.value, b)) })
        case (.scalar(let a), .vector(let v)):
            if op.isComparison { return .vector(v.filter { Self.compare(op, a, $0.value) }) }
            return .vector(v.map { Element(labels: Self.dropName($0.labels), value: Self.arithmetic(op, a, $0.value)) })
        case (.vector(let lv), .vector(let rv)):
            // One-to-one matching: a left element pairs with the right element whose labels (apart from the
            // metric name) are identical; elements without a partner drop out.
            var right: [String: Double] = [:]
            for e in rv { right[Self.matchKey(e.labels)] = e.value }
            return .vector(lv.compactMap { e in
                guard let b = right[Self.matchKey(e.labels)] else { return nil }
                if op.isComparison { return Self.compare(op, e.value, b) ? e : nil }
                return Element(labels: Self.dropName(e.labels), value: Self.arithmetic(op, e.value, b))
            })
        }
    }

    /// Prometheus' histogram_quantile: series grouped by their labels apart from `le`; the quantile is found by
    /// linear interpolation inside the bucket that holds its rank (the lowest bucket interpolates from 0; a rank
    /// in the +Inf bucket answers the highest finite bound). A group without a +Inf bucket or with no
    /// observations gives no result.
    static func histogramQuantile(_ q: Double, _ v: [Element]) -> [Element] {
        var groups: [String: (labels: Labels, buckets: [(le: Double, count: Double)])] = [:]
        for e in v {
            guard let leText = e.labels["le"], let le = Exposition.parseValue(leText) else { continue }
            var labels = dropName(e.labels)
            labels["le"] = nil
            groups[History.key(labels), default: (labels, [])].buckets.append((le, e.value))
        }
        var out: [Element] = []
        for (_, g) in groups {
            let b = g.buckets.sorted { $0.le < $1.le }
            guard let last = b.last, last.le == .infinity, last.count > 0 else { continue }
            let rank = q * last.count
            guard let i = b.firstIndex(where: { $0.count >= rank }) else { continue }
            if b[i].le == .infinity {
                out.append(Element(labels: g.labels, value: b.count >= 2 ? b[b.count - 2].le : 0))
                continue
            }
            let lower = i == 0 ? 0 : b[i - 1].le
            let below = i == 0 ? 0 : b[i - 1].count
            let inBucket = b[i].count - below
            let value = inBucket > 0 ? lower + (b[i].le - lower) * (rank - below) / inBucket : b[i].le
            out.append(Element(labels: g.labels, value: value))
        }
        return out
    }
}
