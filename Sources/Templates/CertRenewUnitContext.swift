/// What the certificate-renewal job's units (`warbler-cert-renew.service` and `.timer`) are rendered from.
public struct CertRenewUnitContext: Sendable, Equatable {
    /// The executable as the host sees it.
    public var binary = "/opt/warbler/current/bin/warbler"
    /// The internal CA's key: the job runs only where it exists.
    public var caKey = "/etc/warbler/tls/ca.key"
    /// The one directory the job writes.
    public var tlsDir = "/etc/warbler/tls"
    /// Who owns the server key (named in the unit's comment).
    public var user = "warbler"

    public init() {}

    func view() throws -> [String: Any] {
        for (what, value) in [("binary", binary), ("CA key path", caKey), ("TLS directory", tlsDir), ("user", user)] {
            try ServiceUnitContext.checkUnitValue(value, what: what)
        }
        return ["binary": binary, "caKey": caKey, "tlsDir": tlsDir, "user": user]
    }
}

extension TemplateSet {
    /// `/etc/systemd/system/warbler-cert-renew.service`.
    public static let certRenewService = "warbler-cert-renew.service"
    /// `/etc/systemd/system/warbler-cert-renew.timer`.
    public static let certRenewTimer = "warbler-cert-renew.timer"

    /// Renders the renewal job's oneshot service.
    public func renderCertRenewService(_ context: CertRenewUnitContext) throws -> String {
        try render(Self.certRenewService, context.view())
    }

    /// Renders the timer that starts the renewal job daily.
    public func renderCertRenewTimer(_ context: CertRenewUnitContext) throws -> String {
        try render(Self.certRenewTimer, context.view())
    }
}
