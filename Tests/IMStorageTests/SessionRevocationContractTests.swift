import IMCore
import IMStorage
import Testing

/// What ends access tokens and sockets (issue 9, item 12), on both databases.
@Suite struct SessionRevocationContractTests {
    @Test(arguments: Backend.allCases)
    func revokingAllTokensRaisesTheUsersTokenGeneration(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let alice = try await store.user("alice")
            let bob = try await store.user("bob")
            #expect(try await store.user(id: alice.id)?.tokenGeneration == 0)
            try await store.revokeAllTokens(user: alice.id)
            try await store.revokeAllTokens(user: alice.id)
            #expect(try await store.user(id: alice.id)?.tokenGeneration == 2)
            #expect(try await store.user(username: "alice")?.tokenGeneration == 2)
            #expect(try await store.user(id: bob.id)?.tokenGeneration == 0)
        }
    }

    @Test(arguments: Backend.allCases)
    func aSessionIsLiveWhileItHasAnUnrevokedUnexpiredRefreshToken(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            let a = try await store.user("alice")
            try await store.insertRefreshToken(RefreshTokenRecord(hash: "h1", user: a.id, family: "phone", device: "phone", expiresAt: 9_000))
            try await store.insertRefreshToken(RefreshTokenRecord(hash: "h2", user: a.id, family: "laptop", device: "laptop", expiresAt: 9_000))
            #expect(try await store.isSessionLive(family: "phone", now: 5_000))
            // A rotated (spent) token leaves the session live through its successor only.
            #expect(try await store.spendRefreshToken(hash: "h1", now: 5_000))
            try await store.insertRefreshToken(RefreshTokenRecord(hash: "h3", user: a.id, family: "phone", device: "phone", expiresAt: 9_500))
            #expect(try await store.isSessionLive(family: "phone", now: 9_200))
            #expect(try await !store.isSessionLive(family: "phone", now: 9_600))
            try await store.revokeTokenFamily("phone")
            #expect(try await !store.isSessionLive(family: "phone", now: 5_000))
            #expect(try await store.isSessionLive(family: "laptop", now: 5_000))
            #expect(try await !store.isSessionLive(family: "never-issued", now: 5_000))
            try await store.revokeAllTokens(user: a.id)
            #expect(try await !store.isSessionLive(family: "laptop", now: 5_000))
        }
    }
}
