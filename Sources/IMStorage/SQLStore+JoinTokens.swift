/// A cluster join token as the database keeps it: never the secret, only the hash of the proof it derives, and
/// the bundle sealed with a key only the secret derives.
public struct JoinTokenRecord: Sendable, Equatable {
    public var id: String
    public var createdAt: Int64
    public var expiresAt: Int64
    public var singleUse: Bool
    public var uses: Int64
    public var revoked: Bool
    public init(id: String, createdAt: Int64, expiresAt: Int64, singleUse: Bool, uses: Int64, revoked: Bool) {
        self.id = id; self.createdAt = createdAt; self.expiresAt = expiresAt; self.singleUse = singleUse; self.uses = uses; self.revoked = revoked
    }
}

/// Why a join was refused (the joining host is told which, so its operator knows what to fix).
public enum JoinRefusal: String, Sendable, Equatable, Error {
    case unknown, wrongProof, expired, used, revoked
}

extension SQLStore {
    public func createJoinToken(id: String, proofHash: String, bundle: String, now: Int64, expiresAt: Int64, singleUse: Bool) async throws {
        try await driver.write { db in
            try await db.query("""
                INSERT INTO cluster_join_tokens (id, proof_hash, bundle, created_at, expires_at, single_use)
                VALUES ($1, $2, $3, $4, $5, $6)
                """, [.text(id), .text(proofHash), .text(bundle), .int(now), .int(expiresAt), SQLValue(singleUse)])
        }
    }

    /// Checks a proof and counts the use in one transaction (a single-use token is used once even when two hosts
    /// race). Returns the sealed bundle.
    public func redeemJoinToken(id: String, proofHash: String, now: Int64) async throws -> Result<String, JoinRefusal> {
        try await driver.write { db in
            guard let row = try await db.first("""
                SELECT proof_hash, bundle, expires_at, single_use, uses, revoked FROM cluster_join_tokens WHERE id = $1
                """ + (self.driver.dialect == .postgres ? " FOR UPDATE" : ""), [.text(id)]) else { return .failure(.unknown) }
            guard try Self.constantTimeEqual(row.text("proof_hash"), proofHash) else { return .failure(.wrongProof) }
            if row.bool("revoked") { return .failure(.revoked) }
            if try row.int("expires_at") <= now { return .failure(.expired) }
            if row.bool("single_use"), try row.int("uses") > 0 { return .failure(.used) }
            try await db.query("UPDATE cluster_join_tokens SET uses = uses + 1, used_at = $2 WHERE id = $1", [.text(id), .int(now)])
            return .success(try row.text("bundle"))
        }
    }

    public func revokeJoinToken(id: String) async throws -> Bool {
        try await driver.write { db in
            let rows = try await db.query("UPDATE cluster_join_tokens SET revoked = 1 WHERE id = $1 RETURNING id", [.text(id)])
            return !rows.isEmpty
        }
    }

    public func joinTokens() async throws -> [JoinTokenRecord] {
        try await driver.read { db in
            try await db.query("SELECT id, created_at, expires_at, single_use, uses, revoked FROM cluster_join_tokens ORDER BY created_at, id").map {
                JoinTokenRecord(id: try $0.text("id"), createdAt: try $0.int("created_at"), expiresAt: try $0.int("expires_at"),
                                singleUse: $0.bool("single_use"), uses: try $0.int("uses"), revoked: $0.bool("revoked"))
            }
        }
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        return zip(x, y).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
