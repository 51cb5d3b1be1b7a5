import Crypto
import Foundation
import IMCore
import HummingbirdBcrypt
import NIOPosix

/// bcrypt on a thread pool, so a cost-12 hash (a quarter second) never stalls an event loop.
/// Passwords are pre-hashed with SHA-256 so bcrypt's 72-byte input limit never truncates them.
public struct PasswordHasher: Sendable {
    public let cost: Int
    /// Hashes allowed in flight at once; past that a request is refused at once (503 with Retry-After) rather
    /// than queued, so a flood of registrations or logins cannot pile up unbounded work behind the thread pool.
    public let maxInFlight: Int
    private let inFlight = LockedBox(0)

    public init(cost: Int, maxInFlight: Int = 8) {
        self.cost = cost
        self.maxInFlight = max(1, maxInFlight)
    }

    /// Runs one bcrypt computation on the thread pool, or refuses when `maxInFlight` are already running.
    private func gated<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        let admitted = inFlight.withLock { n -> Bool in
            guard n < maxInFlight else { return false }
            n += 1
            return true
        }
        guard admitted else {
            throw RateLimited(message: "the server is busy checking passwords; retry in a few seconds", retryAfter: 2, code: .unavailable)
        }
        defer { inFlight.withLock { $0 -= 1 } }
        return try await NIOThreadPool.singleton.runIfActive(work)
    }

    static func prehash(_ password: String) -> String {
        Data(SHA256.hash(data: Data(password.utf8))).base64EncodedString()
    }

    public func hash(_ password: String) async throws -> String {
        let cost = UInt8(cost)
        return try await gated { Bcrypt.hash(Self.prehash(password), cost: cost) }
    }

    public func verify(_ password: String, hash: String) async throws -> Bool {
        try await gated { Bcrypt.verify(Self.prehash(password), hash: hash) }
    }

    /// Spends the same time as a real verify, so unknown usernames can't be told apart by timing.
    public func dummyVerify() async throws {
        _ = try await verify("warbler-dummy", hash: dummy)
    }

    var dummy: String { Self.dummyHashes.withLock { cache in
        if let h = cache[cost] { return h }
        let h = Bcrypt.hash(Self.prehash("dummy"), cost: UInt8(cost))
        cache[cost] = h
        return h
    } }
    static let dummyHashes = LockedBox<[Int: String]>([:])
}

