import Foundation
import Mustache

/// The templates an install renders, by name (the file name without `.mustache`).
///
/// Today they come from a directory (the repo's `templates/`, or `--templates DIR`); the installer file's payload
/// supplies the same names from its archive through `init(sources:)`.
public struct TemplateSet: Sendable {
    /// `/etc/warbler/warbler.yaml`.
    public static let serverConfig = "warbler.yaml"
    /// `/etc/systemd/system/warbler-server.service`.
    public static let serverUnit = "warbler-server.service"
    /// `/etc/systemd/system/warbler-backup.service` and `.timer`: the daily backup job.
    public static let backupService = "warbler-backup.service"
    public static let backupTimer = "warbler-backup.timer"
    /// `/etc/warbler/alerts.yaml`, alertd's targets, rules, routes and receivers.
    public static let alertsConfig = "alerts.yaml"
    /// `/etc/systemd/system/warbler-alertd.service`.
    public static let alertdUnit = "warbler-alertd.service"
    /// `/etc/systemd/system/warbler-exporter.service`.
    public static let exporterUnit = "warbler-exporter.service"
    /// Every template an install needs; a set missing one is refused when it is loaded, not halfway through.
    public static let required = [serverConfig, serverUnit]

    private let library: MustacheLibrary
    /// The names this set holds, sorted.
    public let names: [String]

    /// Parses each template's text; `sources` maps a name to its text.
    public init(sources: [String: String]) throws {
        var library = MustacheLibrary()
        for (name, text) in sources {
            do {
                library.register(try MustacheTemplate(string: text), named: name)
            } catch {
                throw TemplateError("template \(name) does not parse: \(error)")
            }
        }
        let missing = Self.required.filter { sources[$0] == nil }
        guard missing.isEmpty else {
            throw TemplateError("the template set lacks \(missing.map { $0 + ".mustache" }.joined(separator: ", "))")
        }
        self.library = library
        self.names = sources.keys.sorted()
    }

    /// Loads every `*.mustache` file directly inside `directory`.
    public init(directory: String) throws {
        let files: [String]
        do { files = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw TemplateError("cannot read the templates directory \(directory): pass --templates DIR pointing at templates/")
        }
        var sources: [String: String] = [:]
        for file in files where file.hasSuffix(".mustache") {
            let path = (directory as NSString).appendingPathComponent(file)
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw TemplateError("cannot read template \(path)")
            }
            sources[String(file.dropLast(".mustache".count))] = text
        }
        do { try self.init(sources: sources) } catch let e as TemplateError {
            throw TemplateError("\(directory): \(e.description)")
        }
    }

    /// Renders `/etc/warbler/warbler.yaml`.
    public func renderServerConfig(_ context: ServerConfigContext) throws -> String {
        try render(Self.serverConfig, context.view())
    }

    /// Renders the server's systemd unit.
    public func renderServerUnit(_ context: ServiceUnitContext) throws -> String {
        try render(Self.serverUnit, context.view())
    }

    /// Renders the backup job's oneshot service.
    public func renderBackupService(_ context: BackupUnitContext) throws -> String {
        try render(Self.backupService, context.view())
    }

    /// Renders the timer that starts the backup job daily.
    public func renderBackupTimer(_ context: BackupUnitContext) throws -> String {
        try render(Self.backupTimer, context.view())
    }

    /// Renders `/etc/warbler/alerts.yaml`.
    public func renderAlertsConfig(_ context: AlertsConfigContext) throws -> String {
        // The file's own summaries use {{ $labels.x }}: the template switches to <% %> tags.
        try render(Self.alertsConfig, context.view(), tagOpener: "<%")
    }

    /// Renders alertd's systemd unit (`context.unitName` warbler-alertd.service, `configPath` the alerts file,
    /// `ports` the control API port).
    public func renderAlertdUnit(_ context: ServiceUnitContext) throws -> String {
        try render(Self.alertdUnit, context.view())
    }

    /// Renders the monitoring exporter's systemd unit (`ServiceUnitContext.exporter` has its defaults).
    public func renderExporterUnit(_ context: ServiceUnitContext) throws -> String {
        try render(Self.exporterUnit, context.view())
    }

    func render(_ name: String, _ object: Any, tagOpener: String = "{{") throws -> String {
        guard let text = library.render(object, withTemplate: name) else {
            throw TemplateError("no template named \(name)")
        }
        // A tag the renderer did not understand would otherwise reach the host's config silently.
        if text.contains(tagOpener) { throw TemplateError("template \(name) left an unrendered tag") }
        return text
    }
}

/// A template that cannot be loaded or rendered, or a value that cannot go into one.
public struct TemplateError: Error, CustomStringConvertible, Sendable, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension TemplateSet {
    /// Finds the templates directory when none is given: beside a release (`releases/V/templates`), in the
    /// current directory, or in a checkout the executable was built in (`templates/` above `.build`).
    public static func locate(executable: String, currentDirectory: String = FileManager.default.currentDirectoryPath) throws -> String {
        let marker = serverConfig + ".mustache"
        func has(_ dir: String) -> Bool { FileManager.default.fileExists(atPath: dir + "/" + marker) }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: executable)).map {
            $0.hasPrefix("/") ? $0 : ((executable as NSString).deletingLastPathComponent as NSString).appendingPathComponent($0)
        } ?? executable
        var candidates = [currentDirectory + "/templates"]
        var dir = (exe as NSString).deletingLastPathComponent
        for _ in 0..<6 where dir != "/" && !dir.isEmpty {
            candidates.append(dir + "/templates")
            dir = (dir as NSString).deletingLastPathComponent
        }
        if let found = candidates.first(where: has) { return found }
        throw TemplateError("cannot find the templates (looked in \(candidates.joined(separator: ", "))); pass --templates DIR pointing at the repo's templates/")
    }
}
