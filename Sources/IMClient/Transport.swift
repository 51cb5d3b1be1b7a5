import AsyncHTTPClient
import Foundation
import IMCore
import Logging
import NIOCore
import NIOHTTP1

/// Performs raw REST requests and maps failures to `IMError`. No session logic.
struct Transport: Sendable {
    struct Response: Sendable {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: ByteBuffer

        var isSuccess: Bool { (200..<300).contains(status.code) }
        var data: Data { Data(body.readableBytesView) }
    }

    let http: HTTPClient
    let endpoint: ServerEndpoint
    let tls: TLSSettings
    let configuration: IMClientConfiguration
    let logger: Logger

    static let jsonEncoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes]
        return e
    }()

    static func encode<T: Encodable>(_ value: T) throws -> ByteBuffer {
        do {
            return ByteBuffer(bytes: try jsonEncoder.encode(value))
        } catch {
            throw IMError(.invalid, "cannot encode request body: \(error)")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, from response: Response) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: response.data)
        } catch {
            throw IMError(.internal, "unexpected response body (status \(response.status.code)) for \(T.self): \(error)")
        }
    }

    /// Percent-encodes everything except RFC 3986 unreserved characters.
    static func escape(_ s: String) -> String {
        let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return s.addingPercentEncoding(withAllowedCharacters: unreserved) ?? s
    }

    /// Sends one request. Retries `429` answers, and a `GET` that got no answer, per the configuration. Throws only for transport failures
    /// (as `IMError(.unavailable)`), oversized bodies and cancellation; HTTP error statuses are returned.
    func perform(
        _ method: HTTPMethod,
        _ path: String,
        query: [(String, String)] = [],
        body: ByteBuffer? = nil,
        contentType: String? = "application/json",
        token: String?,
        timeout: Duration? = nil
    ) async throws -> Response {
        var url = endpoint.base + path
        if !query.isEmpty {
            url += "?" + query.map { "\(Self.escape($0.0))=\(Self.escape($0.1))" }.joined(separator: "&")
        }
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Accept", value: "application/json")
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            request.body = .bytes(body)
            if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
        }
        if let tls = tls.rest { request.tlsConfiguration = tls }

        var retries = 0, readRetries = 0
        while true {
            let response: Response
            do {
                response = try await execute(request, timeout: timeout ?? configuration.requestTimeout)
            } catch let failure as NoAnswer {
                // Not after the request's own deadline: that would multiply the time a caller waits.
                guard method == .GET, !failure.timedOut, readRetries < configuration.readRetries else { throw failure.error }
                let wait: Duration = readRetries == 0 ? .milliseconds(250) : readRetries == 1 ? .seconds(1) : .seconds(2)
                readRetries += 1
                logger.debug("no answer; trying again", metadata: ["path": "\(path)", "after": "\(wait)", "error": "\(failure.error.message)"])
                try await Task.sleep(for: wait)
                continue
            }
            if response.status == .tooManyRequests, retries < configuration.rateLimitRetries,
               let wait = Self.retryAfter(response.headers), wait <= configuration.maxRetryAfter {
                retries += 1
                logger.debug("rate limited; retrying", metadata: ["path": "\(path)", "after": "\(wait)"])
                try await Task.sleep(for: wait)
                continue
            }
            return response
        }
    }

    private func execute(_ request: HTTPClientRequest, timeout: Duration) async throws -> Response {
        do {
            let response = try await http.execute(request, timeout: TimeAmount(timeout), logger: logger)
            let body: ByteBuffer
            do {
                body = try await response.body.collect(upTo: configuration.maxResponseBytes)
            } catch let error as NIOTooManyBytesError {
                throw IMError(.tooLarge, "response larger than \(configuration.maxResponseBytes) bytes: \(error)")
            }
            return Response(status: response.status, headers: response.headers, body: body)
        } catch let error as IMError {
            throw error
        } catch {
            if Task.isCancelled || error is CancellationError { throw CancellationError() }
            throw NoAnswer(error: IMError(.unavailable, "cannot reach \(endpoint.base): \(error)"),
                           timedOut: (error as? HTTPClientError) == .deadlineExceeded)
        }
    }

    /// A request that got no answer at all (`perform` turns it into its `error`).
    private struct NoAnswer: Error {
        var error: IMError
        var timedOut: Bool
    }

    /// Seconds from a `Retry-After` header (delta-seconds form only).
    static func retryAfter(_ headers: HTTPHeaders) -> Duration? {
        guard let value = headers.first(name: "Retry-After"), let seconds = Double(value.trimmingCharacters(in: .whitespaces)),
              seconds >= 0, seconds.isFinite else { return nil }
        return .milliseconds(Int64(seconds * 1000))
    }

    /// The `IMError` for a non-2xx response: the body's error when it has one, else one derived from the status.
    static func error(from response: Response) -> IMError {
        var error: IMError
        if let body = try? JSONDecoder().decode(API.ErrorBody.self, from: response.data) {
            error = body.error
        } else {
            let code: ErrorCode = switch response.status.code {
            case 400: .invalid
            case 401: .unauthorized
            case 403: .forbidden
            case 404: .notFound
            case 409: .conflict
            case 413: .tooLarge
            case 429: .rateLimited
            case 502, 503, 504: .unavailable
            default: .internal
            }
            let text = String(decoding: response.body.readableBytesView.prefix(200), as: UTF8.self)
            error = IMError(code, "HTTP \(response.status.code)" + (text.isEmpty ? "" : ": \(text)"))
        }
        if response.status == .tooManyRequests, let wait = retryAfter(response.headers) {
            error.message += " (retry after \(wait))"
        }
        return error
    }
}
