import Foundation
import IMCore
import IMStorage

/// Group announcements (docs/protocol.md, "Announcements").
extension IMService {
    static let maxAnnouncementBytes = 4096

    /// Sets (text) or clears (nil) a group's announcement; owner and admins. Members learn of it from an
    /// `announcement_set` (with the text) or `announcement_cleared` system event, live and on sync.
    func setAnnouncement(_ user: UserID, _ conv: ConversationID, text: String?) async throws -> Conversation {
        let role = try await requireMember(user, conv)
        _ = try await requireGroup(conv)
        guard role >= .admin else { throw IMError.forbidden("only the group's owner and admins can change its announcement") }
        if let text {
            guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, text.utf8.count <= Self.maxAnnouncementBytes else {
                throw IMError.invalid("an announcement is 1 to \(Self.maxAnnouncementBytes) bytes of text; DELETE it to clear it")
            }
        }
        let text = try await moderated(text, from: user, in: conv)
        try await storage.setAnnouncement(conversation: conv, text.map { Announcement(text: $0, by: user, at: nowMillis()) })
        if let text {
            try await systemEvent(conv, by: user, "announcement_set", ["text": .string(text)])
        } else {
            try await systemEvent(conv, by: user, "announcement_cleared")
        }
        return try await conversation(user, conv)
    }
}
