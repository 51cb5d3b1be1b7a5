import Foundation
import IMCore
import IMServer
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Sends `request` byte for byte (no client-side path normalisation) and reads the answer until the server closes.
func rawHTTP(port: Int, _ request: String) async throws -> (status: Int, headers: [String: String], body: String) {
    // Blocking socket calls run on their own thread: on the cooperative pool they would starve the in-process server.
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try blockingHTTP(port: port, request) }) }.start()
    }
}

func blockingHTTP(port: Int, _ request: String) throws -> (status: Int, headers: [String: String], body: String) {
    do {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard ok == 0 else { throw POSIXError(.ECONNREFUSED) }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let bytes = Array(request.utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var data = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            data += buf[0..<n]
        }
        let text = String(decoding: data, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw POSIXError(.EBADMSG) }
        let head = text[..<split.lowerBound].split(separator: "\r\n")
        let status = head.first.flatMap { Int($0.split(separator: " ")[1]) } ?? 0
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            if let c = line.firstIndex(of: ":") {
                headers[line[..<c].lowercased()] = line[line.index(after: c)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return (status, headers, String(text[split.upperBound...]))
    }
}

func get(_ port: Int, _ path: String, _ extra: String = "") async throws -> (status: Int, headers: [String: String], body: String) {
    try await rawHTTP(port: port, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n\(extra)Connection: close\r\n\r\n")
}

/// A web root like the repository's web/, plus a secret file beside it that must never be served.
func makeWebRoot() throws -> (root: String, parent: String) {
    let parent = NSTemporaryDirectory() + "warbler-web-" + UUID().uuidString
    let root = parent + "/web"
    try FileManager.default.createDirectory(atPath: root + "/js", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: root + "/css", withIntermediateDirectories: true)
    try "<!doctype html><title>chat</title>".write(toFile: root + "/index.html", atomically: true, encoding: .utf8)
    try "<!doctype html><title>console</title>".write(toFile: root + "/admin.html", atomically: true, encoding: .utf8)
    try "export const x = 1;\n".write(toFile: root + "/js/app.js", atomically: true, encoding: .utf8)
    try "body{color:red}\n".write(toFile: root + "/css/app.css", atomically: true, encoding: .utf8)
    try "hidden".write(toFile: root + "/.env", atomically: true, encoding: .utf8)
    try "top secret".write(toFile: parent + "/secret.txt", atomically: true, encoding: .utf8)
    try FileManager.default.createSymbolicLink(atPath: root + "/js/escape.txt", withDestinationPath: parent + "/secret.txt")
    return (root, parent)
}

@Suite(.timeLimit(.minutes(2))) struct WebRootTests {
    @Test func servesTheClientAndConsoleWithTypesCachingAndSecurityHeaders() async throws {
        let (root, parent) = try makeWebRoot()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        try await withServer(.sqlite, { $0.server.webRoot = root }) { server in
            let index = try await get(server.port, "/")
            #expect(index.status == 200)
            #expect(index.body == "<!doctype html><title>chat</title>")
            #expect(index.headers["content-type"] == "text/html; charset=utf-8")
            let csp = try #require(index.headers["content-security-policy"])
            #expect(csp.contains("default-src 'self'") && csp.contains("script-src 'self'") && csp.contains("connect-src 'self' ws: wss:"))
            #expect(!csp.contains("unsafe-inline"))
            #expect(index.headers["x-content-type-options"] == "nosniff")
            #expect(index.headers["referrer-policy"] == "no-referrer")

            let console = try await get(server.port, "/admin")
            #expect(console.status == 200 && console.body.contains("console"))
            #expect(try await get(server.port, "/admin.html").body == console.body)

            let js = try await get(server.port, "/js/app.js")
            #expect(js.status == 200 && js.headers["content-type"] == "text/javascript; charset=utf-8" && js.body == "export const x = 1;\n")
            #expect(try await get(server.port, "/css/app.css").headers["content-type"] == "text/css; charset=utf-8")

            // Revalidation: the ETag or the date answers 304 with no body; a changed file gets a new ETag.
            let etag = try #require(js.headers["etag"])
            let modified = try #require(js.headers["last-modified"])
            #expect(modified.hasSuffix(" GMT"))
            let again = try await get(server.port, "/js/app.js", "If-None-Match: \(etag)\r\n")
            #expect(again.status == 304 && again.body.isEmpty)
            #expect(try await get(server.port, "/js/app.js", "If-Modified-Since: \(modified)\r\n").status == 304)
            try await Task.sleep(for: .milliseconds(20))
            try "export const x = 2;\n".write(toFile: root + "/js/app.js", atomically: true, encoding: .utf8)
            let changed = try await get(server.port, "/js/app.js", "If-None-Match: \(etag)\r\n")
            #expect(changed.status == 200 && changed.body == "export const x = 2;\n" && changed.headers["etag"] != etag)

            let head = try await rawHTTP(port: server.port, "HEAD /index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            #expect(head.status == 200 && head.body.isEmpty && head.headers["content-length"] == "34")

            // API answers keep working beside the files and carry the same headers.
            let health = try await get(server.port, "/healthz")
            #expect(health.status == 200 && health.body.contains("ok") && health.headers["x-content-type-options"] == "nosniff")
            let missing = try await get(server.port, "/v1/nothing")
            #expect(missing.status == 404 && missing.body.contains("not_found"))
            #expect(try await get(server.port, "/nothing.js").status == 404)
        }
    }

    @Test func refusesDirectoryTraversalHiddenFilesAndSymlinksOut() async throws {
        let (root, parent) = try makeWebRoot()
        defer { try? FileManager.default.removeItem(atPath: parent) }
        try await withServer(.sqlite, { $0.server.webRoot = root }) { server in
            for path in ["/../secret.txt", "/js/../../secret.txt", "/%2e%2e/secret.txt", "/js/%2E%2E/%2e%2e/secret.txt",
                         "/..%2fsecret.txt", "/js/..%5c..%5csecret.txt", "/.env", "/js/escape.txt", "/%00index.html",
                         "/js//app.js", "/js/", "/css", "/%zz"] {
                let r = try await get(server.port, path)
                #expect(r.status == 404, "\(path) answered \(r.status)")
                #expect(!r.body.contains("top secret") && !r.body.contains("hidden"), "\(path) leaked a file")
            }
            #expect(try await get(server.port, "/js/app.js").status == 200)
        }
    }

    @Test func withoutAWebRootTheServerRunsAndSaysTheClientIsNotInstalled() async throws {
        let missing = NSTemporaryDirectory() + "warbler-no-web-" + UUID().uuidString
        try await withServer(.sqlite, { $0.server.webRoot = missing }) { server in
            let r = try await get(server.port, "/")
            #expect(r.status == 404)
            #expect(r.body.contains("web client is not installed") && r.body.contains(missing) && r.body.contains("server.web_root"))
            #expect(r.headers["content-type"] == "text/plain; charset=utf-8")
            #expect(try await get(server.port, "/admin").body.contains("not installed"))
            #expect(try await get(server.port, "/healthz").status == 200)
        }
    }

    @Test func theDefaultWebRootIsTheReleasesWebDirectory() throws {
        var c = ServerConfig()
        #expect(c.resolvedWebRoot(executable: "/opt/warbler/releases/1.2.3/bin/warbler") == "/opt/warbler/releases/1.2.3/web")
        c.server.webRoot = "/srv/web"
        #expect(c.resolvedWebRoot(executable: "/opt/warbler/releases/1.2.3/bin/warbler") == "/srv/web")
        #expect(throws: ConfigError.self) { try ServerConfig.load(path: nil, environment: ["WARBLER_ALERTS_CONTROL_URL": "127.0.0.1:9102"]) }
        #expect(try ServerConfig.load(path: nil, environment: ["WARBLER_SERVER_WEB_ROOT": "/w"]).server.webRoot == "/w")
    }
}

@Suite(.timeLimit(.minutes(2))) struct AdminConsoleAPITests {
    @Test func adminListsGroupsWithMemberCounts() async throws {
        try await withServer { server in
            let root = try await server.admin()
            let alice = try await server.user("alice")
            let bob = try await server.user("bob")
            let carol = try await server.user("carol")
            let g1 = try await alice.client.createGroup(name: "Ops", members: [bob.id, carol.id])
            let g2 = try await bob.client.createGroup(name: "Pairs", members: [alice.id])
            _ = try await alice.client.createDirectConversation(with: bob.id)
            let token = try #require(await root.client.session?.accessToken)
            let r = try await rawRequest(.GET, server.baseURL + "/v1/admin/groups", bearer: token)
            #expect(r.status == 200)
            let groups = try decode([API.AdminGroup].self, r.body)
            #expect(groups.map(\.id) == [g1.id, g2.id])   // the direct conversation is not a group
            #expect(groups.map(\.members) == [3, 2])
            #expect(groups.map(\.owner) == [alice.id, bob.id])
            #expect(groups.first?.name == "Ops")
            let paged = try decode([API.AdminGroup].self, try await rawRequest(.GET, server.baseURL + "/v1/admin/groups?offset=1&limit=1", bearer: token).body)
            #expect(paged.map(\.id) == [g2.id])
            let notAdmin = try #require(await alice.client.session?.accessToken)
            #expect(try await rawRequest(.GET, server.baseURL + "/v1/admin/groups", bearer: notAdmin).status == 403)
        }
    }

    @Test func alertsAreUnavailableWithoutAControlURL() async throws {
        try await withServer { server in
            let root = try await server.admin()
            let token = try #require(await root.client.session?.accessToken)
            let r = try await rawRequest(.GET, server.baseURL + "/v1/admin/alerts", bearer: token)
            #expect(r.status == 200)
            #expect(r.body.contains("\"available\":false"))
            let alice = try await server.user("alice")
            #expect(try await rawRequest(.GET, server.baseURL + "/v1/admin/alerts", bearer: try #require(await alice.client.session?.accessToken)).status == 403)
        }
    }

    @Test func alertsAreProxiedFromAlertdsControlAPI() async throws {
        let alertd = try OneRouteHTTPServer(path: "/api/v1/alerts",
                                            body: #"[{"fingerprint":"9f2c","name":"DiskAlmostFull","severity":"critical","state":"firing","labels":{"alertname":"DiskAlmostFull","mountpoint":"/"},"annotations":{"summary":"/ is 91% full"},"value":91.2,"activeAt":"2026-11-29T19:00:00Z","firedAt":"2026-11-29T19:05:00Z","silencedBy":[],"inhibited":false}]"#)
        defer { alertd.stop() }
        try await withServer(.sqlite, { $0.alerts.controlUrl = "http://127.0.0.1:\(alertd.port)" }) { server in
            let root = try await server.admin()
            let token = try #require(await root.client.session?.accessToken)
            let r = try await rawRequest(.GET, server.baseURL + "/v1/admin/alerts", bearer: token)
            #expect(r.status == 200)
            let value = try decode(JSONValue.self, r.body)
            guard case .object(let o) = value, case .array(let alerts)? = o["alerts"], case .object(let first)? = alerts.first else {
                Issue.record("unexpected answer \(r.body)"); return
            }
            #expect(o["available"] == .bool(true))
            #expect(first["name"] == .string("DiskAlmostFull") && first["severity"] == .string("critical"))
        }
        // alertd gone: the console is told, not left hanging.
        alertd.stop()
        try await withServer(.sqlite, { $0.alerts.controlUrl = "http://127.0.0.1:\(alertd.port)" }) { server in
            let root = try await server.admin()
            let r = try await rawRequest(.GET, server.baseURL + "/v1/admin/alerts", bearer: try #require(await root.client.session?.accessToken))
            #expect(r.status == 200 && r.body.contains("\"available\":false") && r.body.contains("did not answer"))
        }
    }
}

/// Stands in for alertd's control API in tests: answers one path with a fixed JSON body, 404 otherwise.
final class OneRouteHTTPServer: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let thread: Thread
    private let stopped: Mutexed<Bool>

    init(path: String, body: String) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, len) == 0 && listen(listener, 16) == 0 && getsockname(listener, $0, &len) == 0
            }
        }
        guard bound else { close(listener); throw POSIXError(.EADDRINUSE) }
        let stopped = Mutexed(false)
        self.fd = listener
        self.stopped = stopped
        self.port = Int(UInt16(bigEndian: addr.sin_port))
        thread = Thread {
            while !stopped.withLock({ $0 }) {
                let c = accept(listener, nil, nil)
                if c < 0 { break }
                var buf = [UInt8](repeating: 0, count: 8192)
                let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
                let line = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\r\n").first ?? "" : ""
                let hit = line.split(separator: " ").dropFirst().first == Substring(path)
                let payload = hit ? body : #"{"error":"not found"}"#
                let response = "HTTP/1.1 \(hit ? "200 OK" : "404 Not Found")\r\nContent-Type: application/json\r\n"
                    + "Content-Length: \(payload.utf8.count)\r\nConnection: close\r\n\r\n\(payload)"
                _ = Array(response.utf8).withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(c)
            }
        }
        thread.start()
    }

    func stop() {
        let first = stopped.withLock { s -> Bool in defer { s = true }; return !s }
        if first { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
    }
}
