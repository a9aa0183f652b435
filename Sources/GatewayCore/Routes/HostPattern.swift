/// A route's optional `host` (exact, or `*.example.com` for any subdomain). Case-insensitive.
public struct HostPattern: Sendable, Hashable, CustomStringConvertible {
    public let pattern: String

    public init?(_ text: String) {
        let lower = text.lowercased()
        let name = lower.hasPrefix("*.") ? String(lower.dropFirst(2)) : lower
        guard !name.isEmpty, name.utf8.allSatisfy({
            ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".")
        }) else { return nil }
        self.pattern = lower
    }

    public var description: String { pattern }

    /// `.example.com` for `*.example.com` (what every host it matches ends with); nil for an exact host.
    var wildcardSuffix: Substring? { pattern.hasPrefix("*.") ? pattern.dropFirst(1) : nil }

    /// Whether every host `other` matches is matched by this pattern too (nil: any host).
    func covers(_ other: HostPattern?) -> Bool {
        guard let other else { return false }
        guard let suffix = wildcardSuffix else { return other == self }
        return (other.wildcardSuffix ?? Substring(other.pattern)).hasSuffix(suffix)
    }

    /// `host` is the request's host name, lower-cased and without port.
    public func matches(_ host: String) -> Bool {
        if pattern.hasPrefix("*.") { return host.hasSuffix(pattern.dropFirst(1)) }
        return host == pattern
    }

    /// Normalises a `Host` header value: lower-case, port and trailing dot removed.
    public static func normalize(hostHeader: String) -> String {
        var h = Substring(hostHeader.lowercased())
        if h.hasPrefix("[") {
            if let end = h.firstIndex(of: "]") { h = h[...end] }
        } else if let colon = h.lastIndex(of: ":") {
            h = h[..<colon]
        }
        if h.hasSuffix(".") { h = h.dropLast() }
        return String(h)
    }
}
