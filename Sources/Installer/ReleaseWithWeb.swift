import Foundation

/// A release plus the web client and admin console (the installer file's `web/`), installed as
/// `releases/VERSION/web/` so the server's default web root (`/opt/warbler/current/web`) serves them.
public struct ReleaseWithWeb: ReleaseSource {
    public let base: any ReleaseSource
    /// Every file of the web directory: its path below `web/` and where to copy it from.
    public let webFiles: [WebFile]

    public struct WebFile: Sendable, Equatable {
        public var relativePath: String
        public var source: String
        public init(relativePath: String, source: String) { self.relativePath = relativePath; self.source = source }
    }

    public init(base: any ReleaseSource, webFiles: [WebFile]) { self.base = base; self.webFiles = webFiles }

    public var version: String { base.version }

    public func files(on system: any System) throws -> [ReleaseFile] {
        try base.files(on: system) + webFiles.map {
            ReleaseFile(relativePath: "web/" + $0.relativePath, mode: 0o644, content: .copy(source: $0.source, sha256: try system.sha256($0.source)))
        }
    }

    /// `base` with the files of `webDirectory` when that directory exists (an installer file's unpacked payload),
    /// else `base` alone: the server then says the web client is not installed.
    public static func from(base: any ReleaseSource, webDirectory: String?) throws -> any ReleaseSource {
        guard let webDirectory, FileManager.default.fileExists(atPath: webDirectory + "/index.html") else { return base }
        return ReleaseWithWeb(base: base, webFiles: try listFiles(in: webDirectory))
    }

    /// The regular files below `directory`, sorted; hidden names and anything that is not a plain file are left out.
    public static func listFiles(in directory: String) throws -> [WebFile] {
        let root = URL(fileURLWithPath: directory)
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey, .isSymbolicLinkKey],
                                                          options: [.skipsHiddenFiles]) else {
            throw SystemError("cannot read the web client directory \(directory)")
        }
        var out: [WebFile] = []
        let prefix = root.standardizedFileURL.path + "/"
        for case let url as URL in walker {
            let values = try url.resourceValues(forKeys: [.isRegularFileKey, .isSymbolicLinkKey])
            guard values.isRegularFile == true, values.isSymbolicLink != true else { continue }
            let path = url.standardizedFileURL.path
            guard path.hasPrefix(prefix) else { continue }
            out.append(WebFile(relativePath: String(path.dropFirst(prefix.count)), source: path))
        }
        return out.sorted { $0.relativePath < $1.relativePath }
    }
}
