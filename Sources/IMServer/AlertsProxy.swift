import AsyncHTTPClient
import Foundation
import IMCore
import NIOCore

/// `GET /v1/admin/alerts`: the firing alerts as alertd's loopback control API reports them, so the admin console
/// (which only talks to this server) can show them.
struct AlertsProxy: Sendable {
    /// What the console gets: `available` false with a `reason` when alerting is not configured or not answering.
    struct Answer: Sendable, Codable, Equatable {
        var available: Bool
        var alerts: JSONValue?
        var reason: String?
    }

    let controlURL: String
    var timeout: TimeAmount = .seconds(3)
    static let maxBytes = 1 << 20

    func fetch() async -> Answer {
        guard !controlURL.isEmpty else {
            return Answer(available: false, alerts: nil, reason: "alerting is not configured (alerts.control_url is empty)")
        }
        let url = controlURL.hasSuffix("/") ? controlURL + "api/v1/alerts" : controlURL + "/api/v1/alerts"
        do {
            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "Accept", value: "application/json")
            let response = try await HTTPClient.shared.execute(request, timeout: timeout)
            let body = try await response.body.collect(upTo: Self.maxBytes)
            guard response.status == .ok else {
                return Answer(available: false, alerts: nil, reason: "alertd at \(url) answered \(response.status.code)")
            }
            let value = try JSONDecoder().decode(JSONValue.self, from: Data(body.readableBytesView))
            // alertd answers either a list or an object holding `alerts`; the console always gets the list.
            if case .object(let o) = value, let list = o["alerts"] {
                return Answer(available: true, alerts: list, reason: nil)
            }
            return Answer(available: true, alerts: value, reason: nil)
        } catch {
            return Answer(available: false, alerts: nil, reason: "alertd at \(url) did not answer: \(error)")
        }
    }
}
