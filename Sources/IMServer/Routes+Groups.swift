import Hummingbird
import IMCore
import IMStorage

/// REST calls for mutes, forwarding, announcements, invite links, join requests and drafts (docs/protocol.md).
extension Routes {
    func addGroupFeatures(to router: Router<AppContext>) {
        router.put("/v1/conversations/:id/mute") { req, ctx -> Response in
            try await mute(req, ctx, .notifications, muted: true)
        }
        router.delete("/v1/conversations/:id/mute") { req, ctx -> Response in
            try await mute(req, ctx, .notifications, muted: false)
        }
        router.put("/v1/conversations/:id/members/:user/mute") { req, ctx -> Response in
            try await mute(req, ctx, .member, muted: true)
        }
        router.delete("/v1/conversations/:id/members/:user/mute") { req, ctx -> Response in
            try await mute(req, ctx, .member, muted: false)
        }
        router.put("/v1/conversations/:id/mute-all") { req, ctx -> Response in
            try await mute(req, ctx, .group, muted: true)
        }
        router.delete("/v1/conversations/:id/mute-all") { req, ctx -> Response in
            try await mute(req, ctx, .group, muted: false)
        }
        router.put("/v1/conversations/:id/announcement") { req, ctx -> Response in
            let claims = try await authenticate(req)
            let body = try await req.decodeJSON(API.SetAnnouncement.self, limit: limit)
            return json(try await service.setAnnouncement(claims.sub, try ctx.parameters.id("id"), text: body.text))
        }
        router.delete("/v1/conversations/:id/announcement") { req, ctx -> Response in
            let claims = try await authenticate(req)
            return json(try await service.setAnnouncement(claims.sub, try ctx.parameters.id("id"), text: nil))
        }
        router.post("/v1/conversations/:id/invites") { req, ctx -> Response in
            let claims = try await authenticate(req)
            let body = try await req.decodeOptionalJSON(API.NewInvite.self, limit: limit, empty: API.NewInvite())
            return json(try await service.createInvite(claims.sub, try ctx.parameters.id("id"), body), status: .created)
        }
        router.get("/v1/conversations/:id/invites") { req, ctx -> Response in
            let claims = try await authenticate(req)
            return json(try await service.invites(claims.sub, try ctx.parameters.id("id")))
        }
        router.delete("/v1/conversations/:id/invites/:code") { req, ctx -> Response in
            let claims = try await authenticate(req)
            try await service.revokeInvite(claims.sub, try ctx.parameters.id("id"), code: ctx.parameters.get("code") ?? "")
            return noContent()
        }
        router.get("/v1/invites/:code") { req, ctx -> Response in
            _ = try await authenticate(req)
            return json(try await service.previewInvite(ctx.parameters.get("code") ?? ""))
        }
        router.post("/v1/invites/:code/join") { req, ctx -> Response in
            let claims = try await authenticate(req)
            let result = try await service.join(claims.sub, code: ctx.parameters.get("code") ?? "")
            return json(result, status: result.outcome == .requested ? .accepted : .ok)
        }
        router.get("/v1/conversations/:id/join-requests") { req, ctx -> Response in
            let claims = try await authenticate(req)
            return json(try await service.joinRequests(claims.sub, try ctx.parameters.id("id")))
        }
        for (action, accept) in [("accept", true), ("decline", false)] {
            router.post("/v1/conversations/:id/join-requests/:user/\(action)") { req, ctx -> Response in
                let claims = try await authenticate(req)
                try await service.resolveJoinRequest(claims.sub, try ctx.parameters.id("id"), requester: try ctx.parameters.id("user"), accept: accept)
                return noContent()
            }
        }
        router.get("/v1/me/join-requests") { req, _ -> Response in
            let claims = try await authenticate(req)
            return json(try await storage.joinRequests(user: claims.sub))
        }
        router.put("/v1/conversations/:id/draft") { req, ctx -> Response in
            let claims = try await authenticate(req)
            let body = try await req.decodeJSON(API.SaveDraft.self, limit: limit)
            guard let draft = try await service.saveDraft(claims.sub, try ctx.parameters.id("id"), body) else { return noContent() }
            return json(draft)
        }
        router.delete("/v1/conversations/:id/draft") { req, ctx -> Response in
            let claims = try await authenticate(req)
            _ = try await service.saveDraft(claims.sub, try ctx.parameters.id("id"), API.SaveDraft(text: ""))
            return noContent()
        }
        router.get("/v1/drafts") { req, _ -> Response in
            let claims = try await authenticate(req)
            return json(try await storage.drafts(user: claims.sub))
        }
        router.get("/v1/admin/moderation") { req, _ -> Response in
            _ = try await requireAdmin(req)
            return json(moderationStatus())
        }
        router.post("/v1/admin/moderation/reload") { req, _ -> Response in
            _ = try await requireAdmin(req)
            guard service.moderation.enabled else {
                throw IMError.invalid("content moderation is off; set moderation.words_file in the server's configuration and restart it once")
            }
            try service.moderation.reload()
            return json(moderationStatus())
        }
        router.get("/v1/admin/moderation/blocks") { req, _ -> Response in
            _ = try await requireAdmin(req)
            let n = min(max(req.uri.queryParameters.get("limit").flatMap { Int($0) } ?? 100, 1), 1000)
            return json(try await storage.moderationBlocks(limit: n))
        }
        router.post("/v1/conversations/:id/forward") { req, ctx -> Response in
            let claims = try await authenticate(req)
            let body = try await req.decodeJSON(API.Forward.self, limit: limit)
            let acks = try await service.forward(claims.sub, to: try ctx.parameters.id("id"), body)
            for a in acks where !a.duplicate { runtime.metrics.recordSend() }
            return json(API.Forwarded(acks: acks), status: acks.allSatisfy(\.duplicate) ? .ok : .created)
        }
    }

    /// The word list in force, and the moderation webhook's settings when one is set.
    func moderationStatus() -> API.ModerationStatus {
        var s = service.moderation.status()
        if service.moderationHook != nil {
            s.webhook = config.moderation.webhookUrl
            s.webhookFailure = config.moderation.webhookFailure.rawValue
            s.webhookTimeoutSeconds = config.moderation.webhookTimeoutSeconds
        }
        return s
    }

    enum MuteKind { case notifications, member, group }

    /// The six mute calls: a user's own notification mute, an admin's mute of a member, and of the whole group.
    func mute(_ req: Request, _ ctx: AppContext, _ kind: MuteKind, muted: Bool) async throws -> Response {
        let claims = try await authenticate(req)
        let conv = try ctx.parameters.id("id")
        let until: Int64?
        if muted {
            until = try await req.decodeOptionalJSON(API.Mute.self, limit: limit, empty: API.Mute()).until
        } else {
            until = nil
        }
        switch kind {
        case .notifications: try await service.muteNotifications(claims.sub, conv, muted: muted, until: until)
        case .member: try await service.muteMember(claims.sub, conv, try ctx.parameters.id("user"), muted: muted, until: until)
        case .group: try await service.muteGroup(claims.sub, conv, muted: muted, until: until)
        }
        return noContent()
    }
}
