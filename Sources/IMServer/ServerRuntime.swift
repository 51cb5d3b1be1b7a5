import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import IMCore
import IMStorage
import IMStorageSQLite
import IMStoragePostgres
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import ServiceLifecycle
import SystemdSupport
// The server is configured by ServerConfig: whoever runs it needs that type, so it comes with IMServer.
@_exported import WarblerConfig

/// A running Warbler server: storage, hub, services, and the HTTP/WebSocket and metrics listeners.
public final class ServerRuntime: Sendable {
    public let config: ServerConfig
    public let storage: any Storage
    public let metrics: ServerMetrics
    let hub: Hub
    let service: IMService
    let tokens: TokenService
    let passwords: PasswordHasher
    let attachments: Attachments
    let logger: Logger
    let loginFailures: FailureLimiter
    let loginByAddress: FailureLimiter
    /// Failed cluster joins per address: ten a minute (a token's proof is 256 bits; this keeps the log readable).
    let joinFailuresByAddress: FailureLimiter
    let registerByAddress: RateLimiter
    let passwordChangeByAddress: RateLimiter
    let started = Date()
    let connectionLimiter: ConnectionLimiter
    /// This node's end of the cluster bus; nil on a single node (`cluster.enabled` off).
    let cluster: ClusterNode?
    /// This node's own events for its sessions (`FanOutService` consumes them; the cluster publishes other nodes' here).
    let localBus: LocalFanOutBus
    /// Outgoing-webhook subscriptions and logs; their deliveries run in `WebhookDeliveryService`.
    let webhooks: Webhooks
    /// The built-in AI assistant when `assistant.enabled`; it answers in `AssistantService`.
    let assistant: Assistant?
    let store: SQLStore
    /// Compliance exports, signed with the server's Ed25519 key (Routes+Compliance.swift).
    let compliance: ComplianceExporter
    private let ports = LockedBox<(main: Int?, metrics: Int?)>((nil, nil))
    private let group = LockedBox<ServiceGroup?>(nil)

    /// Opens storage (applying migrations) and loads or creates the signing key.
    public static func open(config: ServerConfig, logger: Logger) async throws -> ServerRuntime {
        let storage = try await StorageFactory.openStorage(config: config, logger: logger)
        if config.cluster.enabled && !(storage.driver is PostgresDriver) {
            try? await storage.close()
            throw ConfigError("cluster.enabled needs storage.driver: postgres")
        }
        let key: TokenService.Key
        let assistantKey: String?
        let moderationHook: ModerationHook?
        do {
            key = try TokenService.loadOrCreateKey(path: config.auth.jwtKeyFile)
            assistantKey = config.assistant.enabled ? try Assistant.readKey(config.assistant.keyFile) : nil
            moderationHook = try ModerationHook.configured(
                config.moderation, policy: WebhookTargetPolicy(allowedNetworks: config.webhooks.allowedNetworks, allowHTTP: config.webhooks.allowHttp),
                textBytes: config.limits.textBytes)
        } catch {
            try? await storage.close()
            throw error
        }
        return await ServerRuntime(config: config, storage: storage, key: key, assistantKey: assistantKey, moderationHook: moderationHook,
                                   logger: logger)
    }

