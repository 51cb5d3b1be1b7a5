import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Talks to a running alertd's control API (what `warbler alerts …` and `warbler status` use).
public struct AlertsClient: Sendable {
    /// `http://127.0.0.1:9102` by default.
    public var baseURL: String
    public var timeout: Double
    /// alertd's control token (`ControlToken`), which silences need; nil: only the alert list works.
    public var token: String?

    public init(baseURL: String = "http://127.0.0.1:9102", timeout: Double = 5, token: String? = nil) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.timeout = timeout
        self.token = token
    }

    func call(_ method: HTTPMethod, _ path: String, body: Data? = nil) async throws -> (status: Int, body: Data) {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        do {
            let response = try await HTTPClient.shared.execute(request, timeout: .milliseconds(Int64(timeout * 1000)))
            let buffer = try await response.body.collect(upTo: 16 << 20)
            return (Int(response.status.code), Data(buffer.readableBytesView))
        } catch {
            throw AlertsClientError("cannot reach alertd at \(baseURL) (\(error)); is warbler-alertd running? (systemctl status warbler-alertd)")
        }
    }

    func decode<T: Decodable>(_ type: T.Type, _ r: (status: Int, body: Data), expect: Int = 200) throws -> T {
        guard r.status == expect else {
            let message = (try? ControlJSON.decoder().decode(APIErrorBody.self, from: r.body))?.error ?? String(decoding: r.body, as: UTF8.self)
            throw AlertsClientError("alertd refused: \(message) (HTTP \(r.status))")
        }
        do { return try ControlJSON.decoder().decode(type, from: r.body) } catch {
            throw AlertsClientError("alertd at \(baseURL) answered something that is not its API: \(error)")
        }
    }

    /// Every pending, firing and suppressed alert.
    public func alerts() async throws -> [AlertView] {
        try decode([AlertView].self, try await call(.GET, "/api/v1/alerts"))
    }

    public func silences() async throws -> [Silence] {
        try decode([Silence].self, try await call(.GET, "/api/v1/silences"))
    }

    /// Creates a silence starting now; `matchers` as `NAME=VALUE` and friends.
    public func silence(matchers: [String], duration: Double, comment: String, createdBy: String) async throws -> Silence {
        let body = try ControlJSON.encoder().encode(SilenceRequest(matchers: matchers, durationSeconds: duration, comment: comment, createdBy: createdBy))
        return try decode(Silence.self, try await call(.POST, "/api/v1/silences", body: body), expect: 201)
    }

    /// Ends the silence `id`; throws when alertd has no such silence.
    public func unsilence(_ id: String) async throws {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-"))
        guard !id.isEmpty, id.unicodeScalars.allSatisfy(allowed.contains) else { throw AlertsClientError("'\(id)' is not a silence id") }
        let r = try await call(.DELETE, "/api/v1/silences/\(id)")
        if r.status != 204 { _ = try decode(APIErrorBody.self, r, expect: 204) }
    }

    /// The alerts that are firing now, silenced ones included (for `warbler status`).
    public func firingAlerts() async throws -> [AlertView] {
        try await alerts().filter { $0.state != "pending" }
    }
}

/// alertd is unreachable or refused a request.
public struct AlertsClientError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// `warbler status` calls this: the firing alerts of the alertd at `controlURL`.
public func firingAlerts(controlURL: String = "http://127.0.0.1:9102") async throws -> [AlertView] {
    try await AlertsClient(baseURL: controlURL).firingAlerts()
}
