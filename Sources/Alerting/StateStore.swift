#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import DurableFiles
import Foundation

/// The engine's state as a JSON file, replaced atomically (temp file, fsync, rename, fsync of the directory) so a
/// crash leaves either the old or the new state, never a torn one.
public struct StateStore: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(date.timeIntervalSince1970)
        }
        e.outputFormatting = [.sortedKeys]
        // An alert's value may be ±Inf or NaN (see ControlJSON): without this the state could not be saved.
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "+Inf", negativeInfinity: "-Inf", nan: "NaN")
        return e
    }

    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .custom { decoder in
            Date(timeIntervalSince1970: try decoder.singleValueContainer().decode(Double.self))
        }
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "+Inf", negativeInfinity: "-Inf", nan: "NaN")
        return d
    }

    /// The saved state, or an empty one when the file does not exist yet.
    public func load() throws -> EngineState {
        guard FileManager.default.fileExists(atPath: path) else { return EngineState() }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            return try Self.decoder().decode(EngineState.self, from: data)
        } catch {
            throw StateError("cannot read the alert state \(path): \(error); move it aside to start with no alerts or silences")
        }
    }

    public func save(_ state: EngineState) throws {
        let data = try Self.encoder().encode(state)
        let dir = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        do { try AtomicFile.write(data, to: path, mode: 0o600) } catch {
            throw StateError("cannot save the alert state to \(path): \(error)")
        }
    }
}

public struct StateError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