    init(config: ServerConfig, storage: SQLStore, key: Curve25519SigningKey, assistantKey: String? = nil,
         moderationHook: ModerationHook? = nil, logger: Logger) async {
        self.config = config
        self.storage = storage
        self.store = storage
        self.logger = logger
        metrics = ServerMetrics()
        let cluster = config.cluster.enabled && storage.driver is PostgresDriver
            ? ClusterNode(id: config.cluster.nodeId.isEmpty ? "node-" + TokenService.randomToken(bytes: 6) : config.cluster.nodeId)
            : nil
        self.cluster = cluster
        let local = LocalFanOutBus()
        localBus = local
        hub = Hub(storage: storage, metrics: metrics, logger: logger,
                  bus: cluster.map { ClusterFanOutBus(local: local, node: $0) } ?? local)
        webhooks = Webhooks(store: storage, policy: WebhookTargetPolicy(allowedNetworks: config.webhooks.allowedNetworks,
                                                                       allowHTTP: config.webhooks.allowHttp))
        // On PostgreSQL the nodes of a cluster share no disk: attachments live in the database with the messages.
        attachments = Attachments(backing: config.storage.driver == "postgres" ? .database : .disk(config.dataDir + "/attachments"),
                                  storage: storage, limits: config.limits)
        service = IMService(storage: storage, hub: hub, attachments: attachments, config: config, moderationHook: moderationHook,
                            metrics: metrics, logger: logger)
        compliance = ComplianceExporter(storage: storage, attachments: attachments, key: key, directory: config.dataDir + "/compliance")
        assistant = config.assistant.enabled
            ? Assistant(settings: config.assistant, key: assistantKey, textBytes: config.limits.textBytes, store: storage, service: service,
                        hub: hub, metrics: metrics.assistant, logger: logger.with("im.component", "assistant"))
            : nil
        tokens = TokenService(key: key, accessTTL: config.auth.accessTtlSeconds, refreshTTL: config.auth.refreshTtlSeconds)
        passwords = PasswordHasher(cost: config.auth.bcryptCost, maxInFlight: config.auth.maxConcurrentHashes)
        let refusedConnections = metrics.refusedConnections
        connectionLimiter = ConnectionLimiter(total: ConnectionLimiter.effectiveTotal(configured: config.server.maxConnections),
                                              perAddress: config.server.maxConnectionsPerAddress,
                                              refused: { refusedConnections.increment() })

        // A cluster counts failures in the database all nodes share: guessing through every node buys nothing.
        let shared: (any Storage)? = cluster == nil ? nil : storage
        loginFailures = FailureLimiter(RateLimiter(perMinute: config.auth.loginPerMinutePerAccount), shared: shared)
        loginByAddress = FailureLimiter(RateLimiter(perMinute: config.auth.loginPerMinutePerAddress), shared: shared)
        joinFailuresByAddress = FailureLimiter(RateLimiter(perMinute: 10), shared: shared)
        registerByAddress = RateLimiter(perHour: config.auth.registerPerHourPerAddress)
        passwordChangeByAddress = RateLimiter(perHour: config.auth.passwordChangesPerHourPerAddress)
        let hub = self.hub, metrics = self.metrics
        if let cluster {
            hub.connectCluster(.init(synced: { cluster.synced($0, more: $1) },
                                     presence: { cluster.presence($0, online: $1, lastSeen: $2) }))
        }
        // After the commit, never inside it: onto the bus, whose consumer delivers here (and, on a cluster, whose
        // cluster side rings the other nodes' doorbell).
        let assistant = self.assistant
        await storage.observeAppends { messages in
            hub.deliver(messages)
            assistant?.observe(messages)   // queues only: the assistant works in AssistantService
        }
        await storage.observeCommits { n, d in
            metrics.commitSeconds.record(d)
            metrics.batchSize.record(Double(n))
        }
        let logger = self.logger
        await storage.observeStalledCommits { n, waited in
            metrics.commitStalls.increment()
            logger.error("storage: a commit of \(n) sends did not finish within \(waited); they were answered 'unavailable' (the clients send them again) and commits go on without it")
        }
        await storage.observeDeadlinesPassed { kind in metrics.deadlinesPassed[kind]?.increment() }
    }

    // MARK: Accounts

    /// Creates an account (validating username and password); the first admin is made this way by the installer.
    /// Sets an account's password (checked like any other), enables it, and ends its sessions.
    public func resetPassword(id: UserID, password: String) async throws {
        if let e = Validation.password(password) { throw e }
        try await storage.setPasswordHash(id: id, hash: try await passwords.hash(password))
        try await storage.setDisabled(id: id, disabled: false)
        try await storage.revokeAllTokens(user: id)
        hub.endSessions(of: id, reason: "the password was reset")
    }

    public func createUser(username: String, password: String, displayName: String?, admin: Bool) async throws -> UserProfile {
        let name = username.lowercased()
        if let e = Validation.username(name) { throw e }
        if let e = Validation.password(password) { throw e }
        if let d = displayName, let e = Validation.displayName(d) { throw e }
        // Cheap check first: a taken name should not cost a bcrypt (nor be a way to burn the server's CPU).
        if try await storage.user(username: name) != nil { throw IMError(.conflict, "username '\(name)' is taken") }
        let hash = try await passwords.hash(password)
        return try await storage.createUser(username: name, passwordHash: hash, displayName: displayName ?? name, admin: admin, now: nowMillis())
    }

