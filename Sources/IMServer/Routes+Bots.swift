import Foundation
import Hummingbird
import IMCore
import IMStorage

/// Bot administration and the bots' REST send (docs/protocol.md, "Bots").
extension Routes {
    func addBots(to router: Router<AppContext>) {
        let admin = router.group("/v1/admin/bots")
        admin.post { req, _ -> Response in
            _ = try await requireAdmin(req)
            let body = try await req.decodeJSON(API.AdminCreateBot.self, limit: limit)
            return json(try await runtime.createBot(username: body.username, displayName: body.displayName, description: body.description,
                                                    scopes: body.scopes), status: .created)
        }
        admin.get { req, _ -> Response in
            _ = try await requireAdmin(req)
            return json(try await runtime.listBots())
        }
        admin.post(":id/token") { req, ctx -> Response in
            _ = try await requireAdmin(req)
            let body = try await req.decodeJSON(API.AdminRotateBotToken.self, limit: limit)
            return json(try await runtime.rotateBotToken(id: try ctx.parameters.id("id"), scopes: body.scopes), status: .created)
        }
        admin.delete(":id/token") { req, ctx -> Response in
            _ = try await requireAdmin(req)
            return json(try await runtime.revokeBotTokens(id: try ctx.parameters.id("id")))
        }

        // A bot's send over REST: the same checks, order and idempotence as a WebSocket send (the group commit
        // orders it; a repeated cid answers with the stored message and `duplicate: true`).
        router.post("/v1/bot/messages") { req, _ -> Response in
            let claims = try await authenticate(req, bots: .needs(.send))
            guard claims.isBot else { throw IMError.forbidden("this endpoint is for bot tokens; people send over the WebSocket") }
            let body = try await req.decodeJSON(ClientFrame.Send.self, limit: limit)
            try service.checkBotSendRate(claims.sub)
            let message = try await service.prepare(body, from: claims.sub)
            switch try await storage.submit(message).result() {
            case .success(let r):
                if !r.duplicate { runtime.metrics.recordSend() }
                return json(ServerFrame.Ack(cid: body.cid, conv: r.message.conversation, seq: r.message.seq, ts: r.message.ts,
                                            duplicate: r.duplicate), status: r.duplicate ? .ok : .created)
            case .failure(let e):
                throw e
            }
        }
    }
}
