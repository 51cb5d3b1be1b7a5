import Glibc

/// Why a backup could not be made, verified or restored. `description` is the message for the operator.
public struct BackupError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is, for callers that react to it (the upgrade engine, tests, exit codes).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let description: String
        init(_ name: String) { description = name }

        /// A member's bytes do not hash to what the manifest says, or a member is missing or unexpected.
        public static let checksumMismatch = Code("checksumMismatch")
        /// The file is not a readable backup (bad compression, no manifest, unknown format version).
        public static let invalidArchive = Code("invalidArchive")
        /// The backup was made by a build with newer schema migrations than this one.
        public static let newerSchema = Code("newerSchema")
        /// The passphrase does not open the backup's encrypted secrets, or one is needed and none was given.
        public static let passphrase = Code("passphrase")
        /// The archive carries no tag under this install's key or its passphrase, or a wrong one, and
        /// `--trust-unauthenticated` was not given.
        public static let unauthenticated = Code("unauthenticated")
        /// The server is running; a restore needs it stopped.
        public static let serverRunning = Code("serverRunning")
        /// The target already holds messages and `--force` was not given.
        public static let targetHasData = Code("targetHasData")
        /// A database tool (pg_dump, pg_restore) or a database call failed.
        public static let database = Code("database")
        /// Bad input from the operator (a missing passphrase file, a bad option).
        public static let usage = Code("usage")
        /// A cluster's backup offered to a single host, or a single host's to a cluster member.
        public static let wrongKind = Code("wrongKind")
        /// A cluster restore found other members registered (it restores onto a freshly founded cluster alone).
        public static let otherMembers = Code("otherMembers")
        /// A system call failed.
        public static let io = Code("io")
    }

    public let code: Code
    public let message: String
    public var description: String { message }

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    static func io(_ what: String, path: String, errno code: Int32 = errno) -> BackupError {
        BackupError(.io, "\(what) \(path): \(String(cString: strerror(code)))")
    }
}