    func issueSession(for user: UserProfile, device: String, family: String? = nil) async throws -> API.AuthResponse {
        let now = nowMillis()
        let fam = family ?? TokenService.randomToken(bytes: 12)
        let (token, hash) = TokenService.newRefreshToken()
        try await storage.insertRefreshToken(RefreshTokenRecord(hash: hash, user: user.id, family: fam, device: String(device.prefix(100)),
                                                                expiresAt: now + Int64(tokens.refreshTTL) * 1000))
        // Read after the refresh token is stored: a revocation racing this either revokes that token (and the
        // session check refuses the access token) or raised the generation read here.
        let generation = try await storage.user(id: user.id)?.tokenGeneration ?? 0
        return API.AuthResponse(user: user, accessToken: tokens.issueAccess(user: user.id, admin: user.admin, session: fam,
                                                                            generation: generation, now: now),
                                refreshToken: token, expiresIn: tokens.accessTTL)
    }

    /// Checks a password. Two limits apply, and only wrong passwords count toward them: per address (an IPv4
    /// address or an IPv6 /64) whatever the account, and per account from one address. Neither is shared between
    /// addresses, so strangers guessing from elsewhere never lock the owner out, a correct password from a clean
    /// address always gets in, and many users behind one address (or `warbler bench`) log in freely. The bcrypt
    /// work itself is bounded by `PasswordHasher`'s cap on hashes in flight.
    func login(username: String, password: String, device: String, address: String) async throws -> API.AuthResponse {
        let name = username.lowercased()
        let addressKey = "addr:\(ConnectionCounts.key(address))"
        let failureKey = "fail:\(name)@\(ConnectionCounts.key(address))"
        let byAddress = try await loginByAddress.wait(addressKey)
        let byAccount = try await loginFailures.wait(failureKey)
        if let wait = byAddress ?? byAccount {
            metrics.loginFailures.increment()
            throw RateLimited(message: "too many login attempts; wait \(Int(wait.rounded(.up))) seconds", retryAfter: wait)
        }
        guard let user = try await storage.user(username: name) else {
            try await passwords.dummyVerify()
            try await loginFailures.charge(failureKey)
            try await loginByAddress.charge(addressKey)
            metrics.loginFailures.increment()
            throw IMError(.unauthorized, "wrong username or password")
        }
        guard user.profile.kind != .bot else {
            throw IMError(.unauthorized, "a bot logs in with its bot token (Authorization: Bearer wbot_…), not a password")
        }
        guard try await passwords.verify(password, hash: user.passwordHash) else {
            try await loginFailures.charge(failureKey)
            try await loginByAddress.charge(addressKey)
            metrics.loginFailures.increment()
            throw IMError(.unauthorized, "wrong username or password")
        }
        guard !user.disabled else { throw IMError(.unauthorized, "this account is disabled; ask an administrator") }
        metrics.logins.increment()
        return try await issueSession(for: user.profile, device: device)
    }

    /// Registration and password changes cost a bcrypt each: they are limited per address (IPv6 per /64).
    func checkRegistrationRate(address: String) throws {
        if let wait = registerByAddress.take(ConnectionCounts.key(address)) {
            throw RateLimited(message: "too many registrations from this address; wait \(Int(wait.rounded(.up))) seconds", retryAfter: wait)
        }
    }

    func checkJoinRate(address: String) async throws {
        if let wait = try await joinFailuresByAddress.wait(ConnectionCounts.key(address)) {
            throw RateLimited(message: "too many failed joins from this address; wait \(Int(wait.rounded(.up))) seconds", retryAfter: wait)
        }
    }

    func chargeJoinFailure(address: String) async throws { try await joinFailuresByAddress.charge(ConnectionCounts.key(address)) }

    func checkPasswordChangeRate(address: String) throws {
        if let wait = passwordChangeByAddress.take(ConnectionCounts.key(address)) {
            throw RateLimited(message: "too many password changes from this address; wait \(Int(wait.rounded(.up))) seconds", retryAfter: wait)
        }
    }

