import Crypto
import Foundation

/// The release this binary is.
public enum WarblerVersion {
    public static let version = "0.1.0"

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
