import Foundation
import Hummingbird
import IMCore
import IMStorage

/// Outgoing webhooks over REST (docs/protocol.md, "Outgoing webhooks"): admins manage every subscription, a bot
/// (with a token that may read) its own.
extension Routes {
    func webhookCaller(_ request: Request) async throws -> Webhooks.Caller {
        let claims = try await authenticate(request, bots: .needs(.read))
        if claims.isBot { return .bot(claims.sub) }
        guard try await storage.user(id: claims.sub)?.profile.admin == true else {
            throw IMError.forbidden("webhooks are managed by admins, and by bots for their own conversations")
        }
        return .admin
    }

    func addWebhooks(to router: Router<AppContext>) {
        let hooks = router.group("/v1/webhooks")
        let webhooks = runtime.webhooks
        hooks.post { req, _ -> Response in
            let caller = try await webhookCaller(req)
            let body = try await req.decodeJSON(API.NewWebhook.self, limit: limit)
            let created = try await webhooks.create(caller, body) { user, conv in
                do { _ = try await service.requireMember(user, conv); return true } catch let e as IMError where e.code == .notFound { return false }
            }
            return json(created, status: .created)
        }
        hooks.get { req, _ -> Response in
            json(try await webhooks.list(try await webhookCaller(req)))
        }
        hooks.delete(":id") { req, ctx -> Response in
            try await webhooks.delete(try await webhookCaller(req), try ctx.parameters.id("id"))
            return noContent()
        }
        hooks.post(":id/enabled") { req, ctx -> Response in
            let caller = try await webhookCaller(req)
            let body = try await req.decodeJSON(API.SetFlag.self, limit: limit)
            return json(try await webhooks.setEnabled(caller, try ctx.parameters.id("id"), body.value))
        }
        hooks.get(":id/deliveries") { req, ctx -> Response in
            let caller = try await webhookCaller(req)
            let n = req.uri.queryParameters.get("limit").flatMap { Int($0) } ?? 100
            return json(try await webhooks.deliveries(caller, try ctx.parameters.id("id"), limit: n))
        }
        hooks.post(":id/deliveries/:delivery/redeliver") { req, ctx -> Response in
            let caller = try await webhookCaller(req)
            guard let delivery = ctx.parameters.get("delivery") else { throw IMError.notFound("no such delivery") }
            try await webhooks.redeliver(caller, try ctx.parameters.id("id"), delivery: delivery)
            return noContent()
        }
    }
}
