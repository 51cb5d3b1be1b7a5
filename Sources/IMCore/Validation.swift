/// Input rules shared by the server and the SDK.
public enum Validation {
    public static let maxClientIDLength = 64
    /// Different emoji one message may carry (each with any number of users).
    public static let maxReactionsPerMessage = 50

    /// Usernames: 3–32 characters of a–z, 0–9, `.`, `_`, `-`, starting with a letter or digit.
    public static func username(_ s: String) -> IMError? {
        guard (3...32).contains(s.count) else { return .invalid("username must be 3 to 32 characters") }
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789._-")
        guard s.allSatisfy({ allowed.contains($0) }) else {
            return .invalid("username may contain only a-z, 0-9, '.', '_' and '-'")
        }
        guard let f = s.first, f.isLetter || f.isNumber else { return .invalid("username must start with a letter or digit") }
        return nil
    }

    /// Passwords: 8–256 characters (bcrypt reads at most 72 bytes; longer inputs are pre-hashed by the server).
    public static func password(_ s: String) -> IMError? {
        guard s.count >= 8 else { return .invalid("password must be at least 8 characters") }
        guard s.utf8.count <= 1024 else { return .invalid("password must be at most 1024 bytes") }
        return nil
    }

    public static func clientID(_ s: String) -> IMError? {
        guard !s.isEmpty, s.utf8.count <= maxClientIDLength else {
            return .invalid("cid must be 1 to \(maxClientIDLength) bytes")
        }
        return nil
    }

    public static func displayName(_ s: String) -> IMError? {
        guard (1...64).contains(s.count) else { return .invalid("display name must be 1 to 64 characters") }
        return nil
    }

    /// A reaction is one emoji (or a short sequence, such as a flag or a skin tone): 1 to 8 characters, at most
    /// 32 bytes, with no spaces or control characters.
    public static func reactionEmoji(_ s: String) -> IMError? {
        guard (1...8).contains(s.count), s.utf8.count <= 32 else { return .invalid("a reaction must be 1 to 8 characters (an emoji), at most 32 bytes") }
        guard !s.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control }) else {
            return .invalid("a reaction may not contain spaces or control characters")
        }
        return nil
    }

    public static func groupName(_ s: String) -> IMError? {
        guard (1...100).contains(s.count) else { return .invalid("group name must be 1 to 100 characters") }
        return nil
    }
}
