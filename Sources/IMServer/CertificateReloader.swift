import Foundation
import Logging
import NIOCore
import NIOSSL
import Synchronization
import SwiftASN1
import X509

/// Serves the TLS certificate and key files as they are on disk now, without a restart: when either file changes
/// (a renewal by `warbler certs renew`, or an operator replacing their own certificate), the next handshake after
/// the check interval uses the new pair. A pair that does not load or whose key is not the certificate's is logged
/// and ignored — the server keeps the pair it has until a good one appears, so a half-written renewal never breaks
/// handshakes.
public final class CertificateReloader: Sendable {
    public struct Pair: Sendable {
        public var chain: [NIOSSLCertificate]
        public var key: NIOSSLPrivateKey
        public var notAfter: Date
    }

    /// What identifies the files' current contents without reading them.
    struct Signature: Equatable {
        var cert: FileStamp
        var key: FileStamp
    }

    struct FileStamp: Equatable {
        var device: UInt64, inode: UInt64, size: Int64, mtimeSec: Int, mtimeNsec: Int
        init?(path: String) {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            device = UInt64(st.st_dev); inode = UInt64(st.st_ino); size = Int64(st.st_size)
            mtimeSec = st.st_mtim.tv_sec; mtimeNsec = st.st_mtim.tv_nsec
        }
    }

    struct State {
        var pair: Pair
        var signature: Signature?
        /// The signature last tried and refused, so a bad pair is reported once, not on every handshake.
        var refused: Signature?
        var lastCheck: ContinuousClock.Instant
        /// Set once a pair other than the one the server started with is in use.
        var reloaded: Bool
    }

    public let certPath: String
    public let keyPath: String
    public let checkInterval: Duration
    let logger: Logger
    let state: Mutex<State>

    /// Loads the pair now; a bad pair at start is an error (the server refuses to start with it).
    public init(certPath: String, keyPath: String, checkInterval: Duration = .seconds(30), logger: Logger) throws {
        self.certPath = certPath; self.keyPath = keyPath; self.checkInterval = checkInterval; self.logger = logger
        let signature = Signature.of(cert: certPath, key: keyPath)
        let pair = try Self.load(certPath: certPath, keyPath: keyPath)
        state = Mutex(State(pair: pair, signature: signature, refused: nil, lastCheck: .now, reloaded: false))
    }

    /// The pair in use.
    public var current: Pair { state.withLock { $0.pair } }

    /// Reads the files again if they changed since the last look; returns true when a new pair is now in use.
    @discardableResult
    public func refresh() -> Bool {
        let signature = Signature.of(cert: certPath, key: keyPath)
        let known = state.withLock { s -> Bool in
            s.lastCheck = .now
            return signature == nil || signature == s.signature || signature == s.refused
        }
        guard !known, let signature else { return false }
        do {
            let pair = try Self.load(certPath: certPath, keyPath: keyPath)
            state.withLock { s in
                s.pair = pair; s.signature = signature; s.refused = nil; s.reloaded = true
            }
            logger.notice("loaded the renewed TLS certificate \(certPath), valid until \(pair.notAfter)")
            return true
        } catch {
            state.withLock { $0.refused = signature }
            logger.error("ignoring the changed TLS files \(certPath) / \(keyPath), keeping the certificate in use: \(error)")
            return false
        }
    }

    /// The TLS configuration for the server: the pair as loaded now, and a per-handshake callback that swaps in a
    /// renewed pair.
    public func serverConfiguration() -> TLSConfiguration {
        let pair = current
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: pair.chain.map { .certificate($0) },
                                                           privateKey: .privateKey(pair.key))
        tls.minimumTLSVersion = .tlsv12
        tls.sslContextCallback = { [self] _, promise in
            promise.succeed(override())
        }
        return tls
    }

    /// What a handshake uses: nothing changed until the files were first replaced, then the newest good pair.
    func override() -> NIOSSLContextConfigurationOverride {
        let due = state.withLock { $0.lastCheck.duration(to: .now) >= checkInterval }
        if due { refresh() }
        return state.withLock { s in
            guard s.reloaded else { return .noChanges }
            var o = NIOSSLContextConfigurationOverride()
            o.certificateChain = s.pair.chain.map { .certificate($0) }
            o.privateKey = .privateKey(s.pair.key)
            return o
        }
    }

    static func load(certPath: String, keyPath: String) throws -> Pair {
        func failure(_ reason: String) -> ConfigError {
            ConfigError("cannot load TLS certificate \(certPath) / key \(keyPath): \(reason)")
        }
        let certPEM: String, keyPEM: String
        do {
            certPEM = try String(contentsOfFile: certPath, encoding: .utf8)
            keyPEM = try String(contentsOfFile: keyPath, encoding: .utf8)
        } catch {
            throw failure("cannot read them (\(error.localizedDescription))")
        }
        let leaf: Certificate, key: Certificate.PrivateKey
        do {
            guard let first = try PEMDocument.parseMultiple(pemString: certPEM).first(where: { $0.discriminator == "CERTIFICATE" }) else {
                throw failure("the certificate file holds no PEM certificate")
            }
            leaf = try Certificate(pemDocument: first)
            key = try Certificate.PrivateKey(pemEncoded: keyPEM)
        } catch let e as ConfigError {
            throw e
        } catch {
            throw failure("they do not parse as PEM (\(error))")
        }
        guard key.publicKey == leaf.publicKey else { throw failure("the key is not the certificate's") }
        do {
            let chain = try NIOSSLCertificate.fromPEMBytes(Array(certPEM.utf8))
            let nioKey = try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem)
            return Pair(chain: chain, key: nioKey, notAfter: leaf.notValidAfter)
        } catch {
            throw failure("\(error)")
        }
    }
}

extension CertificateReloader.Signature {
    static func of(cert: String, key: String) -> Self? {
        guard let c = CertificateReloader.FileStamp(path: cert), let k = CertificateReloader.FileStamp(path: key) else { return nil }
        return Self(cert: c, key: k)
    }
}
