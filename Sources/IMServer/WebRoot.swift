import Foundation
import Hummingbird
import NIOCore

/// Serves the web client and admin console from a directory: `/` is index.html, `/admin` is admin.html, and other
/// paths map to files below the root. Adds the browser security headers (CSP, nosniff, Referrer-Policy) to every
/// response of the main listener, API answers included.
struct WebRoot: RouterMiddleware {
    typealias Context = AppContext

    /// Scripts, styles and images only from this server; WebSocket to this server (`ws:`/`wss:` since CSP `'self'`
    /// does not match the ws scheme in every browser); blob: images are attachments fetched with the token.
    static let contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        + "media-src 'self' blob:; connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    static let contentTypes: [String: String] = [
        "html": "text/html; charset=utf-8", "css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8",
        "mjs": "text/javascript; charset=utf-8", "json": "application/json; charset=utf-8", "svg": "image/svg+xml",
        "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp",
        "ico": "image/x-icon", "txt": "text/plain; charset=utf-8", "woff2": "font/woff2", "webmanifest": "application/manifest+json",
    ]

    static let referrerPolicy = HTTPFields.Element.Name("Referrer-Policy")!

    let root: String
    let fileIO = FileIO()

    init(root: String) {
        // Symlinks in the root itself (/opt/warbler/current) are resolved once, so the containment check below
        // compares real paths.
        self.root = URL(fileURLWithPath: root).resolvingSymlinksInPath().path
    }

    func handle(_ request: Request, context: AppContext, next: (Request, AppContext) async throws -> Response) async throws -> Response {
        var response: Response
        if let served = try await serve(request, context: context) {
            response = served
        } else {
            response = try await next(request, context)
        }
        response.headers[.contentSecurityPolicy] = Self.contentSecurityPolicy
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[Self.referrerPolicy] = "no-referrer"
        return response
    }

    /// The response for a web file, or nil when the request is not for one (the router answers it).
    func serve(_ request: Request, context: AppContext) async throws -> Response? {
        guard request.method == .get || request.method == .head else { return nil }
        let path = request.uri.path
        if path.hasPrefix("/v1/") || path == "/v1" || path == "/healthz" || path == "/readyz" { return nil }
        let relative: String
        switch path {
        case "/", "/index.html": relative = "index.html"
        case "/admin", "/admin/", "/admin.html": relative = "admin.html"
        default:
            guard let r = Self.safeRelativePath(path) else { return Self.text(.notFound, "not found\n") }
            relative = r
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDirectory), isDirectory.boolValue else {
            if relative == "index.html" || relative == "admin.html" {
                return Self.text(.notFound, """
                    The Warbler web client is not installed on this server: \(root) does not exist.
                    The API is running (see /healthz and /v1/). Install a release that contains web/, or set
                    server.web_root in warbler.yaml to the directory holding index.html and admin.html.

                    """)
            }
            return nil
        }
        let full = URL(fileURLWithPath: root).appendingPathComponent(relative).resolvingSymlinksInPath().path
        // A symlink inside the root must not lead out of it.
        guard full.hasPrefix(root + "/") else { return Self.text(.notFound, "not found\n") }
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: full),
              attributes[.type] as? FileAttributeType == .typeRegular else {
            return nil
        }
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? 0
        let modified = (attributes[.modificationDate] as? Date) ?? Date(timeIntervalSince1970: 0)
        let ext = (relative as NSString).pathExtension.lowercased()
        var headers: HTTPFields = [:]
        headers[.contentType] = Self.contentTypes[ext] ?? "application/octet-stream"
        let etag = "\"\(String(size, radix: 16))-\(String(Int64(modified.timeIntervalSince1970 * 1_000_000), radix: 16))\""
        headers[.eTag] = etag
        headers[.lastModified] = Self.httpDate(modified)
        // Revalidate every time (a cheap 304): an upgrade swaps the files under the same names.
        headers[.cacheControl] = "no-cache"
        if Self.notModified(request, etag: etag, modified: modified) {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentLength] = String(size)
        if request.method == .head { return Response(status: .ok, headers: headers) }
        let body = try await fileIO.loadFile(path: full, context: context)
        return Response(status: .ok, headers: headers, body: body)
    }

    /// The request path as a path below the root, or nil for anything that could step outside it or name a hidden
    /// file: `..`, `.`, empty segments in the middle, backslashes, NUL, or undecodable percent escapes.
    static func safeRelativePath(_ rawPath: String) -> String? {
        guard let decoded = rawPath.removingPercentEncoding, decoded.hasPrefix("/") else { return nil }
        let segments = decoded.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        guard !segments.isEmpty else { return nil }
        for s in segments {
            if s.isEmpty || s.hasPrefix(".") || s.contains("\\") || s.contains("\0") { return nil }
        }
        return segments.joined(separator: "/")
    }

    static func notModified(_ request: Request, etag: String, modified: Date) -> Bool {
        if let inm = request.headers[.ifNoneMatch] {
            return inm.split(separator: ",").contains { tag in
                let t = tag.trimmingCharacters(in: .whitespaces)
                return t == "*" || t == etag || t == "W/" + etag
            }
        }
        if let ims = request.headers[.ifModifiedSince], let since = parseHTTPDate(ims) {
            return Int64(modified.timeIntervalSince1970) <= Int64(since.timeIntervalSince1970)
        }
        return false
    }

    static func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-store"],
                 body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// RFC 9110 IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
    static func httpDate(_ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970)
        var tm = tm()
        gmtime_r(&t, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(days[Int(tm.tm_wday)]), \(two(tm.tm_mday)) \(months[Int(tm.tm_mon)]) \(tm.tm_year + 1900) "
            + "\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) GMT"
    }

    static func parseHTTPDate(_ s: String) -> Date? {
        let p = s.split(separator: " ")
        guard p.count == 6, p[5] == "GMT", let day = Int32(p[1]), let mon = months.firstIndex(of: String(p[2])), let year = Int32(p[3]) else {
            return nil
        }
        let hms = p[4].split(separator: ":").compactMap { Int32($0) }
        guard hms.count == 3 else { return nil }
        var tm = tm()
        tm.tm_year = year - 1900
        tm.tm_mon = Int32(mon)
        tm.tm_mday = day
        tm.tm_hour = hms[0]
        tm.tm_min = hms[1]
        tm.tm_sec = hms[2]
        return Date(timeIntervalSince1970: TimeInterval(timegm(&tm)))
    }
}

