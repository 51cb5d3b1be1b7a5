import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL

/// What one scrape of a target gave.
public struct ScrapeResult: Sendable {
    public var target: ScrapeTarget
    /// The samples with `job` and `instance` added, plus `up` (1, or 0 with no other samples when the scrape failed).
    public var samples: [Sample]
    public var error: String?
}

/// Fetches targets' metrics over HTTP(S).
public final class Scraper: Sendable {
    let clients: [String: HTTPClient]
    let timeout: Double

    /// Targets with a `ca_file` get their own client trusting that CA; the others share `HTTPClient.shared`.
    public init(targets: [ScrapeTarget], timeout: Double) throws {
        var clients: [String: HTTPClient] = [:]
        for t in targets {
            guard let ca = t.caFile, clients[ca] == nil else { continue }
            var tls = TLSConfiguration.makeClientConfiguration()
            do { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca)) } catch {
                for c in clients.values { try? c.syncShutdown() }
                throw StateError("target \(t.job): cannot read ca_file \(ca): \(error)")
            }
            clients[ca] = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        }
        self.clients = clients
        self.timeout = timeout
    }

    public func shutdown() async {
        for c in clients.values { try? await c.shutdown() }
    }

    public func scrape(_ target: ScrapeTarget) async -> ScrapeResult {
        let base: Labels = ["job": target.job, "instance": target.instance]
        func up(_ v: Double) -> Sample { Sample(name: "up", labels: base, value: v) }
        do {
            var request = HTTPClientRequest(url: target.url)
            request.headers.add(name: "Accept", value: "text/plain;version=0.0.4")
            let client = target.caFile.flatMap { clients[$0] } ?? HTTPClient.shared
            let response = try await client.execute(request, timeout: .milliseconds(Int64(timeout * 1000)))
            let body = try await response.body.collect(upTo: 32 << 20)
            guard response.status.code == 200 else {
                return ScrapeResult(target: target, samples: [up(0)], error: "\(target.url) answered HTTP \(response.status.code)")
            }
            var samples = try Exposition.parse(String(buffer: body)).map { s -> Sample in
                var s = s
                // The target's own job/instance labels are kept as exported_job/exported_instance, as Prometheus does.
                for (k, v) in base {
                    if let own = s.labels[k] { s.labels["exported_" + k] = own }
                    s.labels[k] = v
                }
                s.timestamp = nil
                return s
            }
            samples.append(up(1))
            return ScrapeResult(target: target, samples: samples, error: nil)
        } catch {
            return ScrapeResult(target: target, samples: [up(0)], error: "\(target.url): \(error)")
        }
    }
}
