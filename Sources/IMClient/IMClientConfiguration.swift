import Foundation
import IMCore
import NIOSSL

/// Settings of an ``IMClient``: where the server is, how to trust it, and how long to wait for it.
public struct IMClientConfiguration: Sendable {
    /// The server's base URL, for example `http://127.0.0.1:8080` or `https://chat.example.com` (no path).
    public var baseURL: String
    /// Path of a PEM file with the CA certificate(s) to trust in addition to the system roots (for an internal CA).
    public var trustedCACertificatePath: String?
    /// The name the WebSocket sends as SNI and verifies the server certificate against (default: the URL's host).
    /// When nil and the host is an IP address, the WebSocket verifies only the certificate chain (an IP cannot
    /// be sent as SNI); REST requests always verify the URL's host or IP.
    public var tlsServerName: String?
    /// Sent as `device` when logging in, unless `login` is given another one.
    public var deviceName: String?
    /// Time allowed to open a TCP/TLS connection.
    public var connectTimeout: Duration
    /// Time allowed for a whole REST request (except attachment transfers).
    public var requestTimeout: Duration
    /// Time allowed for an attachment upload or download.
    public var transferTimeout: Duration
    /// The largest response body accepted (attachments included).
    public var maxResponseBytes: Int
    /// The access token is refreshed ahead of time when it expires within this margin.
    public var refreshMargin: Duration
    /// How many times a REST call answered `429` is retried after its `Retry-After` (0: never; the error is thrown).
    public var rateLimitRetries: Int
    /// A `Retry-After` longer than this is never waited for; the `rate_limited` error is thrown instead.
    public var maxRetryAfter: Duration
    /// How many times a `GET` that failed before any answer (a reset or refused connection) is tried again, after
    /// 0.25 s, then 1 s, then 2 s each. A pooled connection can be reset once when the address it went to moved (a
    /// cluster's virtual IP after a failover); a `GET` changes nothing, so trying it again is safe. Other methods are
    /// never retried here: the caller knows whether they may be repeated (a send is, with the same client id).
    public var readRetries: Int
    /// A client certificate and its key (PEM files) to present, for a server that requires one (a cluster
    /// member's own IM listener accepts only certificates from the cluster's CA); nil: none.
    public var clientCertificatePath: String?
    public var clientKeyPath: String?

    /// Creates a configuration; only `baseURL` is required.
    public init(
        baseURL: String,
        trustedCACertificatePath: String? = nil,
        tlsServerName: String? = nil,
        deviceName: String? = nil,
        connectTimeout: Duration = .seconds(10),
        requestTimeout: Duration = .seconds(30),
        transferTimeout: Duration = .seconds(300),
        maxResponseBytes: Int = 64 << 20,
        refreshMargin: Duration = .seconds(30),
        rateLimitRetries: Int = 0,
        maxRetryAfter: Duration = .seconds(10),
        readRetries: Int = 2,
        clientCertificatePath: String? = nil,
        clientKeyPath: String? = nil
    ) {
        self.baseURL = baseURL
        self.trustedCACertificatePath = trustedCACertificatePath
        self.tlsServerName = tlsServerName
        self.deviceName = deviceName
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
        self.transferTimeout = transferTimeout
        self.maxResponseBytes = maxResponseBytes
        self.refreshMargin = refreshMargin
        self.rateLimitRetries = rateLimitRetries
        self.maxRetryAfter = maxRetryAfter
        self.readRetries = readRetries
        self.clientCertificatePath = clientCertificatePath
        self.clientKeyPath = clientKeyPath
    }
}

/// The parts of a validated base URL the client needs.
struct ServerEndpoint: Sendable {
    /// `http://host:port` without a trailing slash.
    let base: String
    /// `ws://host:port/v1/ws` or `wss://…`.
    let webSocketURL: String
    let host: String
    let usesTLS: Bool

    init(_ configured: String) throws {
        var s = configured.trimmingCharacters(in: .whitespacesAndNewlines)
        while s.hasSuffix("/") { s.removeLast() }
        guard let url = URL(string: s), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty else {
            throw IMError(.invalid, "base URL '\(configured)' is not an absolute http(s) URL")
        }
        switch scheme {
        case "http": usesTLS = false
        case "https": usesTLS = true
        default: throw IMError(.invalid, "base URL '\(configured)' must use http or https")
        }
        guard url.path.isEmpty, url.query == nil else {
            throw IMError(.invalid, "base URL '\(configured)' must not have a path or query")
        }
        self.base = s
        self.host = host
        self.webSocketURL = (usesTLS ? "wss" : "ws") + s.dropFirst(scheme.count) + "/v1/ws"
    }

    /// True for an IPv4 or IPv6 literal (which cannot be sent as TLS SNI).
    var hostIsIPAddress: Bool {
        if host.contains(":") || host.hasPrefix("[") { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
    }
}

/// TLS settings derived from the configuration, for REST and for the WebSocket.
struct TLSSettings: Sendable {
    /// For REST requests (nil: the HTTP client's default).
    let rest: TLSConfiguration?
    /// For the WebSocket (nil for plain `ws://`).
    let webSocket: TLSConfiguration?
    /// SNI / verification name for the WebSocket.
    let webSocketServerName: String?

    init(configuration: IMClientConfiguration, endpoint: ServerEndpoint) throws {
        var tls = TLSConfiguration.makeClientConfiguration()
        var custom = false
        if let path = configuration.trustedCACertificatePath {
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMFile(path)
            } catch {
                throw IMError(.invalid, "cannot read CA certificate '\(path)': \(error)")
            }
            guard !certificates.isEmpty else { throw IMError(.invalid, "no certificate in '\(path)'") }
            tls.additionalTrustRoots = [.certificates(certificates)]
            custom = true
        }
        switch (configuration.clientCertificatePath, configuration.clientKeyPath) {
        case (let cert?, let key?):
            do {
                tls.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
                tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            } catch {
                throw IMError(.invalid, "cannot read the client certificate '\(cert)' or its key '\(key)': \(error)")
            }
            guard !tls.certificateChain.isEmpty else { throw IMError(.invalid, "no certificate in '\(cert)'") }
            custom = true
        case (nil, nil):
            break
        default:
            throw IMError(.invalid, "a client certificate needs both clientCertificatePath and clientKeyPath")
        }
        rest = custom ? tls : nil
        guard endpoint.usesTLS else {
            webSocket = nil
            webSocketServerName = nil
            return
        }
        if let name = configuration.tlsServerName {
            webSocketServerName = name
        } else if endpoint.hostIsIPAddress {
            // NIOSSL refuses an IP address as SNI and the WebSocket client always sends one, so send a
            // placeholder name and verify only the chain (the REST client still verifies the IP).
            webSocketServerName = "localhost"
            tls.certificateVerification = .noHostnameVerification
        } else {
            webSocketServerName = nil
        }
        webSocket = tls
    }
}
