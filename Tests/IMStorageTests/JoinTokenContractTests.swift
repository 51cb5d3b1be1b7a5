import IMStorage
import Testing

/// Join tokens on both backends: a proof redeems a valid token once (a single-use one) and never an expired,
/// revoked or unknown one; the database holds only the proof's hash.
@Suite struct JoinTokenContractTests {
    @Test(arguments: Backend.allCases)
    func tokensRedeemOnlyWhileValidAndSingleUseOnlyOnce(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            try await store.createJoinToken(id: "multiuse1", proofHash: "h1", bundle: "sealed-1", now: 100, expiresAt: 1_000, singleUse: false)
            try await store.createJoinToken(id: "singleus1", proofHash: "h2", bundle: "sealed-2", now: 100, expiresAt: 1_000, singleUse: true)
            #expect(try await store.redeemJoinToken(id: "multiuse1", proofHash: "h1", now: 200) == .success("sealed-1"))
            #expect(try await store.redeemJoinToken(id: "multiuse1", proofHash: "h1", now: 300) == .success("sealed-1"))
            #expect(try await store.redeemJoinToken(id: "multiuse1", proofHash: "nope", now: 300) == .failure(.wrongProof))
            #expect(try await store.redeemJoinToken(id: "multiuse1", proofHash: "h1", now: 1_000) == .failure(.expired))
            #expect(try await store.redeemJoinToken(id: "missing", proofHash: "h1", now: 200) == .failure(.unknown))
            #expect(try await store.redeemJoinToken(id: "singleus1", proofHash: "h2", now: 200) == .success("sealed-2"))
            #expect(try await store.redeemJoinToken(id: "singleus1", proofHash: "h2", now: 201) == .failure(.used))
            #expect(try await store.revokeJoinToken(id: "multiuse1"))
            #expect(try await !store.revokeJoinToken(id: "missing"))
            #expect(try await store.redeemJoinToken(id: "multiuse1", proofHash: "h1", now: 300) == .failure(.revoked))
            let listed = try await store.joinTokens()
            #expect(listed.map(\.id) == ["multiuse1", "singleus1"])
            #expect(listed[0].uses == 2 && listed[0].revoked && !listed[0].singleUse && listed[1].singleUse && listed[1].uses == 1)
        }
    }
}
