/// `host`, `host:port`, `[v6]` or `[v6]:port` taken apart: the one reader of an authority, for
/// every URL the gateway connects to (``HTTPOrigin``) and every address it listens on. The host is
/// letters, digits, `-`, `.` and `_`, or an IPv6 literal in brackets (returned without them); a
/// port is 0–65535 in at most five digits; user info (`@`) is refused.
package struct HostAndPort: Sendable, Equatable {
    package let host: Substring
    /// nil when the authority names none.
    package let port: Int?
    package let isIPv6: Bool

    package init?(_ authority: Substring) {
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var host: Substring
        var portText: Substring?
        var isIPv6 = false
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                portText = after.dropFirst()
            }
            guard host.contains(":"), host.utf8.allSatisfy({ Self.isHex($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ".") })
            else { return nil }
            isIPv6 = true
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            host = authority
        }
        var port: Int?
        if let portText {
            guard !portText.isEmpty, portText.utf8.count <= 5, portText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let value = Int(portText), value <= 65535
            else { return nil }
            port = value
        }
        guard !host.isEmpty else { return nil }
        if !isIPv6 {
            let allowed = host.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                    || c == UInt8(ascii: "-") || c == UInt8(ascii: ".") || c == UInt8(ascii: "_")
            }
            guard allowed else { return nil }
        }
        self.host = host
        self.port = port
        self.isIPv6 = isIPv6
    }

    private static func isHex(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
    }
}

/// Scheme, host and port: what a connection is opened to, and what idle connections are pooled by.
package struct HTTPOrigin: Hashable, Sendable {
    package let tls: Bool
    /// Lowercased; an IPv6 literal without its brackets.
    package let host: String
    package let port: Int
    /// An IPv4 or IPv6 literal (connected to without DNS; never sent as TLS SNI).
    package let isIPLiteral: Bool
    /// The `Host` header value: the host (bracketed for IPv6) and the port unless it is the scheme's default.
    package let hostHeader: String

    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port` (``HostAndPort``); nil when malformed or
    /// when the port is 0.
    package init?(tls: Bool, authority: Substring) {
        guard let parts = HostAndPort(authority) else { return nil }
        let port = parts.port ?? (tls ? 443 : 80)
        guard port >= 1 else { return nil }
        let lowered = parts.host.lowercased()
        let isIPv4 = !parts.isIPv6 && {
            let pieces = lowered.split(separator: ".", omittingEmptySubsequences: false)
            return pieces.count == 4 && pieces.allSatisfy { !$0.isEmpty && $0.count <= 3 && (Int($0).map { $0 <= 255 } ?? false) }
        }()
        self.tls = tls
        self.host = lowered
        self.port = port
        self.isIPLiteral = parts.isIPv6 || isIPv4
        let bracketed = parts.isIPv6 ? "[\(lowered)]" : lowered
        self.hostHeader = port == (tls ? 443 : 80) ? bracketed : "\(bracketed):\(port)"
    }

    package static func == (a: HTTPOrigin, b: HTTPOrigin) -> Bool { a.tls == b.tls && a.port == b.port && a.host == b.host }

    package func hash(into hasher: inout Hasher) {
        hasher.combine(host)
        hasher.combine(port)
        hasher.combine(tls)
    }
}

/// An absolute `http`/`https` URL taken apart once: its origin and its request target.
package struct HTTPURL: Sendable, Equatable {
    package var origin: HTTPOrigin
    /// Path and query as sent on the request line; may be empty for a base URL without a path.
    package var target: String

    package init(origin: HTTPOrigin, target: String) {
        self.origin = origin
        self.target = target
    }

    /// nil unless `text` is `http(s)://authority[/path][?query]` (a fragment is dropped) whose target is
    /// printable ASCII without spaces.
    package init?(_ text: String) {
        let head = text.prefix(8).lowercased()
        let tls: Bool
        if head.hasPrefix("https://") { tls = true } else if head.hasPrefix("http://") { tls = false } else { return nil }
        var rest = Substring(text).dropFirst(tls ? 8 : 7)
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        guard let origin = HTTPOrigin(tls: tls, authority: rest[..<authorityEnd]) else { return nil }
        var target = String(rest[authorityEnd...])
        if target.hasPrefix("?") { target = "/" + target }
        guard Self.isValidTarget(target) else { return nil }
        self.origin = origin
        self.target = target
    }

    /// The URL a `Location` header points to, seen from this URL: absolute (`https://…`),
    /// scheme-relative (`//host/…`), absolute-path (`/…`), query-only (`?…`) or path-relative (`next`,
    /// resolved against this target's directory; dot segments are left to the server).
    func resolving(_ location: String) -> HTTPURL? {
        var location = Substring(location)
        while location.first == " " { location = location.dropFirst() }
        while location.last == " " { location = location.dropLast() }
        if let hash = location.firstIndex(of: "#") { location = location[..<hash] }
        guard !location.isEmpty else { return nil }
        let head = location.prefix(8).lowercased()
        if head.hasPrefix("http://") || head.hasPrefix("https://") { return HTTPURL(String(location)) }
        if location.hasPrefix("//") { return HTTPURL((origin.tls ? "https:" : "http:") + location) }
        let path = target.prefix { $0 != "?" }
        let target: String
        if location.hasPrefix("/") {
            target = String(location)
        } else if location.hasPrefix("?") {
            target = (path.isEmpty ? "/" : String(path)) + String(location)
        } else {
            let directory = path.lastIndex(of: "/").map { path[...$0] } ?? "/"
            target = String(directory + location)
        }
        guard Self.isValidTarget(target) else { return nil }
        return HTTPURL(origin: origin, target: target)
    }

    private static func isValidTarget(_ target: String) -> Bool {
        (target.isEmpty || target.hasPrefix("/")) && target.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F }
    }
}
