import Foundation
import Hummingbird
import NIOCore

/// What `POST /api/v1/silences` takes.
public struct SilenceRequest: Codable, Sendable {
    /// Matchers as the CLI writes them (`alertname=DiskAlmostFull`, `instance=~"node1.*"`).
    public var matchers: [String]
    /// Seconds from now until the silence ends.
    public var durationSeconds: Double
    public var comment: String
    public var createdBy: String

    public init(matchers: [String], durationSeconds: Double, comment: String, createdBy: String) {
        self.matchers = matchers
        self.durationSeconds = durationSeconds
        self.comment = comment
        self.createdBy = createdBy
    }
}

/// A refusal from the control API.
public struct APIErrorBody: Codable, Sendable {
    public var error: String
}

enum ControlJSON {
    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.sortedKeys]
        return e
    }

    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }

    static func response<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? encoder().encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        response(APIErrorBody(error: message), status: status)
    }
}

/// The loopback control API: GET /api/v1/alerts, GET/POST /api/v1/silences, DELETE /api/v1/silences/{id},
/// GET /-/healthy.
public enum ControlAPI {
    public static func router(service: AlertService) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/-/healthy") { _, _ in "ok\n" }
        router.get("/api/v1/alerts") { _, _ in ControlJSON.response(await service.alerts()) }
        router.get("/api/v1/silences") { _, _ in ControlJSON.response(await service.silences()) }
        router.post("/api/v1/silences") { request, _ -> Response in
            let body = try await request.body.collect(upTo: 64 * 1024)
            let req: SilenceRequest
            do { req = try ControlJSON.decoder().decode(SilenceRequest.self, from: Data(body.readableBytesView)) } catch {
                return ControlJSON.error(.badRequest, "the body must be JSON {matchers, durationSeconds, comment, createdBy}")
            }
            let matchers: [LabelMatcher]
            do { matchers = try Matchers.parse(req.matchers) } catch {
                return ControlJSON.error(.badRequest, "\(error)")
            }
            guard req.durationSeconds > 0, req.durationSeconds.isFinite else {
                return ControlJSON.error(.badRequest, "durationSeconds must be positive")
            }
            guard !req.comment.trimmingCharacters(in: .whitespaces).isEmpty else {
                return ControlJSON.error(.badRequest, "a silence needs a comment saying why")
            }
            let now = Date()
            let silence = Silence(matchers: matchers, startsAt: now, endsAt: now.addingTimeInterval(req.durationSeconds),
                                  comment: req.comment, createdBy: req.createdBy)
            await service.addSilence(silence)
            return ControlJSON.response(silence, status: .created)
        }
        router.delete("/api/v1/silences/:id") { _, context -> Response in
            let id = context.parameters.get("id") ?? ""
            guard await service.removeSilence(id) else { return ControlJSON.error(.notFound, "no silence with id \(id)") }
            return Response(status: .noContent)
        }
        return router
    }
}
