import Foundation

/// A value behind a lock: the one lock box every target uses for small shared state read and written from
/// synchronous code (an actor is the tool when the work itself is asynchronous).
public final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    public init(_ v: T) { value = v }
    public func withLock<R>(_ body: (inout T) throws -> R) rethrows -> R {
        lock.lock(); defer { lock.unlock() }
        return try body(&value)
    }
}
