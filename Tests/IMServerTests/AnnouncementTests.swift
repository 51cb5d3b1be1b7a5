import Foundation
import IMClient
import IMCore
import Testing

@Suite(.timeLimit(.minutes(2))) struct AnnouncementTests {
    @Test(arguments: Backend.allCases) func ownersAndAdminsSetTheAnnouncementAndMembersGetAnEvent(backend: Backend) async throws {
        try await withServer(backend) { server in
            let owner = try await server.user("owner"), bob = try await server.user("bob"), eve = try await server.user("eve")
            let g = try await owner.client.createGroup(name: "team", members: [bob.id]).id
            let b = try await EventLog.connect(bob)
            await expectIMError(.forbidden) { try await bob.client.setAnnouncement("I rule", in: g) }
            await expectIMError(.notFound) { try await eve.client.setAnnouncement("hi", in: g) }
            await expectIMError(.invalid) { try await owner.client.setAnnouncement("   ", in: g) }
            await expectIMError(.invalid) { try await owner.client.setAnnouncement(String(repeating: "公", count: 2000), in: g) }
            let set = try await owner.client.setAnnouncement("周五 17:00 发布，请提前合并代码", in: g)
            #expect(set.announcement?.text == "周五 17:00 发布，请提前合并代码" && set.announcement?.by == owner.id)
            #expect(await b.wait { events in events.contains { e in
                if case .message(let m) = e, m.kind == .system, case .object(let d)? = m.data, d["event"] == .string("announcement_set") {
                    return d["text"] == .string("周五 17:00 发布，请提前合并代码")
                }
                return false
            } })
            #expect(try await bob.client.conversation(g).announcement?.text == "周五 17:00 发布，请提前合并代码")
            try await owner.client.setRole(.admin, for: bob.id, in: g)
            try await bob.client.setAnnouncement(nil, in: g)
            #expect(try await owner.client.conversation(g).announcement == nil)
            let direct = try await bob.client.createDirectConversation(with: owner.id).id
            await expectIMError(.invalid) { try await bob.client.setAnnouncement("no", in: direct) }
            await b.close()
        }
    }
}
