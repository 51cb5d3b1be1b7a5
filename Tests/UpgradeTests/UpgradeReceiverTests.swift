import AsyncHTTPClient
import Crypto
import Foundation
import Installer
import Logging
import NIOCore
import NIOSSL
import Synchronization
import Testing
@testable import Upgrade

/// One member's upgrade receiver on a real TLS socket on loopback (port 0), with a recording fake host under a
/// staging root.
final class ReceiverUnderTest: Sendable {
    static let material: TLSMaterial = try! PKI.internalCA(caCert: nil, caKey: nil, serverCert: nil, serverKey: nil,
                                                           names: CertificateNames(dns: ["localhost"], ips: [IPAddress.parse("127.0.0.1")!]), now: Date())
    static var caKey: P256.Signing.PrivateKey { try! P256.Signing.PrivateKey(pemRepresentation: material.caKeyPEM!) }

    let node: String
    let root: String
    let host: FakeUpgradeHost
    let receiver: UpgradeReceiver
    let port: Int
    let task: Task<Void, any Error>
    /// How many times the receiver asked to be restarted (after a switch that changed the release).
    let changes = Counter()

    init(node: String, host: FakeUpgradeHost = FakeUpgradeHost(), listenPort: Int = 0, root given: String? = nil) async throws {
        self.node = node
        self.host = host
        root = given ?? FileManager.default.temporaryDirectory.appendingPathComponent("warbler-receiver-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root + Paths.installState, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let m = Self.material
        let chain = try NIOSSLCertificate.fromPEMBytes(Array(m.serverCertificatePEM.utf8))
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                           privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(m.serverKeyPEM.utf8), format: .pem)))
        tls.shutdownTimeout = .milliseconds(100)
        var logger = Logger(label: "test.receiver.\(node)")
        logger.logLevel = .critical
        let changes = self.changes
        let receiver = UpgradeReceiver(
            config: .init(node: node, caKey: Self.caKey.publicKey, host: "127.0.0.1", port: listenPort, tls: tls, layout: Layout(root: root), owners: [getuid()]),
            host: host, logger: logger, changed: { changes.value.withLock { $0 += 1 } })
        self.receiver = receiver
        task = Task { try await receiver.run(handleSignals: false) }
        port = try await receiver.waitUntilListening()
    }

    var incoming: String { root + UpgradeReceiver.incoming }

    func client(signingWith key: P256.Signing.PrivateKey = ReceiverUnderTest.caKey) throws -> UpgradeReceiverClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(Self.material.caCertificatePEM!.utf8)))
        return UpgradeReceiverClient(node: node, baseURL: "https://127.0.0.1:\(port)", caKey: key, tls: tls)
    }

    func stop(keepingFiles: Bool = false) async {
        await receiver.shutdown()
        _ = await task.result
        if !keepingFiles { try? FileManager.default.removeItem(atPath: root) }
    }

    /// What is in the incoming directory (nil: there is none).
    var incomingNames: [String]? { try? FileManager.default.contentsOfDirectory(atPath: incoming).sorted() }
}

/// An installer file (random bytes; the fake host is told which release it is, at the path the receiver stages it).
struct ReleaseFile {
    let path: String
    let facts: UpgradeReceiverClient.FileFacts
    let info: ReleaseInfo

    /// `runnable`: a shell script that answers `version --json` as a release does (padded to `bytes`).
    init(version: String = "1.1.0", build: String = "bbb", schema: Int = 1, bytes: Int = 300_000, runnable: Bool = false) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("warbler-\(version)-\(UUID().uuidString)").path
        var g = SystemRandomNumberGenerator()
        if runnable {
            let script = "#!/bin/sh\necho '{\"version\":\"\(version)\",\"build\":\"\(build)\",\"schema\":\(schema)}'\nexit 0\n"
            try Data((script + "#" + String(repeating: "x", count: max(0, bytes - script.utf8.count - 2)) + "\n").utf8).write(to: URL(fileURLWithPath: path))
        } else {
            try Data((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &g) }).write(to: URL(fileURLWithPath: path))
        }
        facts = try .of(path)
        info = ReleaseInfo(version: version, build: build, schema: schema)
    }

    /// Tells `host` what the file is where `r` keeps it.
    func known(to r: ReceiverUnderTest) { r.host.add(file: r.incoming + "/" + facts.sha256, info) }
}

