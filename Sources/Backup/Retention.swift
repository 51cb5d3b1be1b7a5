import Foundation
import Glibc

/// Keeps the newest `keep` backups (`warbler-*.tar.gz`) in a directory and deletes the older ones. Pre-upgrade
/// backups (`warbler-pre-upgrade-*`) are not the timer's: they neither count nor go, because `warbler rollback`
/// restores the one its upgrade record names, however many days later; `warbler upgrade` prunes them instead.
public enum Retention {
    /// How `warbler upgrade` names the backup it takes before changing anything.
    public static let preUpgradePrefix = "warbler-pre-upgrade-"

    /// Deletes the oldest backups beyond `keep` (0 keeps every one), never `protecting`. Returns the deleted paths.
    @discardableResult
    public static func apply(directory: String, keep: Int, protecting: String? = nil) throws -> [String] {
        guard keep > 0 else { return [] }
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw BackupError(.io, "cannot list the backup directory \(directory): \(error.localizedDescription)")
        }
        var backups: [(path: String, mtime: timespec)] = []
        for name in names where name.hasPrefix("warbler-") && name.hasSuffix(".tar.gz") && !name.hasPrefix(preUpgradePrefix) {
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

    /// Deletes pre-upgrade backups in `directory` except `keeping` (the one the latest upgrade record names).
    @discardableResult
    public static func prunePreUpgrade(directory: String, keeping: String) throws -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var removed: [String] = []
        for name in names.sorted() where name.hasPrefix(preUpgradePrefix) && name.hasSuffix(".tar.gz") {
            let path = directory + "/" + name
            guard path != keeping, (path as NSString).lastPathComponent != (keeping as NSString).lastPathComponent else { continue }
            guard Files.lstat(path)?.kind == .file else { continue }
            guard unlink(path) == 0 else { throw BackupError.io("cannot delete the old pre-upgrade backup", path: path) }
            removed.append(path)
        }
        return removed
    }
}
