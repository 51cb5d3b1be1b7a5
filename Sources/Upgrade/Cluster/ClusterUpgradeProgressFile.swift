import DurableFiles
import Foundation
import Installer

/// The recorded progress of a cluster upgrade: root's file, which `--resume`, `--contract` and `rollback` trust only
/// when root owns it and no one else can write it (root acts on it).
public struct ClusterUpgradeProgressFile: Sendable {
    public static let defaultPath = Paths.installState + "/cluster-upgrade.json"
    public var path: String

    public init(path: String = ClusterUpgradeProgressFile.defaultPath) { self.path = path }

    /// The JSON form, also what etcd's copy holds.
    public static func encode(_ progress: ClusterUpgradeProgress) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(progress)
    }

    public static func decode(_ data: Data) throws -> ClusterUpgradeProgress {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(ClusterUpgradeProgress.self, from: data)
    }

    /// Replaces the file atomically (root's, 0600).
    public func save(_ progress: ClusterUpgradeProgress) throws {
        try AtomicFile.write(try Self.encode(progress), to: path, mode: 0o600, owner: (0, 0))
    }

    /// Nil when there is none.
    public func load() throws -> ClusterUpgradeProgress? {
        let data: Data
        do {
            data = try RootFile.read(path)
        } catch let e as AtomicFileError where e.code == ENOENT {
            return nil
        }
        do {
            return try Self.decode(data)
        } catch {
            throw ClusterUpgradeRefusal("\(path) is not a cluster upgrade's progress (\(error)); move it away to start afresh")
        }
    }
}
