import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// An SMTP submission client on SwiftNIO: EHLO, STARTTLS, AUTH PLAIN or LOGIN, MAIL/RCPT/DATA, QUIT.
///
/// Every reply that is not the one expected ends the session with a `ReceiverError` that quotes the server.
/// Nothing in an error ever contains the password.
public struct SMTPClient: Sendable {
    public struct Credentials: Sendable {
        public var username: String
        public var password: String
        public init(username: String, password: String) {
            self.username = username
            self.password = password
        }
    }

    public var receiver: String
    public var host: String
    public var port: Int
    public var starttls: Bool
    /// TLS from the first byte ("SMTPS", usually port 465) instead of STARTTLS.
    public var implicitTLS: Bool
    /// PEM trust roots for the server's certificate (nil: the system's).
    public var caFile: String?
    public var hello: String
    public var timeout: TimeInterval
    public var group: any EventLoopGroup

    public init(receiver: String, host: String, port: Int, starttls: Bool = true, implicitTLS: Bool = false,
                caFile: String? = nil, hello: String? = nil, timeout: TimeInterval = 30,
                group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.receiver = receiver
        self.host = host
        self.port = port
        self.starttls = starttls && !implicitTLS
        self.implicitTLS = implicitTLS
        self.caFile = caFile
        self.hello = hello ?? SMTPClient.localHostName()
        self.timeout = timeout
        self.group = group
    }

