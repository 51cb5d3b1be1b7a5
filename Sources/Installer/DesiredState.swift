import Foundation

/// What a file should hold.
public enum FileContent: Sendable, Equatable {
    case bytes(Data)
    /// A copy of a (large) file, known by its SHA-256.
    case copy(source: String, sha256: Data)

    var sha256: Data {
        switch self {
        case .bytes(let d): Digest.sha256(d)
        case .copy(_, let h): h
        }
    }
}

/// The state an install converges the host to. Built by `Blueprint` from the settings; the planner compares it
/// with the host and emits only the steps that close the difference.
public struct DesiredState: Sendable {
    public struct User: Sendable, Equatable {
        public var name: String
        public var home: String
        public init(name: String, home: String) { self.name = name; self.home = home }
    }
    public struct Directory: Sendable, Equatable {
        public var path: String
        public var mode: UInt16
        /// nil: ownership not managed (staging).
        public var owner: Owner?
        public init(path: String, mode: UInt16, owner: Owner?) { self.path = path; self.mode = mode; self.owner = owner }
    }
    public struct File: Sendable, Equatable {
        public var path: String
        public var content: FileContent
        public var mode: UInt16
        public var owner: Owner?
        /// Shown in the plan instead of the content (secrets: "token signing key").
        public var label: String?
        public init(path: String, content: FileContent, mode: UInt16, owner: Owner?, label: String? = nil) {
            self.path = path; self.content = content; self.mode = mode; self.owner = owner; self.label = label
        }
    }
    public struct Link: Sendable, Equatable {
        public var path: String
        public var target: String
        public init(path: String, target: String) { self.path = path; self.target = target }
    }
    /// A daemon the init system runs.
    public struct Service: Sendable, Equatable {
        public var unit: String
        /// Its unit file: a change means daemon-reload and restart.
        public var unitFile: String
        /// Every file whose change means a restart (config, binary, certificates, keys).
        public var restartOn: [String]
        /// Unit files that come with this one (a timer's service): a change means daemon-reload, not a restart.
        public var companionUnitFiles: [String]
        /// The service restarts by itself once its work is done, and the install may run inside it (the upgrade
        /// receiver runs `install --yes`): a change of its unit file (or of the release, when that is not in
        /// `restartOn`) reloads its unit but does not restart it, which would end the install that asked for the
        /// restart. Only `restartOn` files restart it; it is still started when it is not running.
        public var restartsItself: Bool
        /// When it restarts, it restarts before every other service that restarts in the same run (keepalived: the
        /// virtual IP leaves this member before its HAProxy restarts, so clients lose their connections once and
        /// reconnect to the address's new holder, not to a HAProxy that is about to lose the address under them).
        /// A service that is not running still starts in its place.
        public var restartsFirst: Bool
        public init(unit: String, unitFile: String, restartOn: [String], companionUnitFiles: [String] = [], restartsItself: Bool = false,
                    restartsFirst: Bool = false) {
            self.unit = unit; self.unitFile = unitFile; self.restartOn = restartOn; self.companionUnitFiles = companionUnitFiles
            self.restartsItself = restartsItself; self.restartsFirst = restartsFirst
        }
    }
    /// A command run once, before the services start (creating the first admin); a marker file remembers it ran.
    public struct OneTimeCommand: Sendable, Equatable {
        public var name: String
        public var argv: [String]
        public var user: String?
        public var marker: String
        /// Run just before this unit is (re)started or checked, after the units listed before it; nil: before
        /// every service step.
        public var beforeUnit: String?
        public init(name: String, argv: [String], user: String?, marker: String, beforeUnit: String? = nil) {
            self.name = name; self.argv = argv; self.user = user; self.marker = marker; self.beforeUnit = beforeUnit
        }
    }
    /// A directory tree copied in whole from an unpacked, verified archive (an embedded component): one step, not
    /// one per file. `digest` names the content; a tree whose marker holds it is left alone.
    public struct Tree: Sendable, Equatable {
        public var path: String
        public var source: String
        public var digest: String
        public var label: String
        public init(path: String, source: String, digest: String, label: String) {
            self.path = path; self.source = source; self.digest = digest; self.label = label
        }
        public static let markerName = ".warbler-tree"
    }

    public var users: [User] = []
    public var directories: [Directory] = []
    public var files: [File] = []
    public var links: [Link] = []
    public var trees: [Tree] = []
    public var services: [Service] = []
    public var oneTime: [OneTimeCommand] = []
    /// The services are systemd units: a changed unit file needs daemon-reload and restarts its service, and a
    /// unit is enabled to start at boot. The built-in supervisor reads no unit files and has no boot to start at.
    public var systemdUnits = true

    public init() {}
}
