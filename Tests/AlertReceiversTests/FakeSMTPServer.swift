import Crypto
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import Synchronization
import X509

/// A certificate authority and a server certificate for 127.0.0.1 and localhost, made for one test run.
struct TestPKI {
    let caPEM: String
    let serverCertPEM: String
    let serverKeyPEM: String

    init() throws {
        let now = Date()
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("Warbler test CA") }
        let caPublic = Certificate.PublicKey(caKey.publicKey)
        let ca = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: caPublic,
            notValidBefore: now - 3600, notValidAfter: now + 86400, issuer: caName, subject: caName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: caPublic)
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey))
        let key = P256.Signing.PrivateKey()
        let leaf = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: Certificate.PublicKey(key.publicKey),
            notValidBefore: now - 3600, notValidAfter: now + 86400, issuer: caName,
            subject: try DistinguishedName { CommonName("localhost") },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectAlternativeNames([.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))])
            },
            issuerPrivateKey: Certificate.PrivateKey(caKey))
        caPEM = try ca.serializeAsPEM().pemString + "\n"
        serverCertPEM = try leaf.serializeAsPEM().pemString + "\n"
        serverKeyPEM = key.pemRepresentation + "\n"
    }

    /// Writes the CA to a temporary file (what `email.tls_ca_file` names).
    func writeCA() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-test-ca-\(UUID().uuidString).pem").path
        try caPEM.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

/// An SMTP server on 127.0.0.1, port 0, speaking enough real SMTP to test a client: EHLO with STARTTLS and AUTH
/// advertised, the TLS upgrade, AUTH PLAIN and LOGIN against one user, MAIL/RCPT/DATA with dot-unstuffing.
final class FakeSMTPServer: Sendable {
    struct Options: Sendable {
        var offerStartTLS = true
        var authMechanisms = ["PLAIN", "LOGIN"]
        var username = "alerts"
        var password = "s3cret pass"
        var rejectAuth = false
        var rejectRecipients: Set<String> = []
        /// Refuse MAIL unless logged in.
        var requireAuth = true
        /// Do not answer the greeting at all (a hung server).
        var silent = false
        /// TLS from the first byte (SMTPS) instead of STARTTLS.
        var implicitTLS = false
    }

    /// One mail as the server took it.
    struct Delivery: Sendable {
        var mailFrom: String
        var recipients: [String]
        /// The DATA lines as they came over the wire (still dot-stuffed).
        var rawLines: [String]
        /// The message after removing the dot-stuffing.
        var message: String
        var overTLS: Bool
        var authMechanism: String?
        var authUser: String?
    }

    struct Record: Sendable {
        var deliveries: [Delivery] = []
        var commands: [String] = []
        var authAttempts: [(mechanism: String, user: String, password: String, overTLS: Bool)] = []
    }

    let options: Options
    let record = Mutex(Record())
    private let channel = Mutex<(any Channel)?>(nil)
    private let boundPort = Mutex(0)
    var port: Int { boundPort.withLock { $0 } }

    init(options: Options = Options()) {
        self.options = options
    }

    var deliveries: [Delivery] { record.withLock { $0.deliveries } }

    func start(pki: TestPKI) async throws {
        let tls = try NIOSSLContext(configuration: .makeServerConfiguration(
            certificateChain: [.certificate(try NIOSSLCertificate(bytes: Array(pki.serverCertPEM.utf8), format: .pem))],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(pki.serverKeyPEM.utf8), format: .pem))))
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    if self.options.implicitTLS {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls))
                    }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder()))
                    try channel.pipeline.syncOperations.addHandler(SMTPServerHandler(server: self, tls: tls))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        boundPort.withLock { $0 = channel.localAddress?.port ?? 0 }
        self.channel.withLock { $0 = channel }
    }

    func stop() async throws {
        try await channel.withLock { $0 }?.close()
    }
}

/// Lines without their CRLF (or LF).
private struct LineDecoder: ByteToMessageDecoder {
    typealias InboundOut = String

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let lf = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else { return .needMoreData }
        var line = buffer.readString(length: lf - buffer.readerIndex) ?? ""
        buffer.moveReaderIndex(forwardBy: 1)
        if line.hasSuffix("\r") { line.removeLast() }
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        .needMoreData
    }
}

private final class SMTPServerHandler: ChannelInboundHandler {
    typealias InboundIn = String
    typealias OutboundOut = ByteBuffer

    enum Mode {
        case command
        case authPlain
        case authLoginUser
        case authLoginPassword(user: String)
        case data
    }

    let server: FakeSMTPServer
    let tls: NIOSSLContext
    var mode = Mode.command
    var overTLS = false
    var authed: (mechanism: String, user: String)?
    var mailFrom: String?
    var recipients: [String] = []
    var dataLines: [String] = []

    init(server: FakeSMTPServer, tls: NIOSSLContext) {
        self.server = server
        self.tls = tls
        self.overTLS = server.options.implicitTLS
    }

    var options: FakeSMTPServer.Options { server.options }

    func channelActive(context: ChannelHandlerContext) {
        if !options.silent { send(context, "220 fake.test ESMTP ready") }
        context.fireChannelActive()
    }

