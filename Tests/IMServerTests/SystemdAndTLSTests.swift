import DurableFiles
import Foundation
import IMClient
import IMCore
import Testing
import IMServer
import Logging

/// A datagram socket standing in for systemd's NOTIFY_SOCKET.
final class NotifySocket {
    let path: String
    let fd: Int32

    init(directory: String) throws {
        path = directory + "/notify.sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let bytes = Array(path.utf8)
            for (i, b) in bytes.enumerated() where i < raw.count - 1 { raw[i] = b }
        }
        let ok = withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
        guard ok else { throw IMError(.internal, "cannot bind \(path)") }
        var tv = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Collects datagrams until `until` matches all of them, or `timeout` passes.
    func collect(timeout: Duration, until: ([String]) -> Bool) -> [String] {
        var got: [String] = []
        let deadline = ContinuousClock.now + timeout
        var buf = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline && !until(got) {
            let n = recv(fd, &buf, buf.count, 0)
            if n > 0 { got.append(String(decoding: buf[0..<n], as: UTF8.self)) }
        }
        return got
    }
}

@Suite(.timeLimit(.minutes(2)), .serialized) struct SystemdIntegrationTests {
    @Test func notifiesReadyPingsTheWatchdogAndStopsCleanlyOnSIGTERM() async throws {
        let dir = NSTemporaryDirectory() + "warbler-sd-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let notify = try NotifySocket(directory: dir)
        // Given to the child only: setenv here raced other tests' Process.run (which copies the environment) and
        // crashed the test process.
        let server = try ServerProcess(directory: dir, environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"])

        let ready = notify.collect(timeout: .seconds(20)) { $0.contains { $0.contains("READY=1") } }
        #expect(ready.contains { $0.contains("READY=1") })
        // READY comes only once the port answers.
        #expect(try await rawRequest(.GET, server.baseURL + "/healthz").status == 200)
        let pings = notify.collect(timeout: .seconds(3)) { $0.filter { $0 == "WATCHDOG=1" }.count >= 2 }
        #expect(pings.filter { $0 == "WATCHDOG=1" }.count >= 2)

        let (status, took) = await server.terminate()
        #expect(status == 0)
        #expect(took < .seconds(5))
        let stopping = notify.collect(timeout: .seconds(1)) { $0.contains { $0.contains("STOPPING=1") } }
        #expect(stopping.contains { $0.contains("STOPPING=1") })
    }

    /// With systemd's usual WatchdogSec=30s the server pings every 15 s; SIGTERM must not wait for the next ping
    /// before draining (an upgrade's restart measured 6 s there).
    @Test func aLongWatchdogPeriodDoesNotDelayTheDrain() async throws {
        let dir = NSTemporaryDirectory() + "warbler-sd-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let notify = try NotifySocket(directory: dir)
        // Given to the child only: setenv here raced other tests' Process.run (which copies the environment) and
        // crashed the test process.
        let server = try ServerProcess(directory: dir, environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "30000000"])
        let ready = notify.collect(timeout: .seconds(20)) { $0.contains { $0.contains("READY=1") } }
        #expect(ready.contains { $0.contains("READY=1") })
        try await Task.sleep(for: .milliseconds(300))
        let (status, took) = await server.terminate()
        #expect(status == 0)
        #expect(took < .seconds(3), "SIGTERM to exit took \(took)")
    }
}