@Suite(.serialized) struct UpgradeReceiverTests {
    @Test func aSignedReceiveThenSwitchRunsTheUpgraderWithoutABackupAndStreamsItsLines() async throws {
        let r = try await ReceiverUnderTest(node: "warbler-2")
        defer { Task { await r.stop() } }
        let file = try ReleaseFile()
        file.known(to: r)
        let said = try await r.client().receive(file: file.path, facts: file.facts, info: file.info)
        #expect(said.hasPrefix("received 1.1.0 (build bbb)"))
        let staged = r.incoming + "/" + file.facts.sha256
        #expect(FileManager.default.contents(atPath: staged) == FileManager.default.contents(atPath: file.path))
        #expect((try FileManager.default.attributesOfItem(atPath: staged)[.posixPermissions] as? Int) == 0o700)
        #expect(r.host.actions == ["verify \(staged)"])

        let lines = Mutex<[String]>([])
        try await r.client().switchTo(facts: file.facts, info: file.info) { l in lines.withLock { $0.append(l) } }
        #expect(r.host.actions == ["verify \(staged)", "verify \(staged)", "converge \(staged)", "self-check 1.1.0", "previous 1.0.0"])
        #expect(r.host.state.withLock { $0.current } == "1.1.0")
        #expect(lines.withLock { $0 }.contains { $0.contains("no backup of this member") })
        // Once the answer is sent, the receiver asks to be restarted on the new release.
        for _ in 0..<200 where r.changes.value.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(r.changes.value.withLock { $0 } == 1)
    }

    /// On booted hosts the first receive failed with "Text file busy": the receiver ran the file's `version --json`
    /// while it still held it open for writing. Here the host really runs what was received.
    @Test func theReceivedFileIsRunnableWhenItIsChecked() async throws {
        let r = try await ReceiverUnderTest(node: "warbler-2")
        defer { Task { await r.stop() } }
        r.host.state.withLock { $0.execute = true }
        let file = try ReleaseFile(runnable: true)
        let said = try await r.client().receive(file: file.path, facts: file.facts, info: file.info)
        #expect(said.hasPrefix("received 1.1.0 (build bbb)"))
    }

