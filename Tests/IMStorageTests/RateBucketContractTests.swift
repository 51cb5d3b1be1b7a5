import Foundation
import IMStorage
import Testing

@Suite("Storage contract: shared rate-limit buckets")
struct RateBucketContractTests {
    @Test(arguments: Backend.allCases)
    func concurrentUpdatesEachCountAndIdleBucketsArePurged(_ backend: Backend) async throws {
        try await backend.withStore { store, _ in
            #expect(try await store.rateBucket(key: "k") == nil)
            // Concurrent read-modify-writes on one key (as several nodes charging at once): none is lost.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<40 {
                    group.addTask {
                        try await store.updateRateBucket(key: "k") { b in RateBucket(tokens: (b?.tokens ?? 0) + 1, at: Double(1000 + i)) }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await store.rateBucket(key: "k")?.tokens == 40)
            try await store.updateRateBucket(key: "old") { _ in RateBucket(tokens: 2.5, at: 10) }
            #expect(try await store.rateBucket(key: "old") == RateBucket(tokens: 2.5, at: 10))
            #expect(try await store.purgeRateBuckets(updatedBefore: 500) == 1)
            #expect(try await store.rateBucket(key: "old") == nil)
            #expect(try await store.rateBucket(key: "k") != nil)
        }
    }
}
