import Foundation
import Hummingbird
import IMCore
import NIOCore

/// The request context for the REST API: the standard storage plus the peer's address (for rate limits).
public struct AppContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: String

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress?.ipAddress ?? "unknown"
    }
}

extension IMError {
    var status: HTTPResponse.Status {
        switch code {
        case .badFrame, .invalid, .unknownType: .badRequest
        case .unauthorized, .notAuthenticated: .unauthorized
        case .forbidden, .blocked, .registrationClosed, .muted: .forbidden
        case .notFound: .notFound
        case .conflict, .recallWindow, .groupFull: .conflict
        case .tooLarge: .contentTooLarge
        case .rateLimited: .tooManyRequests
        case .unavailable: .serviceUnavailable
        case .internal: .internalServerError
        }
    }
}

/// Turns every error into a JSON `{"error":{"code","message"}}` body with a fitting status.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = AppContext
    let metrics: ServerMetrics

    func handle(_ request: Request, context: AppContext, next: (Request, AppContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as IMError {
            metrics.errors.increment()
            return errorResponse(e)
        } catch let e as RateLimited {
            metrics.errors.increment()
            var r = errorResponse(IMError(e.code, e.message))
            r.headers[.retryAfter] = String(Int(e.retryAfter.rounded(.up)))
            return r
        } catch let e as HTTPError {
            metrics.errors.increment()
            let code: ErrorCode = switch e.status {
            case .contentTooLarge: .tooLarge
            case .notFound: .notFound
            case .methodNotAllowed, .badRequest: .invalid
            case .unauthorized: .unauthorized
            default: .internal
            }
            let msg = e.status == .notFound ? "no such endpoint" : (e.body ?? e.status.reasonPhrase)
            var r = errorResponse(IMError(code, msg))
            r.status = e.status
            return r
        } catch {
            metrics.errors.increment()
            context.logger.error("request failed: \(error)")
            return errorResponse(IMError(.internal, "internal error; retry later"))
        }
    }
}

/// A request refused for now, answered with Retry-After: `rateLimited` (429) when the caller went over its own
/// limit, `unavailable` (503) when the server is saturated.
struct RateLimited: Error {
    var message: String
    var retryAfter: Double
    var code: ErrorCode = .rateLimited
}

func errorResponse(_ e: IMError) -> Response {
    var r = json(API.ErrorBody(error: e))
    r.status = e.status
    return r
}

let jsonEncoder: JSONEncoder = {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return e
}()

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
    let data = (try? jsonEncoder.encode(value)) ?? Data("{}".utf8)
    return Response(status: status, headers: [.contentType: "application/json; charset=utf-8"],
                    body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

func noContent() -> Response { Response(status: .noContent) }

extension Request {
    /// The body as `T`, or `empty` when there is no body at all (for calls whose body is optional).
    func decodeOptionalJSON<T: Decodable>(_ type: T.Type, limit: Int, empty: T) async throws -> T {
        let buffer: ByteBuffer
        do { buffer = try await body.collect(upTo: limit) } catch {
            throw IMError(.tooLarge, "request body is larger than \(limit) bytes")
        }
        guard buffer.readableBytes > 0 else { return empty }
        return try Self.decode(type, from: buffer)
    }

    /// Decodes a JSON body of at most `limit` bytes, answering malformed input with `bad_frame`.
    func decodeJSON<T: Decodable>(_ type: T.Type, limit: Int) async throws -> T {
        let buffer: ByteBuffer
        do { buffer = try await body.collect(upTo: limit) } catch {
            throw IMError(.tooLarge, "request body is larger than \(limit) bytes")
        }
        return try Self.decode(type, from: buffer)
    }

    static func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer: buffer))
        } catch let DecodingError.keyNotFound(k, _) {
            throw IMError(.badFrame, "missing field '\(k.stringValue)'")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw IMError(.badFrame, "wrong type at '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))'")
        } catch {
            throw IMError(.badFrame, "the body must be a JSON object as documented")
        }
    }
}

extension Parameters {
    func id(_ name: String) throws -> Int64 {
        guard let s = self.get(name), let v = Int64(s) else { throw IMError.notFound("no such \(name)") }
        return v
    }
}
