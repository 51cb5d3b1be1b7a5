import IMCore
import Testing

@Suite struct MuteTests {
    @Test func refusalSaysUntilWhenInUTCAndLapsesAtTheEnd() {
        let end: Int64 = 1_796_126_400_000   // 2026-12-01T12:00:00Z
        let r = SendRestrictions(allUntil: nil, members: [7: end])
        let refusal = r.refusal(user: 7, role: .member, now: end - 1)
        #expect(refusal?.code == .muted)
        #expect(refusal?.message.contains("2026-12-01T12:00:00Z") == true, "\(String(describing: refusal))")
        #expect(r.refusal(user: 7, role: .member, now: end) == nil, "the mute is over at its end")
        #expect(r.refusal(user: 8, role: .member, now: end - 1) == nil)
    }

    @Test func groupMuteSparesOwnersAndAdmins() {
        let r = SendRestrictions(allUntil: Mute.indefinite, members: [:])
        #expect(r.refusal(user: 1, role: .member, now: 0)?.message.contains("until they unmute") == true)
        #expect(r.refusal(user: 2, role: .admin, now: 0) == nil)
        #expect(r.refusal(user: 3, role: .owner, now: 0) == nil)
    }

    @Test func wireFormHidesPastMutesAndIndefiniteEnds() throws {
        #expect(Mute.wire(nil, now: 5) == (nil, nil))
        #expect(Mute.wire(5, now: 5) == (nil, nil))
        #expect(Mute.wire(6, now: 5) == (true, 6))
        #expect(Mute.wire(Mute.indefinite, now: 5) == (true, nil))
        #expect(throws: IMError.self) { try Mute.end(4, now: 5) }
        #expect(try Mute.end(nil, now: 5) == Mute.indefinite)
    }
}
