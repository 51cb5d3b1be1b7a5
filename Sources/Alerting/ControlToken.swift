import DurableFiles
import Foundation

/// The secret that authorises changes to silences: 32 random bytes, base64url, in a 0600 file that only alertd's user
/// (the service user) and root can read. alertd makes it on its first start; `warbler alerts` (as root) reads it.
public enum ControlToken {
    /// The token in `path`, made first when there is none.
    public static func loadOrCreate(path: String) throws -> String {
        if let token = try? read(path: path) { return token }
        let dir = (path as NSString).deletingLastPathComponent
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var bytes = [UInt8](repeating: 0, count: 32)
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
        let token = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        do { try AtomicFile.create(Data((token + "\n").utf8), at: path, mode: 0o600) } catch let error as AtomicFileError where error.exists {
            // Another start made it meanwhile: use that one.
            return try read(path: path)
        } catch {
            throw StateError("cannot create alertd's control token \(path): \(error)")
        }
        return token
    }

    /// The token in `path`.
    public static func read(path: String) throws -> String {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw StateError("cannot read alertd's control token \(path) (it is readable by root and the warbler user only): \(error.localizedDescription)")
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard token.count >= 32 else { throw StateError("alertd's control token \(path) is too short; delete it and restart alertd to make a new one") }
        return token
    }
}
