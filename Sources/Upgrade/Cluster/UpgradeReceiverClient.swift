import AsyncHTTPClient
import Crypto
import DurableFiles
import Foundation
import IMCore
import Installer
import NIOCore
import NIOSSL
#if canImport(Glibc)
import Glibc
#endif

/// The side of a cluster upgrade that gives orders: signs each with the cluster CA's key and sends it to one
/// member's upgrade receiver over TLS, the member's certificate verified against the cluster CA for the address
/// dialled.
public struct UpgradeReceiverClient: Sendable {
    /// The member the receiver is on (the requests' `node`).
    public var node: String
    /// e.g. `https://10.0.0.2:8445`.
    public var baseURL: String
    public var caKey: P256.Signing.PrivateKey
    public var tls: TLSConfiguration
    /// How long a `switch` or `return` may take in all (an install, restarts each gated on readiness, a self-check).
    public var switchTimeout: Duration = .seconds(1800)
    /// How long a `switch` or `return` is sent again while no receiver answers (one restarting).
    public var connectPatience: Duration = .seconds(30)

    public init(node: String, baseURL: String, caKey: P256.Signing.PrivateKey, tls: TLSConfiguration) {
        self.node = node; self.baseURL = baseURL; self.caKey = caKey; self.tls = tls
    }

    /// For `member`, from root's files: the CA's private key, the cluster CA certificate to verify it with.
    public static func forMember(name: String, address: String, port: Int = ClusterSettings.Port.upgradeReceiver) throws -> UpgradeReceiverClient {
        let key = try P256.Signing.PrivateKey(pemRepresentation: try RootFile.readText(Paths.caKey))
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(ClusterPaths.caCert)
        let host = address.contains(":") ? "[\(address)]" : address
        return UpgradeReceiverClient(node: name, baseURL: "https://\(host):\(port)", caKey: key, tls: tls)
    }

    /// The digest, length and signature of an installer file: what a `receive` and a `switch` sign.
    public struct FileFacts: Sendable, Equatable {
        public var sha256: String
        public var length: Int64
        public var signature: Data?
        public init(sha256: String, length: Int64, signature: Data?) { self.sha256 = sha256; self.length = length; self.signature = signature }

        /// Reads `path` (and `path.sig` when there is one).
        public static func of(_ path: String) throws -> FileFacts {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SystemError("cannot open \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            let (sha256, length) = try digest(fd: fd, path: path)
            return FileFacts(sha256: sha256, length: length, signature: FileManager.default.contents(atPath: path + ".sig"))
        }

        /// The SHA-256 (lower-case hex) and length of what `fd` reads from where it stands to its end.
        static func digest(fd: Int32, path: String) throws -> (sha256: String, length: Int64) {
            var hasher = SHA256()
            var buf = [UInt8](repeating: 0, count: 1 << 20)
            var total: Int64 = 0
            while true {
                let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                if n < 0 { if errno == EINTR { continue }; throw SystemError("cannot read \(path)") }
                if n == 0 { break }
                buf.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                total += Int64(n)
            }
            return (hasher.finalize().map { String(format: "%02x", $0) }.joined(), total)
        }
    }

    /// Sends `file` (whose facts are `facts`, of release `info`) to be staged there. Returns the receiver's answer.
    @discardableResult
    public func receive(file: String, facts: FileFacts, info: ReleaseInfo) async throws -> String {
        let order = UpgradeRequest(node: node, action: .receive, version: info.version, build: info.build, sha256: facts.sha256,
                                   length: facts.length, releaseSignature: facts.signature?.base64EncodedString())
        var request = try self.request(UpgradeReceiver.routes.receive, order)
        request.headers.add(name: "Content-Type", value: "application/octet-stream")
        request.body = .stream(FileChunks(path: file), length: .known(facts.length))
        let (status, lines) = try await send(request, timeout: .seconds(600), log: { _ in })
        let last = lines.last ?? ""
        guard status == 200, last.hasPrefix("received ") else {
            throw ClusterUpgradeRefusal("\(node) did not take the file (\(status)): \(last.isEmpty ? "no answer" : last)")
        }
        return last
    }

