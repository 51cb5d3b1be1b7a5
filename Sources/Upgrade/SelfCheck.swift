import DurableFiles
import Foundation
import IMClient
import IMCore
import WarblerConfig
import Installer
import X509

/// A real login and a message round trip through the running server, as a client on this host sees it: the
/// account `warbler-selfcheck` logs in twice (two devices), one sends to its own "Warbler self-check" group and the
/// other must receive it. The account's password is kept in /etc/warbler/secrets/selfcheck-password (0600 warbler).
public struct SelfCheck: Sendable {
    public static let username = "warbler-selfcheck"
    public static let passwordFile = "/etc/warbler/secrets/selfcheck-password"
    public static let groupName = "Warbler self-check"

    let layout: Layout
    let system: LocalSystem

    public init(layout: Layout = Layout(), system: LocalSystem = LocalSystem()) { self.layout = layout; self.system = system }

    public func run(timeout: Duration = .seconds(20)) async throws {
        let config = try ServerConfig.load(path: layout.path(Paths.config))
        let password = try ensureAccount()
        let tls = !config.server.tlsCert.isEmpty
        // A name the certificate covers: one of this host's addresses in it (no resolver needed: a host whose name
        // does not resolve still passes), else its first DNS name; plain HTTP uses the loopback.
        var host = "127.0.0.1"
        var ca: String?
        if tls {
            let pem = try String(contentsOfFile: layout.path(config.server.tlsCert), encoding: .utf8)
            let names = try PKI.sans(of: try Certificate(pemEncoded: pem))
            let listening = IPAddress.parse(config.server.host)
            let address = names.ips.first { $0 == listening } ?? names.ips.first { $0.isIPv4 } ?? names.ips.first
            host = address?.description ?? names.dns.first ?? host
            let caPath = layout.path(Paths.caCert)
            ca = FileManager.default.fileExists(atPath: caPath) ? caPath : nil
        } else if !["0.0.0.0", "::", ""].contains(config.server.host) {
            host = config.server.host
        }
        let url = "\(tls ? "https" : "http")://\(host.contains(":") ? "[\(host)]" : host):\(config.server.port)"
        // A server that takes only client certificates (a cluster member's, behind HAProxy) gets root's copy of the
        // member certificate, as `cluster status` and the upgrade's readiness wait present it.
        let (cert, key): (String?, String?) = config.server.clientCaFile.isEmpty ? (nil, nil)
            : (layout.path(ClusterPaths.rootCert), layout.path(ClusterPaths.rootKey))
        func client(_ device: String) throws -> IMClient {
            try IMClient(configuration: IMClientConfiguration(baseURL: url, trustedCACertificatePath: ca, deviceName: device, requestTimeout: .seconds(10),
                                                              clientCertificatePath: cert, clientKeyPath: key))
        }
        let a = try client("selfcheck-a"), b = try client("selfcheck-b")
        defer { Task { try? await a.shutdown(); try? await b.shutdown() } }
        do {
            _ = try await a.login(username: Self.username, password: password)
        } catch {
            throw SelfCheckError("login as \(Self.username) at \(url) failed: \(error)")
        }
        _ = try await b.login(username: Self.username, password: password)
        let conversation: ConversationID
        if let existing = try await a.conversations().first(where: { $0.type == .group && $0.name == Self.groupName }) {
            conversation = existing.id
        } else {
            conversation = try await a.createGroup(name: Self.groupName, members: []).id
        }
        let receiver = b.makeConnection()
        let sender = a.makeConnection()
        defer { Task { await receiver.close(); await sender.close() } }
        try await receiver.connect()
        try await sender.connect()
        let text = "self-check \(UUID().uuidString)"
        let ack = try await sender.send(conversation: conversation, text: text)
        let received = try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await event in receiver.events {
                    if case .message(let m) = event, m.conversation == conversation, m.seq == ack.seq, m.text == text { return true }
                }
                return false
            }
            group.addTask { try await Task.sleep(for: timeout); return false }
            let first = try await group.next() ?? false
            group.cancelAll()
            return first
        }
        guard received else { throw SelfCheckError("the message sent through \(url) (seq \(ack.seq)) did not reach the other device within \(timeout)") }
    }

    /// Makes sure the account exists with the password in the file, creating both when missing.
    func ensureAccount() throws -> String {
        let path = layout.path(Self.passwordFile)
        // Root reads a file in the service user's secrets directory, then sends it to the server as a password:
        // never through a link (which would hand the server the first line of any file root can read). One that
        // cannot be read that way is replaced (the rename replaces a link, never its target).
        var owners: Set<uid_t> = [0, geteuid()]
        if let pw = getpwnam(Blueprint.user) { owners.insert(pw.pointee.pw_uid) }
        var password = (try? RootFile.readText(path, owners: owners))?.split(separator: "\n").first.map(String.init)
        if password == nil {
            var bytes = [UInt8](repeating: 0, count: 24)
            for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
            let fresh = Data(bytes).base64EncodedString().replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "+", with: "-")
            try system.write(path, Data((fresh + "\n").utf8), mode: 0o600, owner: layout.isStaging ? nil : Owner(Blueprint.user, Blueprint.user))
            password = fresh
        }
        let binary = layout.path(Paths.currentBinary)
        let result = try system.run([binary, "user-add", Self.username, "--password-file", Self.passwordFile, "--exists-ok",
                                     "--update-password", "--config", Paths.config], as: layout.isStaging ? nil : Blueprint.user)
        guard result.status == 0 else { throw SelfCheckError("cannot set up the \(Self.username) account: \(result.output)") }
        return password!
    }
}

public struct SelfCheckError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
