import Alerting
import Foundation
import Testing

let t0 = Date(timeIntervalSince1970: 1_000_000)

func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

func eval(_ expr: String, _ h: History, at time: Date) throws -> [Element] {
    Evaluator(history: h, time: time).vector(try Expr.parse(expr))
}

func values(_ v: [Element], by label: String) -> [String: Double] {
    Dictionary(v.map { ($0.labels[label] ?? "", $0.value) }, uniquingKeysWith: { a, _ in a })
}

@Suite struct EvaluatorTests {
    @Test func rateAndIncreaseCountACounterResetAsARestartFromZero() throws {
        var h = History(retention: 300, lookback: 30)
        // 0, 10, 20, reset to 5, 15: the counter really went up by 10 + 10 + 5 + 10 = 35 in 40 s.
        for (i, v) in [0.0, 10, 20, 5, 15].enumerated() {
            h.append(source: "a", samples: [Sample(name: "c_total", labels: ["job": "j"], value: v)], at: at(Double(i) * 10))
        }
        let inc = try eval("increase(c_total[5m])", h, at: at(40))
        #expect(inc.count == 1 && inc[0].value == 35)
        #expect(inc[0].labels == ["job": "j"], "functions drop the metric name")
        let rate = try eval("rate(c_total[5m])", h, at: at(40))
        #expect(rate[0].value == 35.0 / 40)
        // A 25 s window holds only the samples at 20, 30 and 40 s: the reset then 10 more.
        #expect(try eval("increase(c_total[25s])", h, at: at(40))[0].value == 15)
        // One sample is not enough for a rate.
        #expect(try eval("rate(c_total[5s])", h, at: at(40)).isEmpty)
    }

    @Test func overTimeFunctionsReadOnlyTheWindow() throws {
        var h = History(retention: 60, lookback: 30)
        for (i, v) in [100.0, 1, 2, 3].enumerated() {
            h.append(source: "a", samples: [Sample(name: "g", value: v)], at: at(Double(i) * 10))
        }
        #expect(try eval("avg_over_time(g[25s])", h, at: at(30))[0].value == 2)
        #expect(try eval("max_over_time(g[25s])", h, at: at(30))[0].value == 3)
        #expect(try eval("min_over_time(g[1m])", h, at: at(30))[0].value == 1)
        #expect(try eval("max_over_time(g[1m])", h, at: at(30))[0].value == 100)
    }

    @Test func selectorsMatchLabelsWithEqualityAndAnchoredRegexes() throws {
        var h = History(retention: 0, lookback: 30)
        h.append(source: "a", samples: [
            Sample(name: "m", labels: ["mp": "/", "fs": "ext4"], value: 1),
            Sample(name: "m", labels: ["mp": "/var", "fs": "ext4"], value: 2),
            Sample(name: "m", labels: ["mp": "/run", "fs": "tmpfs"], value: 3),
            Sample(name: "other", labels: ["mp": "/"], value: 4),
        ], at: at(0))
        #expect(Set(try eval("m", h, at: at(1)).map { $0.labels["mp"]! }) == ["/", "/var", "/run"])
        #expect(try eval("m{mp=\"/\"}", h, at: at(1)).map(\.value) == [1])
        #expect(Set(try eval("m{fs!=\"tmpfs\"}", h, at: at(1)).map(\.value)) == [1, 2])
        #expect(Set(try eval("m{mp=~\"/v.*|/\"}", h, at: at(1)).map(\.value)) == [1, 2])
        #expect(try eval("m{mp=~\"/va\"}", h, at: at(1)).isEmpty, "regexes are anchored")
        #expect(Set(try eval("m{mp!~\"/r.*\", fs=\"ext4\"}", h, at: at(1)).map(\.value)) == [1, 2])
        #expect(try eval("m{missing=\"\"}", h, at: at(1)).count == 3, "a missing label matches the empty string")
    }

    @Test func comparisonsFilterAndArithmeticPairsIdenticalLabelSets() throws {
        var h = History(retention: 0, lookback: 30)
        h.append(source: "a", samples: [
            Sample(name: "avail", labels: ["mp": "/"], value: 5), Sample(name: "size", labels: ["mp": "/"], value: 100),
            Sample(name: "avail", labels: ["mp": "/var"], value: 15), Sample(name: "size", labels: ["mp": "/var"], value: 100),
            Sample(name: "avail", labels: ["mp": "/data"], value: 50), Sample(name: "size", labels: ["mp": "/data"], value: 100),
            Sample(name: "avail", labels: ["mp": "/lonely"], value: 1),
        ], at: at(0))
        let used = try eval("(1 - avail / size) * 100", h, at: at(1))
        #expect(values(used, by: "mp") == ["/": 95, "/var": 85, "/data": 50], "a series without a partner drops out")
        #expect(used.allSatisfy { $0.labels["__name__"] == nil })
        #expect(values(try eval("(1 - avail / size) * 100 >= 80 < 90", h, at: at(1)), by: "mp") == ["/var": 85])
        #expect(values(try eval("(1 - avail / size) * 100 >= 90", h, at: at(1)), by: "mp") == ["/": 95])
        #expect(values(try eval("avail > size", h, at: at(1)), by: "mp").isEmpty)
        #expect(values(try eval("avail < size / 10", h, at: at(1)), by: "mp") == ["/": 5])
        // A comparison keeps the left side's labels, name included.
        #expect(try eval("avail == 5", h, at: at(1)).first?.labels == ["__name__": "avail", "mp": "/"])
        #expect(values(try eval("10 < avail", h, at: at(1)), by: "mp") == ["/var": 15, "/data": 50, "/lonely": 1].filter { $0.value > 10 })
        #expect(try eval("-avail{mp=\"/\"} + 2 * 3", h, at: at(1)).first?.value == 1)
    }

