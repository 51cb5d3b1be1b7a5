import Foundation

extension SQLStore {
    public func rateBucket(key: String) async throws -> RateBucket? {
        try await driver.read { db in
            guard let r = try await db.first("SELECT tokens, at FROM rate_buckets WHERE key = $1", [.text(key)]),
                  case .double(let tokens) = Self.real(r["tokens"]), case .double(let at) = Self.real(r["at"]) else { return nil }
            return RateBucket(tokens: tokens, at: at)
        }
    }

    public func updateRateBucket(key: String, _ body: @escaping @Sendable (RateBucket?) -> RateBucket) async throws {
        let lock = driver.dialect == .postgres ? " FOR UPDATE" : ""   // SQLite's write transaction holds the only writer lock
        try await driver.write { db in
            // A row first (NULL: never charged), then lock it: two nodes charging a new key at once both count.
            try await db.query("INSERT INTO rate_buckets (key, tokens, at) VALUES ($1, NULL, NULL) ON CONFLICT (key) DO NOTHING", [.text(key)])
            let r = try await db.first("SELECT tokens, at FROM rate_buckets WHERE key = $1" + lock, [.text(key)])
            var current: RateBucket?
            if let r, case .double(let tokens) = Self.real(r["tokens"]), case .double(let at) = Self.real(r["at"]) {
                current = RateBucket(tokens: tokens, at: at)
            }
            let next = body(current)
            try await db.query("UPDATE rate_buckets SET tokens = $2, at = $3 WHERE key = $1", [.text(key), .double(next.tokens), .double(next.at)])
        }
    }

    public func purgeRateBuckets(updatedBefore: Double) async throws -> Int {
        try await driver.write { db in
            try await db.query("DELETE FROM rate_buckets WHERE at IS NULL OR at < $1 RETURNING key", [.double(updatedBefore)]).count
        }
    }

    /// A REAL column as a double (SQLite returns a whole-valued REAL as an integer).
    static func real(_ v: SQLValue) -> SQLValue {
        if case .int(let i) = v { return .double(Double(i)) }
        return v
    }
}
