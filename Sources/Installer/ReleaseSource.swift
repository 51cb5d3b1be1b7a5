/// One file of a release, relative to /opt/warbler/releases/VERSION.
public struct ReleaseFile: Sendable, Equatable {
    public var relativePath: String
    public var mode: UInt16
    public var content: FileContent

    public init(relativePath: String, mode: UInt16, content: FileContent) {
        self.relativePath = relativePath; self.mode = mode; self.content = content
    }
}

/// Where the release being installed comes from. Today: a `warbler` binary (`--binary`, default this executable).
/// The installer file's payload plugs in here with its own source (files unpacked from the archive and verified).
public protocol ReleaseSource: Sendable {
    var version: String { get }
    /// The files of `releases/VERSION/`, with `bin/warbler` among them.
    func files(on system: any System) throws -> [ReleaseFile]
}

/// A release made of one executable.
public struct BinaryRelease: ReleaseSource {
    public let version: String
    public let binaryPath: String

    public init(version: String, binaryPath: String) { self.version = version; self.binaryPath = binaryPath }

    public func files(on system: any System) throws -> [ReleaseFile] {
        guard let info = try system.info(binaryPath), info.kind == .file || info.kind == .symlink else {
            throw SystemError("the binary to install, \(binaryPath), is not a file; pass --binary PATH")
        }
        return [ReleaseFile(relativePath: "bin/warbler", mode: 0o755, content: .copy(source: binaryPath, sha256: try system.sha256(binaryPath)))]
    }
}

/// A release with its files listed (and hashed) once per run.
public struct ResolvedRelease: Sendable, Equatable {
    public var version: String
    public var files: [ReleaseFile]

    public init(version: String, files: [ReleaseFile]) { self.version = version; self.files = files }

    public init(_ source: any ReleaseSource, on system: any System) throws {
        self.init(version: source.version, files: try source.files(on: system))
    }

    /// Bytes the release takes on disk.
    public func size(on system: any System) throws -> UInt64 {
        try files.reduce(0) { total, f in
            switch f.content {
            case .bytes(let d): total + UInt64(d.count)
            case .copy(let source, _): total + (try system.info(source)?.size ?? 0)
            }
        }
    }
}