    @Test func andOrUnlessMatchOnLabelsWithoutTheName() throws {
        var h = History(retention: 0, lookback: 30)
        h.append(source: "a", samples: [
            Sample(name: "a", labels: ["i": "1"], value: 1), Sample(name: "a", labels: ["i": "2"], value: 2),
            Sample(name: "b", labels: ["i": "2"], value: 20), Sample(name: "b", labels: ["i": "3"], value: 30),
        ], at: at(0))
        #expect(values(try eval("a and b", h, at: at(1)), by: "i") == ["2": 2])
        #expect(values(try eval("a unless b", h, at: at(1)), by: "i") == ["1": 1])
        #expect(values(try eval("a or b", h, at: at(1)), by: "i") == ["1": 1, "2": 2, "3": 30])
        #expect(values(try eval("a > 1 or b > 25 and b < 100", h, at: at(1)), by: "i") == ["2": 2, "3": 30])
    }

    @Test func seriesGoStaleWhenAScrapeLacksThemOrFails() throws {
        var h = History(retention: 0, lookback: 30)
        h.append(source: "a", samples: [Sample(name: "x", labels: ["k": "1"], value: 1), Sample(name: "x", labels: ["k": "2"], value: 2)], at: at(0))
        h.append(source: "b", samples: [Sample(name: "x", labels: ["k": "3"], value: 3)], at: at(0))
        h.append(source: "a", samples: [Sample(name: "x", labels: ["k": "1"], value: 1)], at: at(10))
        #expect(values(try eval("x", h, at: at(11)), by: "k") == ["1": 1, "3": 3])
        h.markStale(source: "b", at: at(12))
        #expect(values(try eval("x", h, at: at(13)), by: "k") == ["1": 1])
        // Older than the lookback: gone too.
        #expect(try eval("x", h, at: at(45)).isEmpty)
    }

    @Test func histogramQuantileInterpolatesInsideTheBucket() throws {
        var h = History(retention: 300, lookback: 30)
        func buckets(_ counts: [Double]) -> [Sample] {
            zip(["0.1", "0.5", "1", "+Inf"], counts).map { Sample(name: "lat_bucket", labels: ["le": $0.0, "job": "s"], value: $0.1) }
        }
        h.append(source: "a", samples: buckets([0, 0, 0, 0]), at: at(0))
        // 100 observations: 50 ≤ 0.1 s, 40 in (0.1, 0.5], 9 in (0.5, 1], 1 above.
        h.append(source: "a", samples: buckets([50, 90, 99, 100]), at: at(60))
        let p50 = try eval("histogram_quantile(0.5, rate(lat_bucket[5m]))", h, at: at(60))
        #expect(p50.count == 1 && abs(p50[0].value - 0.1) < 1e-9 && p50[0].labels == ["job": "s"])
        let p90 = try eval("histogram_quantile(0.9, rate(lat_bucket[5m]))", h, at: at(60))
        #expect(abs(p90[0].value - 0.5) < 1e-9)
        let p95 = try eval("histogram_quantile(0.95, rate(lat_bucket[5m]))", h, at: at(60))
        #expect(abs(p95[0].value - (0.5 + 0.5 * 5.0 / 9)) < 1e-9)
        #expect(try eval("histogram_quantile(0.999, rate(lat_bucket[5m]))", h, at: at(60))[0].value == 1)
        #expect(try eval("histogram_quantile(0.99, rate(lat_bucket[5m])) > 0.9", h, at: at(60)).count == 1)
    }

    @Test func parseErrorsGiveThePositionAndReason() {
        for (text, offset, reason) in [("rate(x)", 6, "needs a range"), ("x{a=\"b\"", 7, "expected ',' or '}'"), ("(x > 1", 6, "expected ')'"),
                                        ("x > 1 bool", 6, "unexpected 'bool'"), ("histogram_quantile(2, x)", 19, "between 0 and 1")] {
            do {
                _ = try Expr.parse(text)
                Issue.record("accepted \(text)")
            } catch let e as ExprError {
                #expect(e.offset == offset, "\(text): \(e)")
                #expect(e.reason.contains(reason), "\(text): \(e)")
            } catch { Issue.record("\(error)") }
        }
    }
}
