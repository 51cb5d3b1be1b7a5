import Glibc

/// Why a payload could not be packed, located, verified or unpacked. `description` is the message for the operator.
public struct PayloadError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is, for callers that react to it (tests, the installer's exit codes).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let description: String
        init(_ name: String) { description = name }

        /// The file has no trailer: a plain `warbler` build, not the installer file.
        public static let noPayload = Code("noPayload")
        /// The file ends early: a download or copy was cut short.
        public static let truncated = Code("truncated")
        /// The payload's bytes do not hash to what the trailer says.
        public static let checksumMismatch = Code("checksumMismatch")
        /// The archive cannot be read (bad compression, bad tar headers, no manifest).
        public static let corruptArchive = Code("corruptArchive")
        /// An entry that must never be written: absolute path, `..`, device node, setuid, a link pointing outside.
        public static let unsafeEntry = Code("unsafeEntry")
        /// The archive's contents disagree with its manifest.
        public static let manifestMismatch = Code("manifestMismatch")
        /// A file in the directory being packed cannot go into a payload.
        public static let unsupportedFile = Code("unsupportedFile")
        /// The destination of an unpack already exists.
        public static let destinationExists = Code("destinationExists")
        /// The detached signature is missing, malformed or does not match.
        public static let badSignature = Code("badSignature")
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

    static func io(_ what: String, path: String, errno code: Int32 = errno) -> PayloadError {
        PayloadError(.io, "\(what) \(path): \(String(cString: strerror(code)))")
    }
}
