import Crypto
import Operations
import X509
import DurableFiles
import Foundation
import Hummingbird
import HummingbirdTLS
import IMCore
import Installer
import Logging
import NIOCore
import NIOSSL
import ServiceLifecycle
import SystemdSupport
#if canImport(Glibc)
import Glibc
#endif

/// `warbler upgrade-receiver` (`warbler-upgrade-receiver.service`, root): a member's side of a cluster upgrade.
/// It takes orders signed with the cluster CA's private key (`UpgradeRequestCheck`) over TLS under the member's
/// cluster certificate: `receive` stages an installer file under root's incoming directory, `switch` runs the
/// single-host `Upgrader` on it, `return` goes back to the previous release (docs/architecture.md, "Copying the
/// release and switching another node").
public final class UpgradeReceiver: Sendable {
    public struct Configuration: Sendable {
        /// This member's name (its member file's).
        public var node: String
        /// The public key of this member's copy of the cluster CA certificate.
        public var caKey: P256.Signing.PublicKey
        public var host: String
        public var port: Int
        /// The server side: the member's cluster certificate and key.
        public var tls: TLSConfiguration
        /// Where install paths are (a staging root in tests).
        public var layout: Layout
        /// The owners the incoming directory may have (root; the test's own user under a staging root).
        public var owners: Set<uid_t>
        public init(node: String, caKey: P256.Signing.PublicKey, host: String, port: Int, tls: TLSConfiguration, layout: Layout,
                    owners: Set<uid_t> = [0]) {
            self.node = node; self.caKey = caKey; self.host = host; self.port = port; self.tls = tls; self.layout = layout; self.owners = owners
        }
    }

    /// Root's 0700 directory the received files go to, named by their SHA-256.
    public static let incoming = Paths.installState + "/incoming"
    /// The nonces seen within the time window, kept across the restart that follows every switch.
    public static let nonceFile = Paths.installState + "/upgrade-receiver-nonces.json"
    public static let routes = (receive: "/v1/upgrade/receive", switch: "/v1/upgrade/switch", return: "/v1/upgrade/return")

    let config: Configuration
    let host: any UpgradeHost
    let logger: Logger
    let clock: @Sendable () -> Date
    let nonces: LockedBox<NonceWindow>
    /// One order at a time: a second one while a file is received or a release switched is refused (409).
    let busy = LockedBox(false)
    let group = LockedBox<ServiceGroup?>(nil)
    let boundPort = LockedBox<Int?>(nil)
    /// Called after a `switch` or `return` that changed the release, once its answer is sent: the daemon then
    /// stops so that systemd starts it again on the release now current.
    let changed: @Sendable () -> Void

    public init(config: Configuration, host: any UpgradeHost, logger: Logger, clock: @escaping @Sendable () -> Date = { Date() },
                changed: @escaping @Sendable () -> Void = {}) {
        self.config = config; self.host = host; self.logger = logger; self.clock = clock; self.changed = changed
        nonces = LockedBox(Self.loadNonces(layout: config.layout, owners: config.owners) ?? NonceWindow())
    }

    var incomingDir: String { config.layout.path(Self.incoming) }

    // MARK: - Running

    /// Runs until SIGTERM/SIGINT (when `handleSignals`) or `shutdown()`.
    public func run(handleSignals: Bool = true) async throws {
        let logger = self.logger, boundPort = self.boundPort
        let app = Application(
            router: router(), server: try .tls(.http1(), tlsConfiguration: config.tls),
            configuration: .init(address: .hostname(config.host, port: config.port), serverName: "warbler-upgrade-receiver"),
            onServerRunning: { channel in
                boundPort.withLock { $0 = channel.localAddress?.port }
                logger.info("upgrade receiver listening on \(channel.localAddress?.description ?? "?")")
                Systemd.notify("READY=1\nSTATUS=waiting for a cluster upgrade")
            },
            logger: logger)
        let g = ServiceGroup(configuration: .init(services: [.init(service: app)],
                                                  gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [], logger: logger))
        group.withLock { $0 = g }
        try await g.run()
    }

    public func shutdown() async { await group.withLock { $0 }?.triggerGracefulShutdown() }