    /// Rotates a refresh token. Presenting a spent token again means it was stolen or replayed: the whole
    /// login session (token family) is revoked.
    func refresh(_ token: String) async throws -> API.AuthResponse {
        let hash = TokenService.hashRefreshToken(token)
        guard let rec = try await storage.refreshToken(hash: hash), !rec.revoked else {
            throw IMError(.unauthorized, "unknown or revoked refresh token; log in again")
        }
        guard rec.expiresAt > nowMillis() else { throw IMError(.unauthorized, "refresh token expired; log in again") }
        guard rec.usedAt == nil, try await storage.spendRefreshToken(hash: hash, now: nowMillis()) else {
            try await storage.revokeTokenFamily(rec.family)
            hub.endSessions(of: rec.user, sid: rec.family, reason: "refresh token reuse detected")
            logger.warning("refresh token reuse detected; session revoked", metadata: ["im.user": "\(rec.user)"])
            throw IMError(.unauthorized, "refresh token reuse detected; this login session was signed out everywhere")
        }
        guard let user = try await storage.user(id: rec.user), !user.disabled else {
            throw IMError(.unauthorized, "this account is disabled")
        }
        return try await issueSession(for: user.profile, device: rec.device, family: rec.family)
    }

    /// Who of `users` is online: here, or (on a cluster) on any live node.
    func presence(of users: [UserID]) async throws -> [ServerFrame.Presence] {
        var out = users.map { hub.presence(of: $0) }
        guard let cluster else { return out }
        let offline = out.filter { $0.status == .offline }.map(\.user)
        guard !offline.isEmpty else { return out }
        let elsewhere = try await store.onlineElsewhere(offline, except: cluster.id,
                                                       heardSince: nowMillis() - ClusterService.presenceTTLMillis)
        for i in out.indices where elsewhere.contains(out[i].user) {
            out[i] = .init(user: out[i].user, status: .online, lastSeen: nil)
        }
        return out
    }

    public func stats() async throws -> API.Stats {
        API.Stats(connections: hub.connectionCount, users: try await storage.userCount(), messages: try await storage.messageCount(),
                  messagesLastMinute: metrics.messagesLastMinute(), databaseBytes: try await storage.sizeInBytes(),
                  version: WarblerVersion.version, uptimeSeconds: Int64(Date().timeIntervalSince(started)))
    }

    // MARK: Listeners

    /// The port the main listener is bound to, once it is running.
    public var port: Int? { ports.withLock { $0.main } }
    public var metricsPort: Int? { ports.withLock { $0.metrics } }

