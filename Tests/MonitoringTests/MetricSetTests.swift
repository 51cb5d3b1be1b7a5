import Foundation
@testable import Monitoring
import Testing

enum Repo {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let fixtures = root + "/Tests/MonitoringTests/Fixtures"
}

@Suite struct MetricSetTests {
    static let g = MetricDescriptor("test_gauge", .gauge, "A gauge\nwith a second line and a back\\slash", labels: ["path"])
    static let c = MetricDescriptor("test_total", .counter, "A counter")

    @Test func familiesGetOneHelpAndTypeLineEachAndComeOutSortedByName() {
        var s = MetricSet()
        s.add(Self.g, ["path": "/b"], 2)
        s.add(Self.c, 7)
        s.add(Self.g, ["path": "/a"], 1.5)
        #expect(s.render() == """
            # HELP test_gauge A gauge\\nwith a second line and a back\\\\slash
            # TYPE test_gauge gauge
            test_gauge{path="/b"} 2
            test_gauge{path="/a"} 1.5
            # HELP test_total A counter
            # TYPE test_total counter
            test_total 7

            """)
    }

    @Test func labelValuesEscapeBackslashQuoteAndNewline() {
        var s = MetricSet()
        s.add(Self.g, ["path": "C:\\dir \"quoted\"\nnext"], 1)
        #expect(s.render().contains(#"test_gauge{path="C:\\dir \"quoted\"\nnext"} 1"#))
    }

    @Test func labelsAreSortedByName() {
        var s = MetricSet()
        s.add(MetricDescriptor("x", .gauge, "x"), ["z": "1", "a": "2", "m": "3"], 0)
        #expect(s.render().contains(#"x{a="2",m="3",z="1"} 0"#))
    }

    @Test func aDuplicateSeriesKeepsTheFirstValueAndIsReported() {
        var s = MetricSet()
        s.add(Self.g, ["path": "/"], 1)
        s.add(Self.g, ["path": "/"], 2)
        s.add(Self.g, ["path": "/x"], 3)
        let lines = s.render().split(separator: "\n").filter { $0.hasPrefix("test_gauge{") }
        #expect(lines == [#"test_gauge{path="/"} 1"#, #"test_gauge{path="/x"} 3"#])
        #expect(s.problems.count == 1 && s.problems[0].contains("duplicate series"))
    }

    @Test func aNameReusedWithAnotherTypeAndBadNamesAreRefused() {
        var s = MetricSet()
        s.add(MetricDescriptor("dual", .gauge, "g"), 1)
        s.add(MetricDescriptor("dual", .counter, "c"), 2)
        s.add(MetricDescriptor("9bad", .gauge, "b"), 1)
        s.add(MetricDescriptor("bad-name", .gauge, "b"), 1)
        s.add(MetricDescriptor("good", .gauge, "b"), ["bad-label": "x"], 1)
        s.add(MetricDescriptor("good", .gauge, "b"), ["__reserved": "x"], 1)
        #expect(s.names == ["dual"])
        #expect(s.problems.count == 5)
        #expect(s.render().contains("# TYPE dual gauge\ndual 1\n"))
    }

    @Test func valuesUseThePrometheusSpellings() {
        #expect(MetricSet.format(42) == "42")
        #expect(MetricSet.format(-3) == "-3")
        #expect(MetricSet.format(0.25) == "0.25")
        #expect(MetricSet.format(.infinity) == "+Inf")
        #expect(MetricSet.format(-.infinity) == "-Inf")
        #expect(MetricSet.format(.nan) == "NaN")
        #expect(Double(MetricSet.format(1.5e20)) == 1.5e20)
        #expect(Double(MetricSet.format(1.0 / 3)) == 1.0 / 3)
    }

    @Test func mergingKeepsEverySeriesOnce() {
        var a = MetricSet(), b = MetricSet()
        a.add(Self.g, ["path": "/a"], 1)
        b.add(Self.g, ["path": "/a"], 9)
        b.add(Self.g, ["path": "/b"], 2)
        a.merge(b)
        #expect(a.value("test_gauge", ["path": "/a"]) == 1)
        #expect(a.value("test_gauge", ["path": "/b"]) == 2)
        #expect(a.problems.count == 1)
    }

    /// Every line of a rendered set is a comment or `name{labels} value`, with no series twice.
    static func checkExposition(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        var series: Set<String> = []
        var typed: Set<String> = []
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let name = String(line.split(separator: " ")[2])
                #expect(typed.insert(name).inserted, "two TYPE lines for \(name)", sourceLocation: sourceLocation)
                continue
            }
            if line.hasPrefix("#") { continue }
            guard let space = line.lastIndex(of: " ") else {
                Issue.record("not a sample line: \(line)", sourceLocation: sourceLocation)
                continue
            }
            let key = String(line[..<space])
            let value = line[line.index(after: space)...]
            #expect(Double(value) != nil || ["+Inf", "-Inf", "NaN"].contains(value), "bad value in \(line)", sourceLocation: sourceLocation)
            #expect(series.insert(key).inserted, "duplicate series \(key)", sourceLocation: sourceLocation)
            let name = String(key.prefix { $0 != "{" })
            #expect(typed.contains(name), "\(name) has no TYPE line before it", sourceLocation: sourceLocation)
        }
    }
}
