import Foundation
import IMClient
import IMCore
import Testing

/// A registered user with a REST client.
struct TestUser: Sendable {
    let client: IMClient
    let profile: UserProfile
    var id: UserID { profile.id }
}

extension TestServer {
    func user(_ name: String, password: String = "password-123") async throws -> TestUser {
        let client = try IMClient(baseURL: baseURL, deviceName: "test")
        let profile = try await client.register(username: name, password: password)
        return TestUser(client: client, profile: profile)
    }

    /// Another device (a separate login) of an existing user.
    func device(_ name: String, password: String = "password-123") async throws -> TestUser {
        let client = try IMClient(baseURL: baseURL, deviceName: "test-2")
        let profile = try await client.login(username: name, password: password)
        return TestUser(client: client, profile: profile)
    }

    func admin(_ name: String = "root", password: String = "password-123") async throws -> TestUser {
        _ = try await runtime.createUser(username: name, password: password, displayName: nil, admin: true)
        return try await device(name, password: password)
    }
}

/// Records everything a connection reports, from one consumer task.
final class EventLog: Sendable {
    private let box = Mutexed<[IMEvent]>([])
    let connection: IMConnection
    private let task: Task<Void, Never>

    init(_ connection: IMConnection) {
        self.connection = connection
        let box = self.box
        task = Task { for await e in connection.events { box.withLock { $0.append(e) } } }
    }

    static func connect(_ user: TestUser, cursorStore: any CursorStore = InMemoryCursorStore(),
                        configuration: IMConnection.Configuration = .init()) async throws -> EventLog {
        let conn = user.client.makeConnection(cursorStore: cursorStore, configuration: configuration)
        let log = EventLog(conn)
        try await conn.connect()
        return log
    }

    var events: [IMEvent] { box.withLock { $0 } }

    func messages(in conv: ConversationID? = nil) -> [Message] {
        events.compactMap { e in
            if case .message(let m) = e, conv == nil || m.conversation == conv { return m }
            return nil
        }
    }

    func userMessages(in conv: ConversationID) -> [Message] { messages(in: conv).filter { $0.kind != .system } }

    /// Waits until `condition` holds for the recorded events; false on timeout.
    @discardableResult
    func wait(timeout: Duration = .seconds(15), _ condition: ([IMEvent]) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if box.withLock({ condition($0) }) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return box.withLock { condition($0) }
    }

    @discardableResult
    func waitForMessages(_ n: Int, in conv: ConversationID, timeout: Duration = .seconds(15)) async -> Bool {
        await wait(timeout: timeout) { events in
            events.reduce(0) { acc, e in
                if case .message(let m) = e, m.conversation == conv, m.kind != .system { return acc + 1 }
                return acc
            } >= n
        }
    }

    func close() async {
        await connection.close()
        task.cancel()
    }
}

final class Mutexed<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ v: T) { value = v }
    func withLock<R>(_ body: (inout T) throws -> R) rethrows -> R {
        lock.lock(); defer { lock.unlock() }
        return try body(&value)
    }
}

func expectIMError(_ code: ErrorCode, sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void) async {
    do {
        try await body()
        Issue.record("expected error \(code.rawValue), got success", sourceLocation: sourceLocation)
    } catch let e as IMError {
        #expect(e.code == code, "\(e)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected IMError \(code.rawValue), got \(error)", sourceLocation: sourceLocation)
    }
}