    @Test func aFailedSwitchReturnsTheMemberWithoutRestoringAndSaysReturned() async throws {
        let r = try await ReceiverUnderTest(node: "warbler-2")
        defer { Task { await r.stop() } }
        let file = try ReleaseFile(schema: 2)
        file.known(to: r)
        r.host.state.withLock { $0.failConverge = [r.incoming + "/" + file.facts.sha256] }
        try await r.client().receive(file: file.path, facts: file.facts, info: file.info)
        await #expect { try await r.client().switchTo(facts: file.facts, info: file.info) { _ in } } throws: { e in
            "\(e)".contains("warbler-2: returned: ") && "\(e)".contains("not ready")
        }
        // Back on 1.0.0; no backup taken, none restored although the schema moved (the database is the cluster's).
        #expect(r.host.state.withLock { $0.current } == "1.0.0")
        #expect(!r.host.actions.contains { $0.hasPrefix("backup") || $0.hasPrefix("restore") || $0 == "stop" })
    }

    @Test func aBodyWhoseDigestIsNotTheSignedOneIsRefusedAndNothingKeptOrRun() async throws {
        let r = try await ReceiverUnderTest(node: "warbler-2")
        defer { Task { await r.stop() } }
        let file = try ReleaseFile(), other = try ReleaseFile()
        file.known(to: r)
        // Signed for `file`, the body is `other` (same length).
        await #expect { try await r.client().receive(file: other.path, facts: file.facts, info: file.info) } throws: { e in
            "\(e)".contains("not the signed \(file.facts.sha256)")
        }
        #expect(r.incomingNames == [])
        #expect(r.host.actions.isEmpty)
    }

    @Test func aTruncatedBodyIsRefusedAndNothingKeptOrRun() async throws {
        let r = try await ReceiverUnderTest(node: "warbler-2")
        defer { Task { await r.stop() } }
        let file = try ReleaseFile()
        file.known(to: r)
        let client = try r.client()
        let order = UpgradeRequest(node: "warbler-2", action: .receive, version: "1.1.0", build: "bbb", sha256: file.facts.sha256,
                                   length: file.facts.length)
        var request = try client.request(UpgradeReceiver.routes.receive, order)
        // Chunked, ending 1000 bytes short of the signed length.
        let data = try #require(FileManager.default.contents(atPath: file.path)).prefix(Int(file.facts.length) - 1000)
        request.body = .stream([ByteBuffer(data: data)].async, length: .unknown)
        let (status, lines) = try await client.send(request, timeout: .seconds(30)) { _ in }
        #expect(status == 422)
        #expect(lines.last?.contains("truncated") == true)
        #expect(r.incomingNames == [])
        #expect(r.host.actions.isEmpty)
    }

    @Test func aLinkPlantedInTheIncomingDirectoryIsNeitherFollowedNorReplaced() async throws {
        let r = try await ReceiverUnderTest(node: "warbler-2")
        defer { Task { await r.stop() } }
        let file = try ReleaseFile()
        file.known(to: r)
        let target = r.root + "/precious"
        try Data("precious".utf8).write(to: URL(fileURLWithPath: target))
        try FileManager.default.createDirectory(atPath: r.incoming, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try FileManager.default.createSymbolicLink(atPath: r.incoming + "/" + file.facts.sha256, withDestinationPath: target)
        await #expect { try await r.client().receive(file: file.path, facts: file.facts, info: file.info) } throws: { e in
            "\(e)".contains("is not a file this receiver made")
        }
        #expect(String(decoding: try #require(FileManager.default.contents(atPath: target)), as: UTF8.self) == "precious")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: r.incoming + "/" + file.facts.sha256) == target)
        #expect(r.host.actions.isEmpty)
    }

    @Test func aReplayedOrderIsRefused() async throws {
        let r = try await ReceiverUnderTest(node: "warbler-2")
        defer { Task { await r.stop() } }
        let file = try ReleaseFile()
        file.known(to: r)
        try await r.client().receive(file: file.path, facts: file.facts, info: file.info)
        r.host.state.withLock { $0.previous = "0.9.0" }
        let client = try r.client()
        // One `return` order, sent twice: the second is refused with nothing run (the member is already on 1.0.0, so
        // the first one does nothing either: it is the refusal that is checked).
        let request = try client.request(UpgradeReceiver.routes.return, UpgradeRequest(node: "warbler-2", action: .return, version: "1.0.0"))
        let first = try await client.send(request, timeout: .seconds(30)) { _ in }
        #expect(first.0 == 200 && first.1.last?.hasPrefix("returned") == true)
        let before = r.host.actions
        let again = try await client.send(request, timeout: .seconds(30)) { _ in }
        #expect(again.0 == 403 && again.1.last?.contains("already received once") == true)
        #expect(r.host.actions == before)
        // The nonce outlives a restart of the receiver (it restarts after every switch).
        let reloaded = UpgradeReceiver.loadNonces(layout: Layout(root: r.root), owners: [getuid()])
        #expect(reloaded?.until.count == 2)
    }

    @Test func ordersSignedWithAnotherKeyOrForAnotherNodeAreRefusedWithNothingRun() async throws {
        let r = try await ReceiverUnderTest(node: "warbler-2")
        defer { Task { await r.stop() } }
        let file = try ReleaseFile()
        file.known(to: r)
        await #expect { try await r.client(signingWith: P256.Signing.PrivateKey()).receive(file: file.path, facts: file.facts, info: file.info) } throws: { e in
            "\(e)".contains("not signed by this cluster's CA key")
        }
        var elsewhere = try r.client()
        elsewhere.node = "warbler-3"
        await #expect { try await elsewhere.receive(file: file.path, facts: file.facts, info: file.info) } throws: { e in
            "\(e)".contains("is for warbler-3")
        }
        await #expect { try await r.client(signingWith: P256.Signing.PrivateKey()).returnTo(version: "0.9.0") { _ in } } throws: { _ in true }
        #expect(r.incomingNames ?? [] == [])
        #expect(r.host.actions.isEmpty)
        #expect(r.changes.value.withLock { $0 } == 0)
    }

    @Test func anOrderToARestartingReceiverIsSentAgainUntilItAnswers() async throws {
        // After a switch the receiver stops and systemd starts it again: the next order must not fail meanwhile.
        let first = try await ReceiverUnderTest(node: "warbler-2")
        let client = try first.client()
        await first.stop(keepingFiles: true)
        let host = first.host, port = first.port, root = first.root
        let again = Task {
            // Longer than the client's connect timeout (5 s), within which the HTTP client itself tries again.
            try await Task.sleep(for: .seconds(7))
            return try await ReceiverUnderTest(node: "warbler-2", host: host, listenPort: port, root: root)
        }
        try await client.returnTo(version: "1.0.0") { _ in }
        let second = try await again.value
        await second.stop()
    }

    @Test func aSwitchToAFileNeverReceivedIsRefused() async throws {
        let r = try await ReceiverUnderTest(node: "warbler-2")
        defer { Task { await r.stop() } }
        let file = try ReleaseFile()
        file.known(to: r)
        await #expect { try await r.client().switchTo(facts: file.facts, info: file.info) { _ in } } throws: { e in
            "\(e)".contains("receive` it first")
        }
        #expect(r.host.actions.isEmpty)
    }
}

final class Counter: Sendable { let value = Mutex(0) }

extension Array where Element: Sendable {
    /// The elements as an async sequence (a request body in a test).
    var async: AsyncStream<Element> {
        AsyncStream { c in for e in self { c.yield(e) }; c.finish() }
    }
}