    func makeApplications() throws -> [any Service] {
        let router = Router(context: AppContext.self)
        let webRoot = config.resolvedWebRoot()
        if FileManager.default.fileExists(atPath: webRoot + "/index.html") {
            logger.info("serving the web client from \(webRoot)")
        } else {
            logger.notice("no web client at \(webRoot) (server.web_root); / will say it is not installed")
        }
        router.middlewares.add(WebRoot(root: webRoot))
        router.middlewares.add(ErrorMiddleware(metrics: metrics))
        Routes(runtime: self).add(to: router)

        let gateway = Gateway(service: service, tokens: tokens, metrics: metrics, config: config)
        let allowed = config.server.allowedOrigins
        let socketLogger = logger
        // Browsers send Origin; a page from another site must not ride on a user's session.
        let admits: @Sendable (HTTPRequestHead) -> Bool = { head in
            guard let origin = head.headers.first(name: "origin"),
                  !Self.originAllowed(origin, host: head.headers.first(name: "host"), allowed: allowed) else { return true }
            socketLogger.notice("refused WebSocket upgrade from origin \(origin)")
            return false
        }
        let socketSettings = SocketChannel.Settings(
            maxMessageBytes: config.limits.frameBytes * Gateway.hardLimitFactor,
            idleTimeout: .nanoseconds(Int64(config.server.idleTimeoutSeconds * 1e9)))
        var sslContext: NIOSSLContext?
        if !config.server.tlsCert.isEmpty {
            let reloader = try CertificateReloader(certPath: config.server.tlsCert, keyPath: config.server.tlsKey,
                                                   checkInterval: .seconds(config.server.tlsReloadSeconds), logger: logger)
            var tls = reloader.serverConfiguration()
            // A client that closes without TLS close_notify (most do) must not hold shutdown for NIOSSL's default 5 s:
            // that was the whole of the reconnect gap during a restart.
            tls.shutdownTimeout = .milliseconds(300)
            if !config.server.clientCaFile.isEmpty {
                // Only the cluster's HAProxies (certificates from its CA) connect; names are not checked, the CA is.
                tls.trustRoots = .file(config.server.clientCaFile)
                tls.certificateVerification = .noHostnameVerification
            }
            sslContext = try NIOSSLContext(configuration: tls)
        }
        // Every connection is counted and capped (overall and per address) and must send a request head in time;
        // keep-alive HTTP connections close when idle. Hummingbird alone has no idle timeout before the first
        // request and no cap: idle sockets could use up the descriptors and starve /healthz.
        let limiter = connectionLimiter
        let headTimeout = TimeAmount.nanoseconds(Int64(config.server.requestHeadTimeoutSeconds * 1e9))
        let server = HTTPServerBuilder { [sslContext] responder in
            GuardedChannel(base: SocketChannel(responder: responder, settings: socketSettings, admits: admits,
                                               accept: { out, logger in gateway.accept(out, logger: logger) }),
                           tls: sslContext, limiter: limiter, headTimeout: headTimeout)
        }
        logger.info("accepting at most \(limiter.total) connections, \(config.server.maxConnectionsPerAddress == 0 ? "any number" : String(config.server.maxConnectionsPerAddress)) per address")
        let logger = self.logger
        let app = Application(
            router: router, server: server,
            configuration: .init(address: .hostname(config.server.host, port: config.server.port), serverName: "warbler"),
            onServerRunning: { [ports] channel in
                ports.withLock { $0.main = channel.localAddress?.port }
                logger.info("listening on \(channel.localAddress?.description ?? "?")")
                Systemd.notify("READY=1\nSTATUS=serving")
            },
            logger: logger)
        var services: [any Service] = [app]

        if config.metrics.port >= 0 {
            let metricsRouter = Router()
            let metrics = self.metrics
            metricsRouter.get("/metrics") { _, _ -> Response in
                Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                         body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
            }
            services.append(Application(
                router: metricsRouter,
                configuration: .init(address: .hostname(config.metrics.host, port: config.metrics.port), serverName: "warbler-metrics"),
                onServerRunning: { [ports] channel in ports.withLock { $0.metrics = channel.localAddress?.port } },
                logger: logger))
        }
        return services
    }

    /// Browsers send an http(s) Origin; it must be this server or an allowed origin. Other clients (the SDK's
    /// WebSocket sends `ws://host`) are not browsers riding on a user's session, and authenticate by token anyway.
    static func originAllowed(_ origin: String, host: String?, allowed: [String]) -> Bool {
        if allowed.contains(origin) || allowed.contains("*") { return true }
        guard let url = URL(string: origin), let scheme = url.scheme?.lowercased() else { return false }
        if scheme == "ws" || scheme == "wss" { return true }
        guard scheme == "http" || scheme == "https", let host, let oh = url.host else { return false }
        let originHost = url.port.map { "\(oh):\($0)" } ?? oh
        return originHost == host
    }

    /// Runs until SIGTERM/SIGINT (when `signals` is true) or `shutdown()`: drains clients, flushes the writer, closes storage.
    public func run(handleSignals: Bool = true) async throws {
        let apps = try makeApplications()
        let drain = DrainService(hub: hub, seconds: config.server.drainSeconds, logger: logger)
        let store = StorageService(storage: storage, logger: logger)
        let watchdog = WatchdogService(storage: storage, logger: logger)
        let housekeeping = HousekeepingService(storage: storage, attachments: attachments, logger: logger,
                                              importFrom: attachments.backing == .database ? config.dataDir + "/attachments" : nil)
        var clusterServices: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let cluster, let driver = self.store.driver as? PostgresDriver {
            clusterServices.append(.init(service: ClusterService(
                node: cluster, hub: hub, local: localBus, store: self.store, driver: driver,
                catchUpInterval: .milliseconds(Int64(config.cluster.catchUpSeconds * 1000)), metrics: metrics,
                logger: logger.with("im.cluster.node", cluster.id))))
        }
        let webhookDelivery = WebhookDeliveryService(store: self.store, policy: webhooks.policy, settings: config.webhooks, metrics: metrics,
                                                     logger: logger.with("im.component", "webhooks"))
        // Shut down in reverse: watchdog, then clients are told to reconnect, then listeners stop, then the cluster's
        // last notices go out, then storage flushes.
        // The bus's consumer stops after everything that publishes (listeners, drain, the cluster), before storage.
        let fanOut = FanOutService(events: localBus.events, hub: hub)
        let g = ServiceGroup(configuration: .init(
            services: [.init(service: store), .init(service: fanOut), .init(service: SessionExpiryService(hub: hub))] + clusterServices + [.init(service: webhookDelivery)]
                + (assistant.map { [.init(service: AssistantService(assistant: $0))] } ?? [])
                + apps.map { .init(service: $0) } + [.init(service: drain), .init(service: watchdog), .init(service: housekeeping)],
            gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [],
            logger: logger))
        group.withLock { $0 = g }
        try await g.run()
    }

