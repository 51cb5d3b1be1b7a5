import IMStorage
import Testing

/// Every migration says whether it is an expand (additive) or a contract (destructive) migration, and a migration
/// that says `expand` really only adds: a cluster upgrade runs those while nodes of the previous release still serve.
@Suite struct MigrationPhaseTests {
    /// What an expand migration's statements may be, in either dialect. Returns the statements that are not.
    static func nonAdditiveStatements(_ statements: [String]) -> [String] {
        func squeeze(_ s: String) -> String {
            s.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ").uppercased()
        }
        // Tables this migration creates: a unique index or a backfill on those touches nothing older.
        var created: Set<String> = []
        for s in statements.map(squeeze) {
            for prefix in ["CREATE TABLE ", "CREATE VIRTUAL TABLE "] where s.hasPrefix(prefix) {
                if let name = s.dropFirst(prefix.count).split(separator: " ").first { created.insert(String(name)) }
            }
        }
        return statements.filter { raw in
            let s = squeeze(raw)
            // A trigger's body (DELETE FROM and AFTER UPDATE OF in the search index's) is what it does later to its
            // own index, not a change now.
            if !s.hasPrefix("CREATE TRIGGER ") {
                for banned in ["DROP", "RENAME", "ALTER COLUMN", "DELETE", "UPDATE", "TRUNCATE"] where (" " + s + " ").contains(" \(banned) ") {
                    return true
                }
            }
            if s.hasPrefix("CREATE TABLE ") || s.hasPrefix("CREATE VIRTUAL TABLE ") || s.hasPrefix("CREATE TRIGGER ")
                || s.hasPrefix("CREATE EXTENSION IF NOT EXISTS ") || s.hasPrefix("CREATE INDEX ") { return false }
            if s.hasPrefix("CREATE UNIQUE INDEX ") {
                // A new uniqueness rule on an existing table can refuse the previous release's inserts.
                guard let on = s.components(separatedBy: " ON ").dropFirst().first?.split(whereSeparator: { $0 == " " || $0 == "(" }).first else { return true }
                return !created.contains(String(on))
            }
            if s.hasPrefix("ALTER TABLE "), s.contains(" ADD COLUMN ") {
                // The previous release's INSERTs do not name the column: it must be nullable or have a default.
                return s.contains(" NOT NULL") && !s.contains(" DEFAULT ")
            }
            if s.hasPrefix("INSERT INTO ") {
                guard let into = s.dropFirst("INSERT INTO ".count).split(separator: " ").first else { return true }
                return !created.contains(String(into))
            }
            return true
        }
    }

    @Test func everyExpandMigrationOnlyAdds() {
        for m in Migrations.all where m.phase == .expand {
            for (dialect, statements) in [("sqlite", m.sqlite), ("postgres", m.postgres)] {
                let bad = Self.nonAdditiveStatements(statements)
                #expect(bad.isEmpty, "migration \(m.version) (\(m.name)) is marked expand but its \(dialect) statements do not only add: \(bad); mark it .contract")
            }
        }
    }

    /// The check above is not blind: each way of breaking the previous release is caught.
    @Test func theCheckCatchesWhatBreaksThePreviousRelease() {
        for statement in [
            "ALTER TABLE messages DROP COLUMN text",
            "DROP TABLE drafts",
            "DROP INDEX members_user",
            "ALTER TABLE users RENAME COLUMN avatar TO picture",
            "ALTER TABLE users RENAME TO accounts",
            "ALTER TABLE users ALTER COLUMN avatar SET NOT NULL",
            "ALTER TABLE users ADD COLUMN team BIGINT NOT NULL",
            "CREATE UNIQUE INDEX users_display ON users(display_name)",
            "UPDATE users SET kind = 'user'",
            "DELETE FROM rate_buckets",
            "INSERT INTO users (username) VALUES ('x')",
        ] {
            #expect(Self.nonAdditiveStatements([statement]) == [statement], "\(statement)")
        }
        #expect(Self.nonAdditiveStatements([
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "CREATE UNIQUE INDEX t_v ON t(v)",
            "INSERT INTO t (id, v) SELECT id, username FROM users",
            "ALTER TABLE users ADD COLUMN team BIGINT NOT NULL DEFAULT 0", "ALTER TABLE users ADD COLUMN note TEXT",
        ]).isEmpty)
    }

    /// The node-side rule over the real migrations: a build one version behind runs on the database exactly when
    /// the migration between them is an expand one, and never two versions behind.
    @Test func aNodeOneVersionBehindRunsOnlyOnAnExpandMigration() {
        for m in Migrations.all where m.version > 1 {
            let why = Migrations.refusal(newest: m.version - 1, databaseVersion: m.version, additive: m.additive, name: m.name)
            #expect((why == nil) == (m.phase == .expand), "migration \(m.version): \(why ?? "accepted")")
            if m.phase == .contract { #expect(why?.contains("not additive") == true) }
            #expect(Migrations.refusal(newest: m.version - 1, databaseVersion: m.version + 1, additive: true, name: "x")?.contains("2 versions newer") == true)
        }
        #expect(Migrations.refusal(newest: 5, databaseVersion: 6, additive: false, name: "drop x")?.contains("(6: drop x) is not additive") == true)
        #expect(Migrations.refusal(newest: 5, databaseVersion: 3, additive: false, name: "old") == nil)
    }
}