    /// Waits until the listener is bound and returns its port.
    public func waitUntilListening(timeout: Duration = .seconds(30)) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let p = boundPort.withLock({ $0 }) { return p }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw SystemError("the upgrade receiver did not start listening within \(timeout)")
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.post(RouterPath(Self.routes.receive)) { [self] request, _ in try await answer(request, .receive) }
        router.post(RouterPath(Self.routes.switch)) { [self] request, _ in try await answer(request, .switch) }
        router.post(RouterPath(Self.routes.return)) { [self] request, _ in try await answer(request, .return) }
        return router
    }

    // MARK: - Orders

    func answer(_ request: Request, _ action: UpgradeRequest.Action) async throws -> Response {
        let checked = nonces.withLock { window -> Result<(UpgradeRequest, NonceWindow), UpgradeRequestRefusal> in
            UpgradeRequestCheck.check(
                header: request.headers[.init(SignedUpgradeRequest.requestHeader)!],
                signature: request.headers[.init(SignedUpgradeRequest.signatureHeader)!],
                caKey: config.caKey, node: config.node, action: action, now: clock(), nonces: &window).map { ($0, window) }
        }
        let order: UpgradeRequest
        switch checked {
        case .failure(let refusal):
            logger.warning("refused a `\(action.rawValue)` request: \(refusal.message)")
            return Self.text(.forbidden, "refused: \(refusal.message)")
        case .success(let (o, window)):
            order = o
            // Remembered on disk before anything is done: a restart must not make a captured request new again.
            do { try saveNonces(window) } catch {
                logger.error("cannot keep the nonces seen in \(Self.nonceFile): \(error)")
                return Self.text(.internalServerError, "refused: this member cannot record the request's nonce (\(error))")
            }
        }
        let claimed = busy.withLock { b in
            if b { return false }
            b = true
            return true
        }
        guard claimed else {
            return Self.text(.conflict, "refused: this member is already receiving a file or switching its release")
        }
        logger.notice("`\(action.rawValue)` \(order.version) (build \(order.build)) requested")
        switch action {
        case .receive:
            defer { busy.withLock { $0 = false } }
            do {
                let info = try await receive(order, body: request.body)
                return Self.text(.ok, "received \(info.version) (build \(info.build)), sha256 \(order.sha256)")
            } catch let e as ReceiveRefusal {
                logger.warning("refused the file: \(e.message)")
                return Self.text(.unprocessableContent, "refused: \(e.message)")
            }
        case .switch:
            let file: String
            do { file = try stagedFile(order) } catch {
                busy.withLock { $0 = false }
                return Self.text(.conflict, "refused: \(error)")
            }
            return stream { log in
                let upgrader = Upgrader(host: self.host)
                do {
                    let outcome = try await upgrader.upgrade(file: file, options: UpgradeOptions(clusterMember: true), progress: log)
                    if case .alreadyCurrent = outcome { return ("switched (already on \(order.version))", false) }
                    return ("switched", true)
                } catch let e as UpgradeError {
                    if e.changedNothing { return ("refused: \(e.description)", false) }
                    // Back on the release it runs from: no restart needed, and the engine's switch back comes at once.
                    if e.rolledBack { return ("returned: \(e.step): \(e.detail)", false) }
                    return ("return failed: \(e.description)", true)
                } catch {
                    return ("return failed: \(error)", true)
                }
            }
        case .return:
            return stream { log in
                do {
                    let did = try await Upgrader(host: self.host).clusterReturn(to: order.version, progress: log)
                    return ("returned", did)
                } catch let e as UpgradeError where e.changedNothing {
                    return ("refused: \(e.description)", false)
                } catch {
                    return ("return failed: \(error)", true)
                }
            }
        }
    }

    /// Streams `body`'s lines as they come, then its last line; frees the receiver when done.
    func stream(_ body: @escaping @Sendable (@escaping @Sendable (String) -> Void) async -> (String, Bool)) -> Response {
        let (lines, continuation) = AsyncStream<String>.makeStream()
        let (sent, sentSignal) = AsyncStream<Void>.makeStream()
        let logger = self.logger, busy = self.busy, changed = self.changed
        // Not a child of the request: a caller that goes away (or never reads the answer) must not cancel a switch
        // half done. It runs to its end, frees the receiver, and when the release changed, stops the daemon once
        // the answer is sent (or after 10 s without a reader).
        let work = Task {
            let (last, didChange) = await Self.produce(body, into: continuation, logger: logger)
            logger.notice("\(last)")
            busy.withLock { $0 = false }
            return (last, didChange)
        }
        Task {
            guard await work.value.1 else { return }
            await withTaskGroup(of: Void.self) { g in
                g.addTask { for await _ in sent { break } }
                g.addTask { try? await Task.sleep(for: .seconds(10)) }
                await g.next()
                g.cancelAll()
            }
            changed()
        }
        return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8"], body: ResponseBody { writer in
            var writing = true
            for await line in lines where writing {
                do { try await writer.write(ByteBuffer(string: line + "\n")) } catch { writing = false }
            }
            let last = await work.value.0
            if writing { try? await writer.write(ByteBuffer(string: last + "\n")) }
            try? await writer.finish(nil)
            sentSignal.yield()
            sentSignal.finish()
        })
    }

    /// Runs `body`, each line it logs into `lines`, and returns its last line and whether it changed the release.
    static func produce(_ body: @Sendable (@escaping @Sendable (String) -> Void) async -> (String, Bool),
                        into lines: AsyncStream<String>.Continuation, logger: Logger) async -> (String, Bool) {
        let r = await body { line in
            logger.info("\(line)")
            lines.yield(line)
        }
        lines.finish()
        return r
    }

    struct ReceiveRefusal: Error { var message: String; init(_ m: String) { message = m } }

    /// The incoming directory, made if missing, checked to be root's alone; opened without following links.
    func openIncoming() throws -> Int32 {
        let system = LocalSystem()
        let state = config.layout.path(Paths.installState)
        if try system.info(state) == nil { try system.makeDirectory(state, mode: 0o700, owner: config.layout.isStaging ? nil : .root) }
        if try system.info(incomingDir) == nil { try system.makeDirectory(incomingDir, mode: 0o700, owner: config.layout.isStaging ? nil : .root) }
        try RootState(system: system, layout: config.layout).requireTrusted(incomingDir, kind: .directory)
        return try RootFile.openDirectory(incomingDir, owners: config.owners)
    }

    /// Makes `name` in `dir` afresh: an earlier receive's file (regular, one of `owners`') goes; anything else
    /// there (a link, a directory) is refused, never followed.
    func create(_ name: String, in dir: Int32) throws -> Int32 {
        var st = stat()
        if fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
            guard st.st_mode & S_IFMT == S_IFREG, config.owners.contains(st.st_uid) else {
                throw ReceiveRefusal("\(incomingDir)/\(name) exists and is not a file this receiver made (a link or another kind of file); nothing was written. Remove it, then run the upgrade again")
            }
            guard unlinkat(dir, name, 0) == 0 else { throw ReceiveRefusal("cannot remove the earlier \(incomingDir)/\(name): \(String(cString: strerror(errno)))") }
        }
        let fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o700)
        guard fd >= 0 else { throw ReceiveRefusal("cannot create \(incomingDir)/\(name): \(String(cString: strerror(errno)))") }
        fchmod(fd, 0o700)
        return fd
    }

    /// Writes the body to `incoming/SHA256`, hashing as it goes and stopping at the signed length; keeps it only
    /// when the digest is the signed one, then checks it as a local upgrade does and that it is the signed release.
    func receive(_ order: UpgradeRequest, body: RequestBody) async throws -> ReleaseInfo {
        let dir: Int32
        do { dir = try openIncoming() } catch { throw ReceiveRefusal("\(error)") }
        defer { close(dir) }
        let name = order.sha256, sigName = order.sha256 + ".sig"
        let path = incomingDir + "/" + name
        // A signature from an earlier receive must not stand beside this file.
        var st = stat()
        if fstatat(dir, sigName, &st, AT_SYMLINK_NOFOLLOW) == 0 { close(try create(sigName, in: dir)); unlinkat(dir, sigName, 0) }
        let fd = try create(name, in: dir)
        var kept = false, writing = true
        defer {
            if writing { close(fd) }
            if !kept { unlinkat(dir, name, 0); unlinkat(dir, sigName, 0) }
        }
        var hasher = SHA256()
        var written: Int64 = 0
        do {
            for try await buffer in body {
                guard written + Int64(buffer.readableBytes) <= order.length else {
                    throw ReceiveRefusal("the body is longer than the signed \(order.length) bytes")
                }
                try buffer.withUnsafeReadableBytes { bytes in
                    hasher.update(bufferPointer: bytes)
                    try AtomicFile.writeAll(fd, bytes, path: path)
                }
                written += Int64(buffer.readableBytes)
            }
        } catch let e as ReceiveRefusal { throw e } catch {
            throw ReceiveRefusal("receiving the file failed after \(written) of \(order.length) bytes: \(error)")
        }
        guard written == order.length else { throw ReceiveRefusal("the body is \(written) bytes, not the signed \(order.length): truncated") }
        guard fsync(fd) == 0 else { throw ReceiveRefusal("cannot fsync \(path): \(String(cString: strerror(errno)))") }
        // Closed before anything runs it: Linux refuses to execute a file open for writing ("Text file busy").
        close(fd)
        writing = false
        let digest = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        guard digest == order.sha256 else { throw ReceiveRefusal("the file's SHA-256 is \(digest), not the signed \(order.sha256)") }
        if let sig = order.releaseSignature.flatMap({ Data(base64Encoded: $0) }) {
            let sfd = try create(sigName, in: dir)
            defer { close(sfd) }
            try sig.withUnsafeBytes { try AtomicFile.writeAll(sfd, $0, path: path + ".sig") }
            guard fsync(sfd) == 0 else { throw ReceiveRefusal("cannot fsync \(path).sig") }
        }
        fsync(dir)
        // The same checks as a local upgrade, then: is it the release the order names?
        let info: ReleaseInfo
        do {
            try host.verify(file: path)
            info = try host.releaseInfo(binary: path)
        } catch { throw ReceiveRefusal("\(error)") }
        guard info.version == order.version, info.build == order.build else {
            throw ReceiveRefusal("the file is \(info.version) (build \(info.build)), not the signed \(order.version) (build \(order.build))")
        }
        kept = true
        return info
    }

    /// The file a `switch` names: received before, still the signed bytes.
    func stagedFile(_ order: UpgradeRequest) throws -> String {
        let path = incomingDir + "/" + order.sha256
        let dir = try openIncoming()
        defer { close(dir) }
        let fd = openat(dir, order.sha256, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw SystemError("no received file with SHA-256 \(order.sha256) here: `receive` it first") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, config.owners.contains(st.st_uid), st.st_mode & 0o022 == 0 else {
            throw SystemError("\(path) is not a file this receiver made")
        }
        let (digest, total) = try UpgradeReceiverClient.FileFacts.digest(fd: fd, path: path)
        guard digest == order.sha256, total == order.length else { throw SystemError("\(path) no longer holds the signed bytes") }
        return path
    }

    // MARK: - Nonces

    static func loadNonces(layout: Layout, owners: Set<uid_t>) -> NonceWindow? {
        guard let data = try? RootFile.read(layout.path(nonceFile), maxBytes: 16 << 20, owners: owners) else { return nil }
        return try? JSONDecoder().decode(NonceWindow.self, from: data)
    }

    func saveNonces(_ window: NonceWindow) throws {
        try AtomicFile.write(try JSONEncoder().encode(window), to: config.layout.path(Self.nonceFile), mode: 0o600)
    }

    static func text(_ status: HTTPResponse.Status, _ s: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: s + "\n")))
    }
}

