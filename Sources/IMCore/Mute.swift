/// Mutes: a user's own (no notifications for a conversation) and a group's (禁言: an owner or admin stops a member,
/// or everyone below admin, from sending). Both last until a time or until lifted.
public enum Mute {
    /// How an indefinite mute is stored (an end that never comes); on the wire it is `muted: true` without an end.
    public static let indefinite = Int64.max

    /// The wire's `(muted, mutedUntil)` for a stored end: nil for none or one that has passed; `mutedUntil` nil
    /// for an indefinite mute.
    public static func wire(_ stored: Int64?, now: Int64) -> (muted: Bool?, until: Int64?) {
        guard let stored, stored > now else { return (nil, nil) }
        return (true, stored == indefinite ? nil : stored)
    }

    /// Checks a requested end (`until`, ms; nil for indefinite) and returns what to store. Untyped `throws` on
    /// purpose: with `throws(IMError)`, inlined into the async route handlers, Swift 6.3.1's optimizer crashed
    /// (signal 11 splitting the coroutine) and no release build could be made.
    public static func end(_ until: Int64?, now: Int64) throws -> Int64 {
        guard let until else { return indefinite }
        guard until > now else { throw IMError.invalid("'until' must be in the future (milliseconds since 1970); leave it out to mute until unmuted") }
        return until
    }
}

/// Who may not send in a conversation right now: the group's mute and its muted members, with their ends
/// (`Mute.indefinite` when open-ended). A pure value, checked on every send.
public struct SendRestrictions: Sendable, Hashable {
    public var allUntil: Int64?
    public var members: [UserID: Int64]
    public init(allUntil: Int64? = nil, members: [UserID: Int64] = [:]) { self.allUntil = allUntil; self.members = members }

    /// The restrictions a loaded conversation carries (as read, so with ends that had not passed then).
    public init(_ c: Conversation) {
        allUntil = c.allMuted == true ? (c.allMutedUntil ?? Mute.indefinite) : nil
        var m: [UserID: Int64] = [:]
        for member in c.members where member.muted == true { m[member.user] = member.mutedUntil ?? Mute.indefinite }
        members = m
    }

    public var isEmpty: Bool { allUntil == nil && members.isEmpty }

    /// Why `user` (with `role`) may not send at `now`, or nil when they may. Owners and admins are exempt from the
    /// group's mute; a member's own mute applies to anyone an admin could mute (members, and admins muted by the owner).
    public func refusal(user: UserID, role: MemberRole, now: Int64) -> IMError? {
        if let until = members[user], until > now {
            return IMError(.muted, until == Mute.indefinite
                ? "an owner or admin muted you in this group; you can send again when they unmute you"
                : "an owner or admin muted you in this group until \(Self.describe(until)); you can send again after that")
        }
        if role < .admin, let until = allUntil, until > now {
            return IMError(.muted, until == Mute.indefinite
                ? "the group is muted: only its owner and admins can send until they unmute it"
                : "the group is muted: only its owner and admins can send until \(Self.describe(until))")
        }
        return nil
    }

    /// `until` as an ISO 8601 UTC time, e.g. `2026-12-05T06:00:00Z` (IMCore has no Foundation).
    static func describe(_ ms: Int64) -> String {
        var days = ms / 86_400_000
        let rem = ms % 86_400_000
        let (h, mi, s) = (rem / 3_600_000, rem % 3_600_000 / 60_000, rem % 60_000 / 1000)
        // Civil-from-days (Howard Hinnant's algorithm).
        days += 719_468
        let era = (days >= 0 ? days : days - 146_096) / 146_097
        let doe = days - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(y)-\(two(m))-\(two(d))T\(two(h)):\(two(mi)):\(two(s))Z"
    }
}
