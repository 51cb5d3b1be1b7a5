import IMCore
@testable import LoadGen
import Testing

/// The probe's verdict on what a member saw: it must catch a lost, a doubled and a reordered message.
@Suite struct ProbeCheckTests {
    func msg(_ seq: Int64, _ text: String) -> Message {
        Message(conversation: 1, seq: seq, sender: 2, cid: "c\(seq)", kind: .text, text: text, ts: 0)
    }
    let expected: Set<String> = ["a:0", "a:1", "b:0"]

    @Test func everythingOnceInOrderIsClean() {
        #expect(DeliveryProbe.check("m", [msg(5, "t:a:0"), msg(6, "t:b:0"), msg(7, "t:a:1"), msg(8, "other")], tag: "t", expected: expected).isEmpty)
    }

    @Test func aLostADoubledAndAReorderedMessageAreEachReported() {
        let lost = DeliveryProbe.check("m", [msg(5, "t:a:0"), msg(7, "t:a:1")], tag: "t", expected: expected)
        #expect(lost.count == 1 && lost[0].contains("never got 1"))
        let doubled = DeliveryProbe.check("m", [msg(5, "t:a:0"), msg(6, "t:b:0"), msg(7, "t:a:1"), msg(7, "t:a:1")], tag: "t", expected: expected)
        #expect(doubled.contains { $0.contains("twice") })
        let reordered = DeliveryProbe.check("m", [msg(5, "t:a:1"), msg(6, "t:b:0"), msg(7, "t:a:0")], tag: "t", expected: expected)
        #expect(reordered.contains { $0.contains("after") })
    }
}
