import Crypto
import Foundation
import IMCore
import Payload

/// The release this binary is.
public enum WarblerVersion {
    /// The version this code was written as.
    public static let compiled = "0.1.0"

    /// The release: the version stamped into the installer file's payload by packaging/build.sh (`--version`), or
    /// the compiled one for a plain build. Read once.
    public static var version: String { stamped.value }

    private static let stamped = LazyRelease()

    final class LazyRelease: Sendable {
        private let box = LockedBox<String?>(nil)
        var value: String {
            box.withLock { cached in
                if let cached { return cached }
                let v = SelfContainedFile.release(path: SelfContainedFile.selfPath) ?? WarblerVersion.compiled
                cached = v
                return v
            }
        }
    }

    /// Identifies the exact build: the first 12 hex digits of the SHA-256 of this executable's own bytes.
    /// Two binaries with the same version but different code always differ here. Computed once, on first use.
    public static var build: String { buildID.value }

    private static let buildID = LazyBuildID()

    final class LazyBuildID: Sendable {
        private let box = LockedBox<String?>(nil)
        var value: String {
            box.withLock { cached in
                if let cached { return cached }
                let id = Self.hashExecutable() ?? "unknown"
                cached = id
                return id
            }
        }

        static func hashExecutable() -> String? {
            guard let handle = FileHandle(forReadingAtPath: "/proc/self/exe") else { return nil }
            defer { try? handle.close() }
            var hasher = SHA256()
            while let chunk = try? handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
            return hasher.finalize().prefix(6).map { String(format: "%02x", $0) }.joined()
        }
    }
}
