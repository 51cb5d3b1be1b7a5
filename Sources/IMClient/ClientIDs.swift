import Foundation
import NIOConcurrencyHelpers

/// Client ids (`cid`) for sends: unique per sender across conversations, reconnects and restarts, as the protocol
/// asks (docs/protocol.md, "At most once per client id").
///
/// A process draws one random UUID (122 random bits) when it first needs an id and appends a counter to it:
/// `"<uuid>-<counter in hex>"`, at most 53 bytes. Ids from two processes share a prefix only if their UUIDs
/// collide. Drawing a fresh `UUID()` per send, as before, cost an open and read of `/dev/urandom` per message on
/// Linux (Foundation's `uuid_generate_random`): about 5 % of `warbler bench`'s CPU.
public enum ClientIDs {
    private static let prefix = UUID().uuidString.lowercased() + "-"
    private static let counter = NIOLockedValueBox<UInt64>(0)

    /// The next client id of this process.
    public static func next() -> String {
        let n = counter.withLockedValue { value -> UInt64 in
            value &+= 1
            return value
        }
        return prefix + String(n, radix: 16)
    }
}
