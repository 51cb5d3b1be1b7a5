import Alerting
import Testing

@Suite struct ExpositionTests {
    @Test func parsesSamplesLabelsEscapesCommentsSpecialValuesAndTimestamps() throws {
        let text = """
        # HELP node_filesystem_avail_bytes Free space.
        # TYPE node_filesystem_avail_bytes gauge
        node_filesystem_avail_bytes{mountpoint="/",fstype="ext4"} 1.5e9
        weird{path="C:\\\\dir",quote="say \\"hi\\"",nl="a\\nb",} 3 1700000000000

        up 1
        nan_metric NaN
        inf_metric{le="+Inf"} +Inf
        neg_metric -Inf
          spaced_metric  { a = "b" }   42
        """
        let s = try Exposition.parse(text)
        #expect(s.count == 7)
        #expect(s[0] == Sample(name: "node_filesystem_avail_bytes", labels: ["mountpoint": "/", "fstype": "ext4"], value: 1.5e9))
        #expect(s[1].labels == ["path": "C:\\dir", "quote": "say \"hi\"", "nl": "a\nb"])
        #expect(s[1].timestamp == 1_700_000_000_000)
        #expect(s[2] == Sample(name: "up", value: 1))
        #expect(s[3].value.isNaN)
        #expect(s[4].value == .infinity && s[4].labels["le"] == "+Inf")
        #expect(s[5].value == -.infinity)
        #expect(s[6] == Sample(name: "spaced_metric", labels: ["a": "b"], value: 42))
    }

    @Test(arguments: [
        ("ok 1\nbad{a=\"b\" 1", 2, "expected , or }"),
        ("m{a=b} 1", 1, "quoted value"),
        ("m 1\n\nm abc", 3, "not a number"),
        ("m{a=\"x\"}", 1, "has no value"),
        ("m 1 12.5", 1, "timestamp"),
        ("m{a=\"\\q\"} 1", 1, "unknown escape"),
        ("m{a=\"1\",a=\"2\"} 1", 1, "appears twice"),
        ("9lives 1", 1, "metric name"),
    ])
    func rejectsMalformedLinesWithTheirLineNumber(text: String, line: Int, reason: String) {
        do {
            _ = try Exposition.parse(text)
            Issue.record("accepted \(text)")
        } catch let e as ExpositionError {
            #expect(e.line == line)
            #expect(e.reason.contains(reason), "\(e)")
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}
