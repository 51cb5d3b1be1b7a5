import DurableFiles
import Foundation
import Glibc

/// Keeps the newest `keep` backups (`warbler-*.tar.gz`) in a directory and deletes the older ones. Pre-upgrade
/// backups (`warbler-pre-upgrade-*`) are not the timer's: they neither count nor go, because `warbler rollback`
/// restores the one its upgrade record names, however many days later; `warbler upgrade` prunes them instead.
///
/// Root runs both (`warbler backup` by root, `warbler upgrade`) in a directory the service user can write, so they
/// act only through one descriptor of it (`Files.openBackupDirectory`: no link on the path, owned by root or the
/// service user): `fstatat`/`unlinkat` never follow a link, and a directory swapped meanwhile redirects nothing.
public enum Retention {
    /// How `warbler upgrade` names the backup it takes before changing anything.
    public static let preUpgradePrefix = "warbler-pre-upgrade-"

    /// Deletes the oldest backups beyond `keep` (0 keeps every one), never `protecting`. Returns the deleted paths.
    @discardableResult
    public static func apply(directory: String, keep: Int, protecting: String? = nil) throws -> [String] {
        guard keep > 0 else { return [] }
        let dir = try Files.openBackupDirectory(directory)
        defer { close(dir) }
        var backups: [(name: String, mtime: timespec)] = []
        for name in try Files.names(in: dir, path: directory)
        where name.hasPrefix("warbler-") && name.hasSuffix(".tar.gz") && !name.hasPrefix(preUpgradePrefix) {
            var st = stat()
            guard fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            backups.append((name, st.st_mtim))
        }
        // Oldest first: by modification time, then by name (which carries the UTC time of the backup).
        backups.sort { a, b in
            if a.mtime.tv_sec != b.mtime.tv_sec { return a.mtime.tv_sec < b.mtime.tv_sec }
            if a.mtime.tv_nsec != b.mtime.tv_nsec { return a.mtime.tv_nsec < b.mtime.tv_nsec }
            return a.name < b.name
        }
        let protectedName = protecting.map { ($0 as NSString).lastPathComponent }
        var removed: [String] = []
        var excess = backups.count - keep
        for backup in backups where excess > 0 && backup.name != protectedName {
            let path = directory + "/" + backup.name
            guard unlinkat(dir, backup.name, 0) == 0 else { throw BackupError.io("cannot delete the old backup", path: path) }
            removed.append(path)
            excess -= 1
        }
        return removed
    }

    /// Deletes pre-upgrade backups in `directory` except `keeping` (the one the latest upgrade record names).
    @discardableResult
    public static func prunePreUpgrade(directory: String, keeping: String) throws -> [String] {
        guard Files.exists(directory) else { return [] }
        let dir = try Files.openBackupDirectory(directory)
        defer { close(dir) }
        let kept = (keeping as NSString).lastPathComponent
        var removed: [String] = []
        for name in try Files.names(in: dir, path: directory).sorted()
        where name.hasPrefix(preUpgradePrefix) && name.hasSuffix(".tar.gz") && name != kept {
            var st = stat()
            guard fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            let path = directory + "/" + name
            guard unlinkat(dir, name, 0) == 0 else { throw BackupError.io("cannot delete the old pre-upgrade backup", path: path) }
            removed.append(path)
        }
        return removed
    }
}
