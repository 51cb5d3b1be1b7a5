import Foundation
import Glibc

/// Keeps the newest `keep` backups (`warbler-*.tar.gz`) in a directory and deletes the older ones.
public enum Retention {
    /// Deletes the oldest backups beyond `keep` (0 keeps every one), never `protecting`. Returns the deleted paths.
    @discardableResult
    public static func apply(directory: String, keep: Int, protecting: String? = nil) throws -> [String] {
        guard keep > 0 else { return [] }
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw BackupError(.io, "cannot list the backup directory \(directory): \(error.localizedDescription)")
        }
        var backups: [(path: String, mtime: timespec)] = []
        for name in names where name.hasPrefix("warbler-") && name.hasSuffix(".tar.gz") {
            let path = directory + "/" + name
            var st = stat()
            guard Glibc.lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            backups.append((path, st.st_mtim))
        }
        // Oldest first: by modification time, then by name (which carries the UTC time of the backup).
        backups.sort { a, b in
            if a.mtime.tv_sec != b.mtime.tv_sec { return a.mtime.tv_sec < b.mtime.tv_sec }
            if a.mtime.tv_nsec != b.mtime.tv_nsec { return a.mtime.tv_nsec < b.mtime.tv_nsec }
            return a.path < b.path
        }
        var removed: [String] = []
        var excess = backups.count - keep
        for backup in backups where excess > 0 && backup.path != protecting {
            guard unlink(backup.path) == 0 else { throw BackupError.io("cannot delete the old backup", path: backup.path) }
            removed.append(backup.path)
            excess -= 1
        }
        return removed
    }
}