    func send(_ context: ChannelHandlerContext, _ lines: String...) {
        var buffer = context.channel.allocator.buffer(capacity: 64)
        for line in lines { buffer.writeString(line + "\r\n") }
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    func checkCredentials(_ context: ChannelHandlerContext, mechanism: String, user: String, password: String) {
        server.record.withLock { $0.authAttempts.append((mechanism, user, password, overTLS)) }
        if options.rejectAuth || user != options.username || password != options.password {
            send(context, "535 5.7.8 Error: authentication failed: bad user name or password")
        } else {
            authed = (mechanism, user)
            send(context, "235 2.7.0 Authentication successful")
        }
        mode = .command
    }

    func plain(_ context: ChannelHandlerContext, _ token: String) {
        let parts = (Self.base64(token) ?? "").split(separator: "\u{0}", omittingEmptySubsequences: false).map(String.init)
        checkCredentials(context, mechanism: "PLAIN", user: parts.count == 3 ? parts[1] : "", password: parts.count == 3 ? parts[2] : "")
    }

    static func base64(_ text: String) -> String? {
        Data(base64Encoded: text).map { String(decoding: $0, as: UTF8.self) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        switch mode {
        case .data:
            if line == "." {
                let message = dataLines.map { $0.hasPrefix(".") ? String($0.dropFirst()) : $0 }.joined(separator: "\r\n") + "\r\n"
                let delivery = FakeSMTPServer.Delivery(
                    mailFrom: mailFrom ?? "", recipients: recipients, rawLines: dataLines, message: message,
                    overTLS: overTLS, authMechanism: authed?.mechanism, authUser: authed?.user)
                server.record.withLock { $0.deliveries.append(delivery) }
                mode = .command
                mailFrom = nil
                recipients = []
                dataLines = []
                send(context, "250 2.0.0 Ok: queued as TEST1")
            } else {
                dataLines.append(line)
            }
            return
        case .authPlain:
            plain(context, line)
            return
        case .authLoginUser:
            mode = .authLoginPassword(user: Self.base64(line) ?? "")
            send(context, "334 UGFzc3dvcmQ6")
            return
        case .authLoginPassword(let user):
            checkCredentials(context, mechanism: "LOGIN", user: user, password: Self.base64(line) ?? "")
            return
        case .command:
            break
        }
        server.record.withLock { $0.commands.append(line) }
        let upper = line.uppercased()
        if upper.hasPrefix("EHLO ") {
            var lines = ["fake.test greets \(line.dropFirst(5))", "8BITMIME", "SIZE 10240000"]
            if options.offerStartTLS && !overTLS { lines.append("STARTTLS") }
            if !options.authMechanisms.isEmpty && (overTLS || !options.offerStartTLS) {
                lines.append("AUTH " + options.authMechanisms.joined(separator: " "))
            }
            var buffer = context.channel.allocator.buffer(capacity: 128)
            for (i, text) in lines.enumerated() {
                buffer.writeString("250\(i == lines.count - 1 ? " " : "-")\(text)\r\n")
            }
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        } else if upper.hasPrefix("HELO ") {
            send(context, "250 fake.test")
        } else if upper == "STARTTLS" {
            guard options.offerStartTLS, !overTLS else { return send(context, "502 5.5.1 STARTTLS not available") }
            send(context, "220 2.0.0 Ready to start TLS")
            do {
                try context.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls), position: .first)
            } catch {
                context.close(promise: nil)
            }
            overTLS = true
            authed = nil
        } else if upper.hasPrefix("AUTH PLAIN") {
            let rest = line.dropFirst("AUTH PLAIN".count).trimmingCharacters(in: .whitespaces)
            guard options.authMechanisms.contains("PLAIN") else { return send(context, "504 5.5.4 Unrecognized authentication type") }
            if rest.isEmpty {
                mode = .authPlain
                send(context, "334 ")
            } else {
                plain(context, rest)
            }
        } else if upper == "AUTH LOGIN" {
            guard options.authMechanisms.contains("LOGIN") else { return send(context, "504 5.5.4 Unrecognized authentication type") }
            mode = .authLoginUser
            send(context, "334 VXNlcm5hbWU6")
        } else if upper.hasPrefix("MAIL FROM:") {
            if options.requireAuth && authed == nil { return send(context, "530 5.7.0 Authentication required") }
            mailFrom = Self.address(line)
            send(context, "250 2.1.0 Ok")
        } else if upper.hasPrefix("RCPT TO:") {
            guard mailFrom != nil else { return send(context, "503 5.5.1 Error: need MAIL command") }
            let address = Self.address(line)
            if options.rejectRecipients.contains(address) {
                return send(context, "550 5.1.1 <\(address)>: Recipient address rejected: User unknown in virtual mailbox table")
            }
            recipients.append(address)
            send(context, "250 2.1.5 Ok")
        } else if upper == "DATA" {
            guard !recipients.isEmpty else { return send(context, "554 5.5.1 Error: no valid recipients") }
            mode = .data
            send(context, "354 End data with <CR><LF>.<CR><LF>")
        } else if upper == "QUIT" {
            send(context, "221 2.0.0 Bye")
            context.close(promise: nil)
        } else if upper == "RSET" {
            mailFrom = nil
            recipients = []
            send(context, "250 2.0.0 Ok")
        } else {
            send(context, "502 5.5.2 Error: command not recognized")
        }
    }

    static func address(_ line: String) -> String {
        guard let open = line.firstIndex(of: "<"), let close = line.lastIndex(of: ">"), open < close else { return "" }
        return String(line[line.index(after: open)..<close])
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
