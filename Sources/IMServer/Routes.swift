import Foundation
import Hummingbird
import IMCore
import IMStorage
import NIOCore
import WarblerConfig

/// The REST API (docs/protocol.md).
struct Routes: Sendable {
    let runtime: ServerRuntime
    var service: IMService { runtime.service }
    var storage: any Storage { runtime.storage }
    var config: ServerConfig { runtime.config }
    var limit: Int { config.limits.bodyBytes }

    /// Which callers with a bot token an endpoint admits (people's tokens are admitted everywhere).
    enum BotAccess { case refused, anyScope, needs(BotScope) }

    func authenticate(_ request: Request, bots: BotAccess = .refused) async throws -> AccessClaims {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw IMError(.unauthorized, "send Authorization: Bearer ACCESS_TOKEN")
        }
        let claims = try await AccessVerifier(tokens: runtime.tokens, storage: storage).verify(String(header.dropFirst(7))).claims
        if let scopes = claims.scopes {
            switch bots {
            case .refused:
                throw IMError.forbidden("a bot token cannot be used here; docs/bots.md lists what a bot may call")
            case .anyScope:
                break
            case .needs(let scope):
                guard scopes.contains(scope) else { throw IMError.forbidden("this bot token lacks the '\(scope.rawValue)' scope") }
            }
        }
        return claims
    }

    func requireAdmin(_ request: Request) async throws -> AccessClaims {
        let claims = try await authenticate(request)
        guard try await storage.user(id: claims.sub)?.profile.admin == true else { throw IMError.forbidden("admins only") }
        return claims
    }

    /// A request carrying a cluster operation token for `op` on this node, signed with this server's key.
    func authorizeClusterOperation(_ request: Request, _ op: ClusterOperationToken.Operation) throws {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else {
            throw IMError(.unauthorized, "send Authorization: Bearer CLUSTER_OPERATION_TOKEN (root on a member makes one)")
        }
        do {
            _ = try ClusterOperationToken.verify(String(header.dropFirst(7)), key: runtime.tokens.key.publicKey, op: op, node: config.cluster.nodeId)
        } catch {
            runtime.logger.debug("cluster operation refused", metadata: ["im.cluster.op": "\(op.rawValue)", "im.why": "\(error)"])
            throw IMError(.unauthorized, "\(error)")
        }
    }

    /// The client's address for rate limits: the peer's, or behind the cluster's HAProxy (authenticated by its
    /// client certificate) the last X-Forwarded-For entry, which HAProxy appended.
    func clientAddress(_ request: Request, _ context: AppContext) -> String {
        guard config.server.trustForwardedFor, let forwarded = request.headers[.init("X-Forwarded-For")!] else { return context.remoteAddress }
        let last = forwarded.split(separator: ",").last.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        return last.isEmpty ? context.remoteAddress : last
    }

    func add(to router: Router<AppContext>) {
        router.get("/healthz") { _, _ in json(["status": "ok"]) }
        router.get("/readyz") { _, _ -> Response in
            // Bounded: with its database gone (a cluster's primary failing over) a connection attempt can wait far
            // longer than a health check does; the answer must still come at once.
            let storage = storage
            switch await firstOf(seconds: 2, { try await storage.ping() }) {
            case .some(.success):
                return runtime.hub.isDraining ? errorResponse(IMError(.unavailable, "shutting down")) : json(["status": "ready"])
            case .some(.failure(let error)):
                return errorResponse(IMError(.unavailable, "storage is unreachable: \(error)"))
            case .none:
                return errorResponse(IMError(.unavailable, "storage did not answer within 2 seconds"))
            }
        }
        router.get("/v1/version") { _, _ in json(["version": WarblerVersion.version, "build": WarblerVersion.build]) }

        // Joining a cluster (docs/operations.md, "Joining a host"): the CA is public (the joining host checks its key
        // against the hash in its token); the join answers only a proof of the token's secret, with the bundle
        // sealed for that token, which this server cannot open.
        router.get("/v1/cluster/ca") { _, _ -> Response in
            guard config.cluster.enabled, !config.cluster.caFile.isEmpty,
                  let pem = FileManager.default.contents(atPath: config.cluster.caFile) else {
                throw IMError(.notFound, "this server is not a cluster member")
            }
            return Response(status: .ok, headers: [.contentType: "application/x-pem-file"], body: .init(byteBuffer: ByteBuffer(data: pem)))
        }
        router.post("/v1/cluster/join") { req, ctx -> Response in
            guard config.cluster.enabled else { throw IMError(.notFound, "this server is not a cluster member") }
            let body = try await req.decodeJSON(API.ClusterJoin.self, limit: limit)
            try await runtime.checkJoinRate(address: clientAddress(req, ctx))
            switch try await storage.redeemJoinToken(id: body.tokenId, proofHash: JoinProof.hash(body.proof), now: Int64(Date().timeIntervalSince1970)) {
            case .success(let bundle):
                runtime.logger.notice("cluster join token redeemed", metadata: ["im.cluster.token": "\(body.tokenId)", "im.remote": "\(clientAddress(req, ctx))"])
                return json(["bundle": bundle])
            case .failure(let why):
                try await runtime.chargeJoinFailure(address: clientAddress(req, ctx))
                runtime.logger.warning("cluster join refused", metadata: ["im.cluster.token": "\(body.tokenId)", "im.cluster.why": "\(why.rawValue)"])
                let text = switch why {
                case .unknown, .wrongProof: "the token is not one of this cluster's; make a new one with `warbler cluster token` on a member"
                case .expired: "the token has expired; make a new one with `warbler cluster token` on a member"
                case .used: "the single-use token was used already; make a new one with `warbler cluster token` on a member"
                case .revoked: "the token was revoked; make a new one with `warbler cluster token` on a member"
                }
                throw IMError(.forbidden, text)
            }
        }

        // Orders from whoever holds the token signing key (root on a cluster member, for a rolling upgrade):
        // a cluster operation token, never a user's (docs/protocol.md, "Cluster operations").
        router.post("/v1/cluster/reconnect") { req, _ -> Response in
            try authorizeClusterOperation(req, .reconnect)
            let body = try await req.decodeOptionalJSON(API.ClusterReconnect.self, limit: limit, empty: .init())
            let seconds = body.windowSeconds ?? 10
            guard seconds.isFinite, seconds >= 0, seconds <= Double(ReconnectSchedule.maxWindow.components.seconds) else {
                throw IMError(.invalid, "window_seconds must be between 0 and \(ReconnectSchedule.maxWindow.components.seconds)")
            }
            let count = runtime.hub.reconnectAll(over: .nanoseconds(Int64(seconds * 1e9)), reason: "this node is being upgraded")
            return json(API.ClusterSessions(sessions: count, windowSeconds: seconds), status: .accepted)
        }
        router.get("/v1/cluster/sessions") { req, _ -> Response in
            try authorizeClusterOperation(req, .sessions)
            return json(API.ClusterSessions(sessions: runtime.hub.connectionCount))
        }

        let auth = router.group("/v1/auth")
        auth.post("register") { req, ctx -> Response in
            let body = try await req.decodeJSON(API.Register.self, limit: limit)
            guard config.auth.registration == "open" else {
                throw IMError(.registrationClosed, "registration is closed; ask an administrator to create your account")
            }
            try runtime.checkRegistrationRate(address: clientAddress(req, ctx))
            let profile = try await runtime.createUser(username: body.username, password: body.password, displayName: body.displayName, admin: false)
            return json(try await runtime.issueSession(for: profile, device: "web"), status: .created)
        }
        auth.post("login") { req, ctx -> Response in
            let body = try await req.decodeJSON(API.Login.self, limit: limit)
            return json(try await runtime.login(username: body.username, password: body.password, device: body.device ?? "unknown", address: clientAddress(req, ctx)))
        }
        auth.post("refresh") { req, _ -> Response in
            let body = try await req.decodeJSON(API.Refresh.self, limit: limit)
            return json(try await runtime.refresh(body.refreshToken))
        }
        auth.post("logout") { req, _ -> Response in
            let body = try await req.decodeJSON(API.Refresh.self, limit: limit)
            if let t = try await storage.refreshToken(hash: TokenService.hashRefreshToken(body.refreshToken)) {
                try await storage.revokeTokenFamily(t.family)
                runtime.hub.endSessions(of: t.user, sid: t.family, reason: "logged out")
            }
            return noContent()
        }
        auth.post("password") { req, ctx -> Response in
            let claims = try await authenticate(req)
            try runtime.checkPasswordChangeRate(address: clientAddress(req, ctx))
            let body = try await req.decodeJSON(API.ChangePassword.self, limit: limit)
            guard let user = try await storage.user(id: claims.sub), try await runtime.passwords.verify(body.oldPassword, hash: user.passwordHash) else {
                throw IMError(.unauthorized, "the current password is wrong")
            }
            if let e = Validation.password(body.newPassword) { throw e }
            try await storage.setPasswordHash(id: claims.sub, hash: try await runtime.passwords.hash(body.newPassword))
            try await storage.revokeAllTokens(user: claims.sub)
            runtime.hub.endSessions(of: claims.sub, reason: "the password was changed")
            return noContent()
        }

        router.get("/v1/me") { req, _ -> Response in
            let claims = try await authenticate(req, bots: .anyScope)
            guard let u = try await storage.user(id: claims.sub) else { throw IMError.notFound("no such user") }
            return json(u.profile)
        }
        router.patch("/v1/me") { req, _ -> Response in
            let claims = try await authenticate(req, bots: .needs(.profile))
            let body = try await req.decodeJSON(API.UpdateProfile.self, limit: limit)
            if let d = body.displayName, let e = Validation.displayName(d) { throw e }
            if let a = body.avatar, a.utf8.count > 2048 { throw IMError.invalid("avatar must be a URL or attachment id of at most 2048 bytes") }
            return json(try await storage.updateProfile(id: claims.sub, displayName: body.displayName, avatar: body.avatar))
        }
        router.get("/v1/users/by-name/:username") { req, ctx -> Response in
            _ = try await authenticate(req, bots: .needs(.read))
            guard let name = ctx.parameters.get("username"), let u = try await storage.user(username: name.lowercased()), !u.disabled else {
                throw IMError.notFound("no such user")
            }
            return json(u.profile)
        }
        router.get("/v1/users/:id") { req, ctx -> Response in
            _ = try await authenticate(req, bots: .needs(.read))
            guard let u = try await storage.user(id: try ctx.parameters.id("id")) else { throw IMError.notFound("no such user") }
            return json(u.profile)
        }
        router.get("/v1/presence") { req, _ -> Response in
            let claims = try await authenticate(req)
            let asked = (req.uri.queryParameters.get("users") ?? "").split(separator: ",").compactMap { Int64($0) }
            let visible = try await runtime.hub.presenceAudience(of: claims.sub)
            return json(try await runtime.presence(of: asked.filter { visible.contains($0) || $0 == claims.sub }))
        }

        // Contacts
        router.get("/v1/contacts") { req, _ -> Response in
            let claims = try await authenticate(req)
            return json(try await storage.contacts(owner: claims.sub))
        }
        let contactActions: [(String, @Sendable (IMService, UserID, UserID) async throws -> Void)] = [
            ("request", { try await $0.requestContact($1, $2) }),
            ("accept", { try await $0.acceptContact($1, $2) }),
            ("decline", { try await $0.declineContact($1, $2) }),
            ("block", { try await $0.block($1, $2) }),
        ]
        for (name, action) in contactActions {
            router.post("/v1/contacts/:user/\(name)") { req, ctx -> Response in
                let claims = try await authenticate(req)
                try await action(service, claims.sub, try ctx.parameters.id("user"))
                return noContent()
            }
        }
        router.delete("/v1/contacts/:user/block") { req, ctx -> Response in
            let claims = try await authenticate(req)
            try await service.unblock(claims.sub, try ctx.parameters.id("user"))
            return noContent()
        }
        router.delete("/v1/contacts/:user") { req, ctx -> Response in
            let claims = try await authenticate(req)
            try await service.removeContact(claims.sub, try ctx.parameters.id("user"))
            return noContent()
        }

        // Conversations
        router.get("/v1/conversations") { req, _ -> Response in
            let claims = try await authenticate(req, bots: .needs(.read))
            return json(try await storage.summaries(for: claims.sub))
        }
        router.post("/v1/conversations/direct") { req, _ -> Response in
            let claims = try await authenticate(req)
            let body = try await req.decodeJSON(API.NewDirect.self, limit: limit)
            return json(try await service.direct(claims.sub, with: body.userId))
        }
        router.post("/v1/conversations/group") { req, _ -> Response in
            let claims = try await authenticate(req)
            let body = try await req.decodeJSON(API.NewGroup.self, limit: limit)
            return json(try await service.createGroup(claims.sub, name: body.name, members: body.members), status: .created)
        }
        router.get("/v1/conversations/:id") { req, ctx -> Response in
            let claims = try await authenticate(req, bots: .needs(.read))
            return json(try await service.conversation(claims.sub, try ctx.parameters.id("id")))
        }
        router.patch("/v1/conversations/:id") { req, ctx -> Response in
            let claims = try await authenticate(req)
            let body = try await req.decodeJSON(API.Rename.self, limit: limit)
            return json(try await service.rename(claims.sub, try ctx.parameters.id("id"), body.name))
        }
        router.delete("/v1/conversations/:id") { req, ctx -> Response in
            let claims = try await authenticate(req)
            try await service.dissolve(claims.sub, try ctx.parameters.id("id"))
            return noContent()
        }
        router.get("/v1/conversations/:id/messages") { req, ctx -> Response in
            let claims = try await authenticate(req, bots: .needs(.read))
            let before = req.uri.queryParameters.get("before").flatMap { Int64($0) }
            let n = req.uri.queryParameters.get("limit").flatMap { Int($0) } ?? 50
            return json(try await service.history(claims.sub, try ctx.parameters.id("id"), before: before, limit: n))
        }
        router.put("/v1/conversations/:id/pin") { req, ctx -> Response in
            let claims = try await authenticate(req)
            try await service.pinConversation(claims.sub, try ctx.parameters.id("id"), pinned: true)
            return noContent()
        }
        router.delete("/v1/conversations/:id/pin") { req, ctx -> Response in
            let claims = try await authenticate(req)
            try await service.pinConversation(claims.sub, try ctx.parameters.id("id"), pinned: false)
            return noContent()
        }
        router.get("/v1/conversations/:id/pins") { req, ctx -> Response in
            let claims = try await authenticate(req)
            return json(try await service.pinnedMessages(claims.sub, try ctx.parameters.id("id")))
        }
        router.put("/v1/conversations/:id/pins/:seq") { req, ctx -> Response in
            let claims = try await authenticate(req)
            try await service.pinMessage(claims.sub, try ctx.parameters.id("id"), seq: try ctx.parameters.id("seq"), pinned: true)
            return noContent()
        }
        router.delete("/v1/conversations/:id/pins/:seq") { req, ctx -> Response in
            let claims = try await authenticate(req)
            try await service.pinMessage(claims.sub, try ctx.parameters.id("id"), seq: try ctx.parameters.id("seq"), pinned: false)
            return noContent()
        }
        router.get("/v1/search") { req, _ -> Response in
            let claims = try await authenticate(req)
            let p = req.uri.queryParameters
            func int(_ name: String) throws -> Int64? {
                guard let v = p.get(name) else { return nil }
                guard let n = Int64(v) else { throw IMError.invalid("'\(name)' must be an integer") }
                return n
            }
            return json(try await service.search(claims.sub, query: p.get("q") ?? "", conversation: try int("conv"), sender: try int("sender"),
                                                 from: try int("from"), to: try int("to"), before: p.get("before"),
                                                 limit: Int(try int("limit") ?? 20)))
        }
        router.post("/v1/conversations/:id/members") { req, ctx -> Response in
            let claims = try await authenticate(req)
            let body = try await req.decodeJSON(API.AddMembers.self, limit: limit)
            return json(try await service.addMembers(claims.sub, try ctx.parameters.id("id"), body.users))
        }
        router.delete("/v1/conversations/:id/members/:user") { req, ctx -> Response in
            let claims = try await authenticate(req)
            try await service.removeMember(claims.sub, try ctx.parameters.id("id"), try ctx.parameters.id("user"))
            return noContent()
        }
        router.put("/v1/conversations/:id/members/:user/role") { req, ctx -> Response in
            let claims = try await authenticate(req)
            let body = try await req.decodeJSON(API.SetRole.self, limit: limit)
            try await service.setRole(claims.sub, try ctx.parameters.id("id"), try ctx.parameters.id("user"), body.role)
            return noContent()
        }
        router.post("/v1/conversations/:id/leave") { req, ctx -> Response in
            let claims = try await authenticate(req)
            try await service.leave(claims.sub, try ctx.parameters.id("id"))
            return noContent()
        }
        router.post("/v1/conversations/:id/owner") { req, ctx -> Response in
            let claims = try await authenticate(req)
            let body = try await req.decodeJSON(API.TransferOwner.self, limit: limit)
            try await service.transferOwner(claims.sub, try ctx.parameters.id("id"), to: body.userId)
            return noContent()
        }

        // Attachments
        router.post("/v1/conversations/:id/attachments") { req, ctx -> Response in
            let claims = try await authenticate(req, bots: .needs(.send))
            let conv = try ctx.parameters.id("id")
            _ = try await service.requireMember(claims.sub, conv)
            let ref = try await runtime.attachments.store(request: req, conversation: conv, uploader: claims.sub)
            return json(ref, status: .created)
        }
        router.get("/v1/attachments/:id") { req, ctx -> Response in
            let claims = try await authenticate(req, bots: .needs(.read))
            guard let id = ctx.parameters.get("id"), let rec = try await storage.attachment(id: id) else { throw IMError.notFound("no such attachment") }
            // A non-member hears the same words as for a missing id, so the answer does not tell that it exists.
            do { _ = try await service.requireMember(claims.sub, rec.conversation) } catch let e as IMError where e.code == .notFound {
                throw IMError.notFound("no such attachment")
            }
            return try await runtime.attachments.response(for: rec, context: ctx)
        }

        // Admin
        let admin = router.group("/v1/admin")
        admin.post("users") { req, _ -> Response in
            _ = try await requireAdmin(req)
            let body = try await req.decodeJSON(API.AdminCreateUser.self, limit: limit)
            return json(try await runtime.createUser(username: body.username, password: body.password, displayName: body.displayName,
                                                     admin: body.admin ?? false), status: .created)
        }
        admin.get("users") { req, _ -> Response in
            _ = try await requireAdmin(req)
            let offset = req.uri.queryParameters.get("offset").flatMap { Int($0) } ?? 0
            let n = min(req.uri.queryParameters.get("limit").flatMap { Int($0) } ?? 100, 1000)
            return json(try await storage.listUsers(offset: max(0, offset), limit: max(1, n))
                .map { API.AdminUser(user: $0.profile, disabled: $0.disabled, createdAt: $0.createdAt) })
        }
        admin.post("users/:id/disabled") { req, ctx -> Response in
            let claims = try await requireAdmin(req)
            let id = try ctx.parameters.id("id")
            guard id != claims.sub else { throw IMError.invalid("you cannot disable yourself") }
            let body = try await req.decodeJSON(API.SetFlag.self, limit: limit)
            guard try await storage.user(id: id) != nil else { throw IMError.notFound("no such user") }
            try await storage.setDisabled(id: id, disabled: body.value)
            if body.value {
                try await storage.revokeAllTokens(user: id)
                runtime.hub.endSessions(of: id, reason: "the account was disabled")
            }
            return noContent()
        }
        admin.post("users/:id/admin") { req, ctx -> Response in
            let claims = try await requireAdmin(req)
            let id = try ctx.parameters.id("id")
            guard id != claims.sub else { throw IMError.invalid("you cannot change your own admin flag") }
            let body = try await req.decodeJSON(API.SetFlag.self, limit: limit)
            guard let target = try await storage.user(id: id) else { throw IMError.notFound("no such user") }
            guard target.profile.kind != .bot || !body.value else { throw IMError.invalid("a bot cannot be an administrator") }
            try await storage.setAdmin(id: id, admin: body.value)
            return noContent()
        }
        admin.post("users/:id/password") { req, ctx -> Response in
            _ = try await requireAdmin(req)
            let id = try ctx.parameters.id("id")
            let body = try await req.decodeJSON(API.SetPassword.self, limit: limit)
            if let e = Validation.password(body.password) { throw e }
            guard let target = try await storage.user(id: id) else { throw IMError.notFound("no such user") }
            guard target.profile.kind != .bot else { throw IMError.invalid("a bot has no password; rotate its token instead") }
            try await storage.setPasswordHash(id: id, hash: try await runtime.passwords.hash(body.password))
            try await storage.revokeAllTokens(user: id)
            runtime.hub.endSessions(of: id, reason: "the password was reset")
            return noContent()
        }
        admin.get("stats") { req, _ -> Response in
            _ = try await requireAdmin(req)
            return json(try await runtime.stats())
        }
        admin.get("groups") { req, _ -> Response in
            _ = try await requireAdmin(req)
            let offset = req.uri.queryParameters.get("offset").flatMap { Int($0) } ?? 0
            let n = min(req.uri.queryParameters.get("limit").flatMap { Int($0) } ?? 100, 1000)
            return json(try await storage.listGroups(offset: max(0, offset), limit: max(1, n)))
        }
        admin.get("alerts") { req, _ -> Response in
            _ = try await requireAdmin(req)
            return json(await AlertsProxy(controlURL: config.alerts.controlUrl).fetch())
        }
        addBots(to: router)
        addWebhooks(to: router)
        addGroupFeatures(to: router)
        addAssistant(to: router)
        addCompliance(to: router)
    }
}