extension UpgradeReceiver {
    /// This member's receiver as `warbler-upgrade-receiver.service` runs it (root): on the member's cluster
    /// address, under root's copy of the member's certificate, checking orders against root's copy of the cluster
    /// CA certificate, switching with `LiveUpgradeHost`. After a switch it stops (systemd starts it again, on the
    /// release now current).
    public static func live(logger: Logger) throws -> UpgradeReceiver {
        let member = try ClusterTasks().memberFile()
        let caPEM = String(decoding: try RootFile.read(ClusterPaths.caCert, maxBytes: 64 << 10), as: UTF8.self)
        let caCertificate = try Certificate(pemEncoded: caPEM)
        guard let caKey = P256.Signing.PublicKey(caCertificate.publicKey) else {
            throw SystemError("\(ClusterPaths.caCert)'s key is not P-256: orders signed with the cluster CA key cannot be checked")
        }
        let key = try NIOSSLPrivateKey(bytes: Array(try RootFile.read(ClusterPaths.rootKey)), format: .pem)
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(try RootFile.read(ClusterPaths.rootCert, maxBytes: 64 << 10)))
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.shutdownTimeout = .milliseconds(300)
        let box = LockedBox<UpgradeReceiver?>(nil)
        let receiver = UpgradeReceiver(
            config: Configuration(node: member.member.name, caKey: caKey, host: member.member.address,
                                  port: ClusterSettings.Port.upgradeReceiver, tls: tls, layout: Layout()),
            host: LiveUpgradeHost(), logger: logger,
            changed: {
                logger.notice("the release changed: stopping, to be started again on the current release")
                Task { await box.withLock { $0 }?.shutdown() }
            })
        box.withLock { $0 = receiver }
        return receiver
    }
}
