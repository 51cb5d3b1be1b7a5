import IMCore

extension SQLStore {
    public func isSessionLive(family: String, now: Int64) async throws -> Bool {
        try await driver.read { db in
            try await db.first("SELECT 1 AS live FROM refresh_tokens WHERE family = $1 AND revoked = 0 AND expires_at > $2 LIMIT 1",
                               [.text(family), .int(now)]) != nil
        }
    }
}
