import Glibc

/// A directory to be packed: every entry with its manifest record, in the byte order of the paths (a directory
/// always comes before what it holds). Refuses anything an unpack would refuse, so a payload we ship always unpacks.
struct SourceTree {
    struct Item {
        var path: String
        var absolutePath: String
        var entry: Manifest.Entry
    }

    var items: [Item]

    var manifest: Manifest {
        Manifest(entries: Dictionary(uniqueKeysWithValues: items.map { ($0.path, $0.entry) }))
    }

    static func scan(_ root: String) throws -> SourceTree {
        var st = stat()
        guard stat(root, &st) == 0 else { throw PayloadError.io("cannot pack", path: root) }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw PayloadError(.unsupportedFile, "cannot pack \(root): it is not a directory") }
        var items: [Item] = []
        try scan(root, prefix: "", into: &items)
        items.sort { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
        return SourceTree(items: items)
    }

    private static func scan(_ directory: String, prefix: String, into items: inout [Item]) throws {
        for name in try names(in: directory) {
            let path = prefix + name
            let full = directory + "/" + name
            if path == Manifest.fileName {
                throw PayloadError(.unsupportedFile, "cannot pack \(full): \(Manifest.fileName) is the name reserved for the payload's manifest")
            }
            guard let st = FileIO.lstat(full) else { throw PayloadError.io("cannot read", path: full) }
            let permissions = UInt16(st.st_mode & 0o7777)
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                try refuseSpecialBits(permissions, full)
                items.append(Item(path: path, absolutePath: full, entry: .directory(permissions: permissions)))
                try scan(full, prefix: path + "/", into: &items)
            case S_IFREG:
                try refuseSpecialBits(permissions, full)
                let digest = try FileIO.sha256(ofFile: full).hex
                items.append(Item(path: path, absolutePath: full, entry: .file(permissions: permissions, size: UInt64(st.st_size), sha256: digest)))
            case S_IFLNK:
                let target = try readLink(full)
                guard ArchivePath.symlinkStaysInside(link: path, target: target) else {
                    throw PayloadError(.unsupportedFile, "cannot pack \(full): the symlink points outside the directory (to \(target))")
                }
                items.append(Item(path: path, absolutePath: full, entry: .symlink(target: target)))
            default:
                throw PayloadError(.unsupportedFile, "cannot pack \(full): only regular files, directories and symlinks go into a payload")
            }
        }
    }

    private static func refuseSpecialBits(_ permissions: UInt16, _ full: String) throws {
        guard permissions & 0o7000 == 0 else {
            throw PayloadError(.unsupportedFile, "cannot pack \(full): setuid, setgid and sticky bits (mode \(octal(permissions))) are not allowed in a payload")
        }
    }

    private static func names(in directory: String) throws -> [String] {
        guard let dir = opendir(directory) else { throw PayloadError.io("cannot list", path: directory) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(validatingCString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
            }
            guard let name else {
                throw PayloadError(.unsupportedFile, "cannot pack a file in \(directory): its name is not valid UTF-8")
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    private static func readLink(_ path: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n >= 0 else { throw PayloadError.io("cannot read the symlink", path: path) }
        buffer[n] = 0
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}
