import Hummingbird
import IMCore
import IMStorage

/// REST calls for mutes, forwarding and announcements (docs/protocol.md, "Mutes", "Forwarding", "Announcements").
extension Routes {
    func addGroupFeatures(to router: Router<AppContext>) {
        router.put("/v1/conversations/:id/mute") { req, ctx -> Response in
            let claims = try await authenticate(req)
            let body = try await req.decodeOptionalJSON(API.Mute.self, limit: limit, empty: API.Mute())
            try await service.muteNotifications(claims.sub, try ctx.parameters.id("id"), muted: true, until: body.until)
            return noContent()
        }
        router.delete("/v1/conversations/:id/mute") { req, ctx -> Response in
            let claims = try await authenticate(req)
            try await service.muteNotifications(claims.sub, try ctx.parameters.id("id"), muted: false, until: nil)
            return noContent()
        }
        router.put("/v1/conversations/:id/members/:user/mute") { req, ctx -> Response in
            let claims = try await authenticate(req)
            let body = try await req.decodeOptionalJSON(API.Mute.self, limit: limit, empty: API.Mute())
            try await service.muteMember(claims.sub, try ctx.parameters.id("id"), try ctx.parameters.id("user"), muted: true, until: body.until)
            return noContent()
        }
        router.delete("/v1/conversations/:id/members/:user/mute") { req, ctx -> Response in
            let claims = try await authenticate(req)
            try await service.muteMember(claims.sub, try ctx.parameters.id("id"), try ctx.parameters.id("user"), muted: false, until: nil)
            return noContent()
        }
        router.put("/v1/conversations/:id/mute-all") { req, ctx -> Response in
            let claims = try await authenticate(req)
            let body = try await req.decodeOptionalJSON(API.Mute.self, limit: limit, empty: API.Mute())
            try await service.muteGroup(claims.sub, try ctx.parameters.id("id"), muted: true, until: body.until)
            return noContent()
        }
        router.delete("/v1/conversations/:id/mute-all") { req, ctx -> Response in
            let claims = try await authenticate(req)
            try await service.muteGroup(claims.sub, try ctx.parameters.id("id"), muted: false, until: nil)
            return noContent()
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
        router.post("/v1/conversations/:id/forward") { req, ctx -> Response in
            let claims = try await authenticate(req)
            let body = try await req.decodeJSON(API.Forward.self, limit: limit)
            let acks = try await service.forward(claims.sub, to: try ctx.parameters.id("id"), body)
            for a in acks where !a.duplicate { runtime.metrics.recordSend() }
            return json(API.Forwarded(acks: acks), status: acks.allSatisfy(\.duplicate) ? .ok : .created)
        }
    }
}
