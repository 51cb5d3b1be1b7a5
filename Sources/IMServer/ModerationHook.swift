import AsyncHTTPClient
import Foundation
import IMCore
import NIOCore

/// The external moderation webhook (docs/operations.md, "The moderation webhook"): each text the word list let
/// through is POSTed to the operator's service, signed like an outgoing webhook (`WebhookSignature`), and the service
/// answers `{"action":"allow"}`, `{"action":"mask","text":…}` or `{"action":"block","reason":…}`. The whole exchange
/// is bounded by `moderation.webhook_timeout_seconds`; a service that fails or is late lets the send through or
/// refuses it, as `moderation.webhook_failure` says.
struct ModerationHook: Sendable {
    enum Decision: Equatable, Sendable {
        case allow
        case mask(String)
        case block(reason: String)
    }

    /// The service's verdict, or why there is none (`failed`).
    enum Outcome: Equatable, Sendable {
        case decided(Decision)
        case failed(String)
    }

    /// Largest answer read from the service.
    static let maxResponseBytes = 64 * 1024

    let url: String
    let secret: String
    let budget: Duration
    let failOpen: Bool
    /// The message text limit: a masked text may not exceed it.
    let textBytes: Int

    /// Reads the secret file and checks the URL the way outgoing webhooks' URLs are checked; nil when no webhook is set.
    static func configured(_ m: ServerConfig.Moderation, policy: WebhookTargetPolicy, textBytes: Int) throws -> ModerationHook? {
        guard !m.webhookUrl.isEmpty else { return nil }
        if let e = policy.checkURL(m.webhookUrl) { throw ConfigError("moderation.webhook_url: \(e.message)") }
        guard let data = FileManager.default.contents(atPath: m.webhookSecretFile),
              let line = String(data: data, encoding: .utf8)?.split(separator: "\n", omittingEmptySubsequences: false).first,
              !line.trimmingCharacters(in: .whitespaces).isEmpty else {
            throw ConfigError("cannot read a secret from moderation.webhook_secret_file \(m.webhookSecretFile); put the secret on its first line and let the server's user read the file")
        }
        return ModerationHook(url: m.webhookUrl, secret: line.trimmingCharacters(in: .whitespacesAndNewlines),
                              budget: .milliseconds(Int64(m.webhookTimeoutSeconds * 1000)), failOpen: m.webhookFailure == .open,
                              textBytes: textBytes)
    }

    /// The body sent: `{"id","type":"moderation.check","created_at","conversation","sender","text"}`.
    static func body(id: String, text: String, user: UserID, conversation: ConversationID, at: Int64) -> String {
        let body: JSONValue = .object([
            "id": .string(id), "type": .string("moderation.check"), "created_at": .number(Double(at)),
            "conversation": .number(Double(conversation)), "sender": .number(Double(user)), "text": .string(text),
        ])
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? e.encode(body)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// What an answer means: a 2xx with a JSON object whose `action` is allow, mask (with a non-empty `text` within the
    /// text limit) or block (`reason` optional); anything else is a failure, saying what was wrong.
    static func decide(status: Int, body: Data, textBytes: Int) -> Outcome {
        guard (200..<300).contains(status) else { return .failed("the moderation service answered \(status)") }
        guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any], let action = object["action"] as? String else {
            return .failed("the moderation service's answer is not a JSON object with an \"action\"")
        }
        switch action {
        case "allow":
            return .decided(.allow)
        case "mask":
            guard let text = object["text"] as? String, !text.isEmpty, text.utf8.count <= textBytes else {
                return .failed("the moderation service said mask without a \"text\" of 1 to \(textBytes) bytes")
            }
            return .decided(.mask(text))
        case "block":
            let reason = (object["reason"] as? String).map { String($0.prefix(200)) } ?? ""
            return .decided(.block(reason: reason.isEmpty ? "refused by the moderation service" : reason))
        default:
            return .failed("the moderation service answered the unknown action \"\(action.prefix(40))\" (allow, mask or block)")
        }
    }

    /// Asks the service about `text`, within the budget.
    func check(_ text: String, user: UserID, conversation: ConversationID) async -> Outcome {
        let now = nowMillis()
        let body = Self.body(id: "mod_" + TokenService.randomToken(bytes: 12), text: text, user: user, conversation: conversation, at: now)
        let url = self.url, signature = WebhookSignature.header(secret: secret, timestamp: now / 1000, body: body)
        let budget = self.budget, textBytes = self.textBytes
        // The request races the budget; whichever ends first decides, and the other is cancelled (AsyncHTTPClient
        // ends a cancelled request at once, so the group does not wait out a slow service).
        return await withTaskGroup(of: Outcome?.self) { group in
            group.addTask {
                var request = HTTPClientRequest(url: url)
                request.method = .POST
                request.headers.add(name: "Content-Type", value: "application/json")
                request.headers.add(name: "User-Agent", value: "Warbler-Moderation/\(WarblerVersion.version)")
                request.headers.add(name: "X-Warbler-Event", value: "moderation.check")
                request.headers.add(name: "X-Warbler-Signature", value: signature)
                request.body = .bytes(ByteBuffer(string: body))
                do {
                    let response = try await moderationHTTPClient.execute(request, timeout: .nanoseconds(budget.nanoseconds))
                    let bytes = try await response.body.collect(upTo: Self.maxResponseBytes)
                    return Self.decide(status: Int(response.status.code), body: Data(bytes.readableBytesView), textBytes: textBytes)
                } catch is CancellationError {
                    return nil
                } catch {
                    return .failed("the moderation service could not be reached or did not answer in time (\(error))")
                }
            }
            group.addTask {
                try? await Task.sleep(for: budget)
                return Task.isCancelled ? nil : .failed("the moderation service did not answer within \(budget)")
            }
            var outcome: Outcome = .failed("the moderation service did not answer")
            for await result in group {
                if let result {
                    outcome = result
                    break
                }
            }
            group.cancelAll()
            return outcome
        }
    }
}

/// The moderation webhook's client: redirects are not followed (a 3xx is no verdict), answers are not decompressed.
/// One for the process, like `HTTPClient.shared`: a global is never deinitialised, so it needs no shutdown.
private let moderationHTTPClient: HTTPClient = {
    var configuration = HTTPClient.Configuration(redirectConfiguration: .disallow)
    configuration.decompression = .disabled
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
}()

extension Duration {
    /// Whole nanoseconds (for APIs that take a TimeAmount).
    var nanoseconds: Int64 { components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000 }
}