@Suite(.timeLimit(.minutes(2))) struct TLSTests {
    func run(_ args: [String], in dir: String) throws {
        // In `dir` (the shell changes to it, then becomes openssl).
        let r = try Subprocess.run(["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", dir, "/usr/bin/openssl"] + args)
        guard r.status == 0 else { throw IMError(.internal, "openssl \(args.first ?? "") failed: \(r.text)") }
    }

    /// A private CA and a server certificate for localhost and 127.0.0.1.
    func makePKI(_ dir: String) throws {
        try run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                 "-subj", "/CN=Test CA", "-keyout", "ca.key", "-out", "ca.pem"], in: dir)
        try run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                 "-keyout", "server.key", "-out", "server.csr"], in: dir)
        try "subjectAltName=DNS:localhost,IP:127.0.0.1\n".write(toFile: dir + "/san.ext", atomically: true, encoding: .utf8)
        try run(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
                 "-extfile", "san.ext", "-out", "server.pem"], in: dir)
    }

    @Test func restAndWebSocketWorkOverTLSWithAPrivateCA() async throws {
        let pki = NSTemporaryDirectory() + "warbler-pki-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: pki, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: pki) }
        try makePKI(pki)
        try await withServer(.sqlite, { $0.server.tlsCert = pki + "/server.pem"; $0.server.tlsKey = pki + "/server.key" }) { server in
            let url = "https://localhost:\(server.port)"
            let alice = try IMClient(baseURL: url, trustedCACertificatePath: pki + "/ca.pem")
            let bob = try IMClient(baseURL: url, trustedCACertificatePath: pki + "/ca.pem")
            _ = try await alice.register(username: "alice", password: "password-123")
            let bobID = try await bob.register(username: "bob", password: "password-123").id
            let conv = try await alice.createDirectConversation(with: bobID).id
            let b = try await EventLog.connect(TestUser(client: bob, profile: try #require(await bob.currentUser)))
            let a = try await EventLog.connect(TestUser(client: alice, profile: try #require(await alice.currentUser)))
            _ = try await a.connection.send(conversation: conv, text: "over tls")
            #expect(await b.waitForMessages(1, in: conv))
            // Without the CA the certificate is not trusted.
            await expectIMError(.unavailable) { _ = try await IMClient(baseURL: url).login(username: "alice", password: "password-123") }
            // Plain HTTP to the TLS port gets nowhere.
            await #expect(throws: (any Error).self) { _ = try await rawRequest(.GET, "http://127.0.0.1:\(server.port)/healthz") }
            await a.close(); await b.close()
        }
    }

    /// What a shell command prints (trimmed).
    func shell(_ command: String) throws -> String {
        // Standard error is kept out, as before: only what the command prints counts.
        try Subprocess.run(["/bin/sh", "-c", command + " 2>/dev/null"]).text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The serial number of the certificate the server at `port` presents, as openssl prints it.
    func servedSerial(port: Int) throws -> String {
        try shell("openssl s_client -connect 127.0.0.1:\(port) -servername localhost </dev/null 2>/dev/null | openssl x509 -noout -serial")
    }

    func fileSerial(_ path: String) throws -> String { try shell("openssl x509 -noout -serial -in '\(path)'") }

    @Test func aRenewedCertificateIsServedWithoutARestartAndABadPairIsIgnored() async throws {
        let pki = NSTemporaryDirectory() + "warbler-pki-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: pki, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: pki) }
        try makePKI(pki)
        let certPath = pki + "/live.pem", keyPath = pki + "/live.key"
        try FileManager.default.copyItem(atPath: pki + "/server.pem", toPath: certPath)
        try FileManager.default.copyItem(atPath: pki + "/server.key", toPath: keyPath)
        /// Puts a file in place the way the renewal does: a new file renamed over the old.
        func replace(_ path: String, with source: String) throws {
            try FileManager.default.copyItem(atPath: source, toPath: path + ".new")
            #expect(rename(path + ".new", path) == 0)
        }
        try await withServer(.sqlite, { $0.server.tlsCert = certPath; $0.server.tlsKey = keyPath; $0.server.tlsReloadSeconds = 0.05 }) { server in
            let first = try fileSerial(pki + "/server.pem")
            #expect(!first.isEmpty)
            #expect(try servedSerial(port: server.port) == first)

            // A second certificate with its own key, from the same CA.
            try run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost",
                     "-keyout", "server2.key", "-out", "server2.csr"], in: pki)
            try run(["x509", "-req", "-in", "server2.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
                     "-extfile", "san.ext", "-out", "server2.pem"], in: pki)
            let second = try fileSerial(pki + "/server2.pem")
            #expect(second != first)

            // Key first: for a moment the key is not the certificate's; the server keeps the old pair meanwhile.
            try replace(keyPath, with: pki + "/server2.key")
            try await Task.sleep(for: .milliseconds(150))
            #expect(try servedSerial(port: server.port) == first)
            try replace(certPath, with: pki + "/server2.pem")
            try await Task.sleep(for: .milliseconds(150))
            _ = try servedSerial(port: server.port)
            #expect(try servedSerial(port: server.port) == second)

            // The renewed certificate really works: a client that trusts the CA logs in over it.
            let client = try IMClient(baseURL: "https://localhost:\(server.port)", trustedCACertificatePath: pki + "/ca.pem")
            _ = try await client.register(username: "carol", password: "password-123")
            try await client.shutdown()

            // Garbage in place of the certificate: ignored, the good pair stays in use.
            try "not a certificate".write(toFile: certPath + ".bad", atomically: true, encoding: .utf8)
            try replace(certPath, with: certPath + ".bad")
            try await Task.sleep(for: .milliseconds(150))
            _ = try servedSerial(port: server.port)
            #expect(try servedSerial(port: server.port) == second)
        }
    }

    @Test func aMissingCertificateIsAClearError() async throws {
        let dir = NSTemporaryDirectory() + "warbler-tls-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var logger = Logger(label: "t")
        logger.logLevel = .critical
        let runtime = try await ServerRuntime.open(config: TestServer.makeConfig(directory: dir) {
            $0.server.tlsCert = dir + "/nope.pem"; $0.server.tlsKey = dir + "/nope.key"
        }, logger: logger)
        await #expect { try await runtime.run(handleSignals: false) } throws: { "\($0)".contains("cannot load TLS certificate") }
        try? await runtime.storage.close()
    }
}