    /// Starts graceful shutdown (as SIGTERM does).
    public func shutdown() async {
        await group.withLock { $0 }?.triggerGracefulShutdown()
    }

    /// Waits until the main listener is bound and returns its port.
    public func waitUntilListening(timeout: Duration = .seconds(30)) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let p = port, config.metrics.port < 0 || metricsPort != nil { return p }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw ConfigError("the server did not start listening within \(timeout)")
    }
}

typealias Curve25519SigningKey = TokenService.Key

/// On shutdown: tell every client to reconnect, then give them a moment to go.
struct DrainService: Service {
    let hub: Hub
    let seconds: Double
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        Systemd.notify("STOPPING=1")
        let sessions = hub.drain(reason: "server is restarting")
        logger.info("draining \(sessions.count) connections")
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        while hub.connectionCount > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// Keeps storage open until everything else has stopped, then flushes pending writes and closes it.
struct StorageService: Service {
    let storage: any Storage
    let logger: Logger

    func run() async throws {
        try? await gracefulShutdown()
        do { try await storage.close() } catch { logger.error("closing storage: \(error)") }
        logger.info("storage closed")
    }
}

/// Hourly clean-up of what would otherwise only grow: expired refresh tokens, and attachments no message refers to.
struct HousekeepingService: Service {
    let storage: any Storage
    let attachments: Attachments
    let logger: Logger
    /// Attachments on PostgreSQL: the directory an earlier server kept files in, moved into the database at start.
    var importFrom: String? = nil
    var interval: Duration = .seconds(3600)

    func run() async throws {
        if let directory = importFrom {
            do {
                let n = try await attachments.importFiles(from: directory)
                if n > 0 { logger.notice("moved \(n) attachment files from \(directory) into the database") }
            } catch {
                logger.error("moving attachment files into the database stopped (will retry at the next start): \(error)")
            }
        }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                let n = try await storage.purgeExpiredRefreshTokens(now: nowMillis())
                if n > 0 { logger.info("purged \(n) expired refresh tokens") }
            } catch {
                logger.warning("purging expired refresh tokens failed (will retry in an hour): \(error)")
            }
            do {
                _ = try await storage.purgeRateBuckets(updatedBefore: Date().timeIntervalSince1970 - 3600)
            } catch {
                logger.warning("purging idle rate-limit buckets failed (will retry in an hour): \(error)")
            }
            do {
                let n = try await attachments.collectGarbage(now: nowMillis())
                if n > 0 { logger.info("removed \(n) attachments no message refers to") }
            } catch {
                logger.warning("removing unreferenced attachments failed (will retry in an hour): \(error)")
            }
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}

/// Pings systemd's watchdog while storage answers; a wedged server stops pinging and systemd restarts it.
struct WatchdogService: Service {
    let storage: any Storage
    let logger: Logger

    func run() async throws {
        guard let interval = Systemd.watchdogInterval() else {
            try? await gracefulShutdown()
            return
        }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await storage.ping()
                Systemd.notify("WATCHDOG=1")
            } catch {
                logger.error("storage ping failed; withholding watchdog: \(error)")
            }
            // Cut short by SIGTERM: the services after this one (the drain) must not wait out a watchdog period.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: interval) }
        }
    }
}