    static func localHostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }

    var server: String { "SMTP server \(host):\(port)" }

    func fail(_ message: String, permanent: Bool = false) -> ReceiverError {
        ReceiverError(receiver: receiver, message, permanent: permanent)
    }

    /// Delivers `message` (headers and body, CRLF line ends) from `from` to every address in `to`.
    /// A recipient the server refuses fails the whole delivery before DATA, so nobody gets it twice on retry.
    public func send(from: String, to: [String], message: String, credentials: Credentials?) async throws {
        let tls: NIOSSLContext?
        if starttls || implicitTLS {
            var configuration = TLSConfiguration.makeClientConfiguration()
            if let caFile { configuration.trustRoots = .file(caFile) }
            do { tls = try NIOSSLContext(configuration: configuration) } catch {
                throw fail("cannot set up TLS for \(server): \(error); check email.tls_ca_file holds PEM certificates")
            }
        } else {
            tls = nil
        }
        let channel: NIOAsyncChannel<SMTPReply, ByteBuffer>
        let implicitTLS = implicitTLS ? tls : nil
        let sni = sniName
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.milliseconds(Int64(timeout * 1000)))
                .connect(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let implicitTLS {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: implicitTLS, serverHostname: sni))
                        }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPReplyDecoder()))
                        return try NIOAsyncChannel<SMTPReply, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw fail("cannot connect to \(server): \(error); check email.host and email.port")
        }
        let timedOut = Flag()
        let raw = channel.channel
        let limit = timeout
        let delivered: Bool
        do {
            delivered = try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await channel.executeThenClose { inbound, outbound in
                        var session = Session(client: self, inbound: inbound.makeAsyncIterator(), outbound: outbound, channel: raw)
                        try await session.run(from: from, to: to, message: message, credentials: credentials,
                                              tls: self.starttls ? tls : nil)
                    }
                    return true
                }
                group.addTask {
                    do { try await Task.sleep(for: .milliseconds(Int64(limit * 1000))) } catch {
                        // Cancelled: the session is done, or the caller gave up; either way the connection goes.
                        raw.close(promise: nil)
                        throw error
                    }
                    timedOut.set()
                    raw.close(promise: nil)
                    return false
                }
                // The first to finish decides: the session (done or failed) or the deadline (close, then fail).
                let first = try await group.next() ?? false
                group.cancelAll()
                return first
            }
        } catch {
            // A session that failed because the deadline closed its connection failed by the deadline.
            if timedOut.isSet { throw timeoutError() }
            throw error
        }
        if !delivered { throw timeoutError() }
    }

    /// The name for SNI and certificate checks: nil for a literal address (NIOSSL then checks the IP).
    var sniName: String? { (isIPv4Literal(host) || isIPv6Literal(host)) ? nil : host }

    func timeoutError() -> ReceiverError {
        fail("\(server) did not finish the delivery within \(HTTPPoster.seconds(timeout)); check that it is reachable or raise `timeout`")
    }

    /// One conversation, reply by reply.
    struct Session {
        let client: SMTPClient
        var inbound: NIOAsyncChannelInboundStream<SMTPReply>.AsyncIterator
        let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
        let channel: any Channel

        var server: String { client.server }

        mutating func read(after what: String) async throws -> SMTPReply {
            do {
                guard let reply = try await inbound.next() else {
                    throw client.fail("\(server) closed the connection after \(what)")
                }
                return reply
            } catch let error as ReceiverError {
                throw error
            } catch let error as NIOSSLError {
                throw client.fail("TLS with \(server) failed after \(what): \(error); if it uses a private CA, set email.tls_ca_file to that CA's PEM file")
            } catch let error as BoringSSLError {
                throw client.fail("TLS with \(server) failed after \(what): \(error); if it uses a private CA, set email.tls_ca_file to that CA's PEM file")
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                throw client.fail("reading from \(server) failed after \(what): \(error)")
            }
        }

        /// Sends one command line; `shown` is what errors call it (AUTH data is never shown).
        mutating func command(_ line: String, shown: String? = nil) async throws -> SMTPReply {
            let what = shown ?? line
            do {
                try await outbound.write(ByteBuffer(string: line + "\r\n"))
            } catch {
                throw client.fail("\(server) closed the connection before \(what): \(error)")
            }
            return try await read(after: what)
        }

        func refused(_ what: String, _ reply: SMTPReply, hint: String = "") -> ReceiverError {
            client.fail("\(server) refused \(what): \(reply)\(hint)", permanent: reply.isPermanentFailure)
        }

        mutating func run(from: String, to: [String], message: String, credentials: Credentials?,
                          tls: NIOSSLContext?) async throws {
            let greeting = try await read(after: "connecting")
            guard greeting.code == 220 else { throw refused("the connection", greeting) }

            var ehlo = try await command("EHLO \(client.hello)")
            if ehlo.code != 250 {
                // A server without ESMTP can still take plain mail, but not STARTTLS or AUTH.
                guard tls == nil, credentials == nil else { throw refused("EHLO \(client.hello)", ehlo) }
                let helo = try await command("HELO \(client.hello)")
                guard helo.code == 250 else { throw refused("HELO \(client.hello)", helo) }
                ehlo = SMTPReply(code: 250, lines: [helo.lines.first ?? ""])
            }

            if let tls {
                guard ehlo.extensions["STARTTLS"] != nil else {
                    throw client.fail("\(server) does not offer STARTTLS, so the mail (and the login) would cross the network in the clear; use a server that offers it, or set `starttls: false` only on a trusted network", permanent: true)
                }
                let ready = try await command("STARTTLS")
                guard ready.code == 220 else { throw refused("STARTTLS", ready) }
                let hostname = client.sniName
                let handshake: EventLoopFuture<Void>
                do {
                    handshake = try await channel.eventLoop.submit { [channel] in
                        let promise = channel.eventLoop.makePromise(of: Void.self)
                        let handler = try NIOSSLClientHandler(context: tls, serverHostname: hostname)
                        try channel.pipeline.syncOperations.addHandler(handler, position: .first)
                        try channel.pipeline.syncOperations.addHandler(HandshakeWatcher(promise: promise), position: .after(handler))
                        return promise.futureResult
                    }.get()
                } catch {
                    throw client.fail("cannot start TLS with \(server): \(error)")
                }
                // Wait for the handshake, so a refused certificate is reported as such and not as a lost write.
                do { try await handshake.get() } catch {
                    throw client.fail("TLS with \(server) failed: \(error); if it uses a private CA, set email.tls_ca_file to that CA's PEM file")
                }
                // RFC 3207: forget what was said in the clear and ask again.
                ehlo = try await command("EHLO \(client.hello)")
                guard ehlo.code == 250 else { throw refused("EHLO \(client.hello) after STARTTLS", ehlo) }
            }

            if let credentials {
                let offered = ehlo.extensions["AUTH"] ?? []
                guard let mechanism = SMTPAuthMechanism.choose(offered: offered) else {
                    let list = offered.isEmpty ? "none" : offered.joined(separator: " ")
                    throw client.fail("\(server) offers no login this client speaks (it offers: \(list); this client speaks PLAIN and LOGIN); remove username/password_file if the server needs no login", permanent: true)
                }
                try await authenticate(mechanism, credentials)
            }

            let mail = try await command("MAIL FROM:<\(from)>")
            guard mail.code == 250 else { throw refused("the sender MAIL FROM:<\(from)>", mail, hint: "; check email.from is an address this server lets you send as") }
            for address in to {
                let rcpt = try await command("RCPT TO:<\(address)>")
                guard rcpt.code == 250 || rcpt.code == 251 else {
                    throw refused("the recipient RCPT TO:<\(address)>", rcpt, hint: "; check the address in email.to (nothing was sent)")
                }
            }
            let data = try await command("DATA")
            guard data.code == 354 else { throw refused("DATA", data) }
            let stuffed = MailMessage.dotStuffed(message)
            do {
                try await outbound.write(ByteBuffer(string: stuffed))
            } catch {
                throw client.fail("\(server) closed the connection while the message was sent: \(error)")
            }
            let accepted = try await read(after: "the message")
            guard accepted.code == 250 else { throw refused("the message", accepted) }
            // The mail is accepted; how the goodbye goes changes nothing.
            _ = try? await command("QUIT")
        }

        mutating func authenticate(_ mechanism: SMTPAuthMechanism, _ credentials: Credentials) async throws {
            let hint = "; check email.username and the password in email.password_file"
            let who = "the login of '\(credentials.username)' (AUTH \(mechanism.rawValue))"
            switch mechanism {
            case .plain:
                let token = Data("\u{0}\(credentials.username)\u{0}\(credentials.password)".utf8).base64EncodedString()
                var reply = try await command("AUTH PLAIN \(token)", shown: "AUTH PLAIN")
                if reply.code == 334 {
                    // Some servers want the initial response on its own line.
                    reply = try await command(token, shown: "the AUTH PLAIN response")
                }
                guard reply.code == 235 else { throw refused(who, reply, hint: hint) }
            case .login:
                let start = try await command("AUTH LOGIN")
                guard start.code == 334 else { throw refused(who, start, hint: hint) }
                let user = try await command(Data(credentials.username.utf8).base64EncodedString(), shown: "the AUTH LOGIN user name")
                guard user.code == 334 else { throw refused(who, user, hint: hint) }
                let done = try await command(Data(credentials.password.utf8).base64EncodedString(), shown: "the AUTH LOGIN password")
                guard done.code == 235 else { throw refused(who, done, hint: hint) }
            }
        }
    }
}

/// A flag the deadline task raises and the caller reads.
private final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .relaxed) }
    var isSet: Bool { value.load(ordering: .relaxed) }
}

/// Completes its promise when the TLS handshake is done, fails it when the handshake or the connection fails.
private final class HandshakeWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private var promise: EventLoopPromise<Void>?

    init(promise: EventLoopPromise<Void>) { self.promise = promise }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            promise?.succeed()
            promise = nil
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise?.fail(error)
        promise = nil
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise?.fail(ChannelError.eof)
        promise = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        promise?.fail(ChannelError.ioOnClosedChannel)
        promise = nil
    }
}

/// Whether a host string is a literal address (SNI must not carry one).
private func isIPv4Literal(_ host: String) -> Bool {
    var addr = in_addr()
    return inet_pton(AF_INET, host, &addr) == 1
}

private func isIPv6Literal(_ host: String) -> Bool {
    var addr = in6_addr()
    return inet_pton(AF_INET6, host, &addr) == 1
}