    /// `switch` to the received file: streams the member's upgrade lines to `log`; returns when it says `switched`,
    /// throws with its last line otherwise (`returned: …`, `return failed: …`, `refused: …`).
    public func switchTo(facts: FileFacts, info: ReleaseInfo, log: @escaping @Sendable (String) -> Void) async throws {
        let order = UpgradeRequest(node: node, action: .switch, version: info.version, build: info.build, sha256: facts.sha256,
                                   length: facts.length, releaseSignature: facts.signature?.base64EncodedString())
        try await give(order, UpgradeReceiver.routes.switch, success: "switched", log: log)
    }

    /// `return` to `version`, the member's previous release.
    public func returnTo(version: String, log: @escaping @Sendable (String) -> Void) async throws {
        try await give(UpgradeRequest(node: node, action: .return, version: version), UpgradeReceiver.routes.return, success: "returned", log: log)
    }

    /// Sends `order` and holds its answer's last line to `success`.
    func give(_ order: UpgradeRequest, _ path: String, success: String, log: @escaping @Sendable (String) -> Void) async throws {
        // A receiver restarts after each switch that changed its release (a few seconds): an order that reaches no
        // receiver is sent again, freshly signed, for up to `connectPatience`. One that got an answer is not.
        var order = order
        let deadline = ContinuousClock.now + connectPatience
        var answer: (Int, [String])?
        while answer == nil {
            do {
                answer = try await send(try request(path, order), timeout: switchTimeout, log: log)
            } catch let e as NoAnswer where ContinuousClock.now < deadline {
                _ = e
                try await Task.sleep(for: .seconds(1))
                order.nonce = UpgradeRequest.makeNonce()
                order.time = Int64(Date().timeIntervalSince1970.rounded(.down))
            }
        }
        let (status, lines) = answer!
        let last = lines.last ?? ""
        guard status == 200, last == success || last.hasPrefix(success + " ") else {
            throw ClusterUpgradeRefusal("\(node): \(last.isEmpty ? "no answer to `\(order.action.rawValue)` (\(status))" : last)")
        }
    }

    func request(_ path: String, _ order: UpgradeRequest) throws -> HTTPClientRequest {
        let signed = try order.signed(with: caKey)
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .POST
        request.headers.add(name: SignedUpgradeRequest.requestHeader, value: signed.header)
        request.headers.add(name: SignedUpgradeRequest.signatureHeader, value: signed.signature)
        return request
    }

    /// Sends and reads the answer line by line (each but the last to `log` as it arrives).
    func send(_ request: HTTPClientRequest, timeout: Duration, log: @escaping @Sendable (String) -> Void) async throws -> (Int, [String]) {
        var config = HTTPClient.Configuration(tlsConfiguration: tls)
        // No read timeout: an install can be silent for minutes; the deadline bounds the whole order.
        config.timeout = .init(connect: .seconds(5), read: nil)
        config.redirectConfiguration = .disallow
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: config)
        var lines: [String] = []
        var status = 0
        do {
            let response = try await client.execute(request, deadline: .now() + .nanoseconds(Int64(timeout.inSeconds * 1e9)))
            status = Int(response.status.code)
            var pending = ""
            for try await buffer in response.body {
                pending += String(buffer: buffer)
                while let nl = pending.firstIndex(of: "\n") {
                    let line = String(pending[..<nl])
                    pending = String(pending[pending.index(after: nl)...])
                    if let previous = lines.last, status == 200 { log(previous) }
                    lines.append(line)
                }
            }
            if !pending.isEmpty { lines.append(pending) }
            try? await client.shutdown()
        } catch {
            try? await client.shutdown()
            let said = lines.last.map { "; its last line: \($0)" } ?? ""
            let message = "\(node)'s upgrade receiver (\(baseURL)) did not answer: \(error)\(said)"
            if status == 0 { throw NoAnswer(description: message) }
            throw ClusterUpgradeRefusal(message)
        }
        return (status, lines)
    }

    /// No answer began (no connection, or none before the response's head): the order may be sent again.
    struct NoAnswer: Error, CustomStringConvertible { var description: String }
}

/// A file read in 1 MiB chunks, as a request body.
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let path: String

    struct AsyncIterator: AsyncIteratorProtocol {
        let handle: FileHandle?
        mutating func next() async throws -> ByteBuffer? {
            guard let handle else { throw SystemError("cannot open the file to send") }
            guard let data = try handle.read(upToCount: 1 << 20), !data.isEmpty else {
                try? handle.close()
                return nil
            }
            return ByteBuffer(data: data)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(handle: FileHandle(forReadingAtPath: path)) }
}
