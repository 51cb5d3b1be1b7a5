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
    /// An alert's value may be ±Inf or NaN (`warbler_backup_age_seconds` is +Inf before the first backup); JSON has no
    /// such numbers, so they travel as Prometheus spells them, as strings.
    static let nonFinite = (positiveInfinity: "+Inf", negativeInfinity: "-Inf", nan: "NaN")

    static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.dateEncodingStrategy = .iso8601
        e.outputFormatting = [.sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: nonFinite.positiveInfinity,
                                                                negativeInfinity: nonFinite.negativeInfinity, nan: nonFinite.nan)
        return e
    }

    static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: nonFinite.positiveInfinity,
                                                                  negativeInfinity: nonFinite.negativeInfinity, nan: nonFinite.nan)
        return d
    }

    static func response<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let data: Data
        do { data = try encoder().encode(value) } catch {
            // Never an empty object in place of what was asked for: say what went wrong.
            let body = #"{"error":"alertd cannot encode its answer"}"#
            return Response(status: .internalServerError, headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        response(APIErrorBody(error: message), status: status)
    }
}

/// The loopback control API: GET /api/v1/alerts, GET/POST /api/v1/silences, DELETE /api/v1/silences/{id},
/// GET /-/healthy. Silences (which mute alerts) need `Authorization: Bearer TOKEN` with the control token, which only
/// root and the service user can read; at most `maxSilences` are active at once.
public enum ControlAPI {
    /// Active silences alertd keeps at most; more are refused (429) until some end or are removed.
    public static let maxSilences = 1000

    public static func router(service: AlertService, token: String) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/-/healthy") { _, _ in "ok\n" }
        router.get("/api/v1/alerts") { _, _ in ControlJSON.response(await service.alerts()) }
        let silences = router.group("/api/v1/silences").add(middleware: BearerToken<BasicRequestContext>(token: token))
        silences.get { _, _ in ControlJSON.response(await service.silences()) }
        silences.post { request, _ -> Response in
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
            guard await service.addSilence(silence, limit: maxSilences) else {
                return ControlJSON.error(.tooManyRequests, "alertd already holds \(maxSilences) active silences; remove some (warbler alerts unsilence ID) first")
            }
            return ControlJSON.response(silence, status: .created)
        }
        silences.delete(":id") { _, context -> Response in
            let id = context.parameters.get("id") ?? ""
            guard await service.removeSilence(id) else { return ControlJSON.error(.notFound, "no silence with id \(id)") }
            return Response(status: .noContent)
        }
        return router
    }
}

/// Lets a request through only with `Authorization: Bearer TOKEN`, compared in constant time.
struct BearerToken<Context: RequestContext>: RouterMiddleware {
    let token: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard Self.matches(request.headers[.authorization], token: token) else {
            return ControlJSON.error(.unauthorized, "silences need alertd's control token: run this as root (it reads the token file named by alerts.yaml's global.control_token_file, by default control.token beside the state file)")
        }
        return try await next(request, context)
    }

    static func matches(_ header: String?, token: String) -> Bool {
        guard !token.isEmpty, let header, header.hasPrefix("Bearer ") else { return false }
        let given = Array(header.dropFirst("Bearer ".count).utf8), expected = Array(token.utf8)
        guard given.count == expected.count else { return false }
        return zip(given, expected).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
