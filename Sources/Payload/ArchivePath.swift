/// The rules an archive path and a symlink target must follow to be written under the destination and nowhere else.
enum ArchivePath {
    /// The path in canonical form ("a/b": no leading "./", no trailing "/"), or an `unsafeEntry` error.
    static func normalize(_ raw: String) throws -> String {
        guard !raw.isEmpty else { throw unsafe(raw, "an empty path") }
        guard !raw.utf8.contains(0) else { throw unsafe(raw, "a NUL byte in the path") }
        guard !raw.hasPrefix("/") else { throw unsafe(raw, "an absolute path") }
        var path = Substring(raw)
        while path.hasPrefix("./") { path = path.dropFirst(2) }
        while path.hasSuffix("/") { path = path.dropLast() }
        guard !path.isEmpty, path != "." else { throw unsafe(raw, "a path naming the destination itself") }
        for component in path.split(separator: "/", omittingEmptySubsequences: false) {
            switch component {
            case "": throw unsafe(raw, "an empty path component")
            case ".": throw unsafe(raw, "a \".\" path component")
            case "..": throw unsafe(raw, "a \"..\" path component")
            default: continue
            }
        }
        return String(path)
    }

    /// Whether a symlink at `link` (a normalized archive path) pointing at `target` resolves inside the tree.
    ///
    /// Judged on the text: the target is relative, climbs with leading `..` only (never more levels than the link
    /// is deep), then names plain components. `..` after a name is refused because the name may itself be a symlink:
    /// with `s -> .`, the target `s/..` looks inside but resolves to the tree's parent. Links are only ever placed in
    /// real directories (see `Extractor`), so the leading `..` climb exactly as the text says, and every name that is
    /// a symlink is checked by this same rule.
    static func symlinkStaysInside(link: String, target: String) -> Bool {
        guard !target.isEmpty, !target.hasPrefix("/"), !target.utf8.contains(0) else { return false }
        let depth = link.split(separator: "/").count - 1  // how deep the link's directory is
        var climbs = 0
        var descended = false
        for component in target.split(separator: "/", omittingEmptySubsequences: false) {
            switch component {
            case "..":
                guard !descended else { return false }
                climbs += 1
                if climbs > depth { return false }
            case "", ".":
                return false
            default:
                descended = true
            }
        }
        return true
    }

    /// The directory part of a normalized path ("" for a top-level entry).
    static func parent(of path: String) -> String {
        guard let slash = path.utf8.lastIndex(of: UInt8(ascii: "/")) else { return "" }
        return String(path[..<slash])
    }

    private static func unsafe(_ raw: String, _ why: String) -> PayloadError {
        PayloadError(.unsafeEntry, "refusing archive entry \"\(raw.debugDescriptionWithoutQuotes)\": \(why)")
    }
}

extension String {
    /// The string with control characters escaped, for quoting untrusted names in messages.
    var debugDescriptionWithoutQuotes: String { String(debugDescription.dropFirst().dropLast()) }
}
