import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing
@testable import Installer

/// The internal CA's certificates must be accepted by the TLS stack the server and the SDK use (BoringSSL through
/// NIOSSL), not only parse: name constraints in particular are checked there.
@Suite struct TLSHandshakeTests {
    final class Echo: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.writeAndFlush(data, promise: nil) }
    }

    final class Collect: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let done: EventLoopPromise<String>
        init(_ done: EventLoopPromise<String>) { self.done = done }
        func channelActive(context: ChannelHandlerContext) {
            context.writeAndFlush(NIOAny(ByteBuffer(string: "ping")), promise: nil)
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { done.succeed(String(buffer: unwrapInboundIn(data))) }
        func errorCaught(context: ChannelHandlerContext, error: any Error) { done.fail(error); context.close(promise: nil) }
    }

    func handshake(_ m: TLSMaterial, caPEM: String, host: String) async throws -> String {
        let group = MultiThreadedEventLoopGroup.singleton
        let serverTLS = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMBytes(Array(m.serverCertificatePEM.utf8)).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(m.serverKeyPEM.utf8), format: .pem)))
        let serverContext = try NIOSSLContext(configuration: serverTLS)
        let server = try await ServerBootstrap(group: group).childChannelInitializer { ch in
            ch.eventLoop.makeCompletedFuture {
                try ch.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: serverContext))
                try ch.pipeline.syncOperations.addHandler(Echo())
            }
        }.bind(host: "127.0.0.1", port: 0).get()
        var clientTLS = TLSConfiguration.makeClientConfiguration()
        clientTLS.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(caPEM.utf8)))
        clientTLS.certificateVerification = .fullVerification
        let clientContext = try NIOSSLContext(configuration: clientTLS)
        let done = group.next().makePromise(of: String.self)
        let client = try await ClientBootstrap(group: group).channelInitializer { ch in
            ch.eventLoop.makeCompletedFuture {
                try ch.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: clientContext, serverHostname: IPAddress.parse(host) == nil ? host : nil))
                try ch.pipeline.syncOperations.addHandler(Collect(done))
            }
        }.connect(host: "127.0.0.1", port: server.localAddress!.port!).get()
        defer { client.close(promise: nil); server.close(promise: nil) }
        return try await done.futureResult.get()
    }

    @Test func aFreshInternalCAVerifies() async throws {
        let names = CertificateNames(hostname: "e2e-systemd", domains: [], addresses: [IPAddress.parse("127.0.0.1")!, IPAddress.parse("10.231.7.2")!])
        let m = try PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil, names: names, now: Date())
        #expect(try await handshake(m, caPEM: m.caCertificatePEM!, host: "127.0.0.1") == "ping")
    }

    @Test func aReRunsCAVerifies() async throws {
        let names = CertificateNames(hostname: "e2e-systemd", domains: [], addresses: [IPAddress.parse("127.0.0.1")!, IPAddress.parse("10.231.7.2")!])
        let m = try PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil, names: names, now: Date())
        let again = try PKI.internalCA(caCert: m.caCertificatePEM, caKey: m.caKeyPEM, serverCert: m.serverCertificatePEM,
                                       serverKey: m.serverKeyPEM, names: names, now: Date())
        #expect(again.caCertificatePEM == m.caCertificatePEM, "a re-run with the same names keeps the CA")
        #expect(try await handshake(again, caPEM: again.caCertificatePEM!, host: "127.0.0.1") == "ping")
    }
}
