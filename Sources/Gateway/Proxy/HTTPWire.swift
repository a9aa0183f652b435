import NIOCore
import NIOHTTP1

/// HTTP/1.1 response bytes. The gateway's connection handler writes its responses as bytes itself
/// (no encoder handler in the pipeline): its own answers are serialised once per route, relayed
/// heads are written straight from the upstream's header list, and the body framing is chosen here.
enum HTTPWire {
    /// How a response body is delimited on the client connection.
    enum Framing: Equatable {
        /// No body (HEAD, 1xx, 204, 304, or an answer whose bytes are already written).
        case none
        /// `Content-Length`: body bytes as they are.
        case length
        /// `Transfer-Encoding: chunked` (HTTP/1.1 clients, length unknown).
        case chunked
        /// Length unknown and the client speaks HTTP/1.0: the body ends when the connection closes.
        case untilClose
    }

    /// Fields that describe one hop (RFC 9110 §7.6.1), never passed on in either direction. Lower case.
    static let hopByHop = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// Hop-by-hop response headers and `Settlement-Overrides` (an upstream's hint to the gateway,
    /// never relayed). Lower case.
    static let unrelayedResponseHeaders = hopByHop + ["settlement-overrides"]

    /// Whether an upstream response field goes on to the client: not hop-by-hop, not named in the
    /// upstream's `Connection` (`listed`, lower case).
    @inline(__always)
    static func isRelayed(_ name: String, listed: [String]) -> Bool {
        if unrelayedResponseHeaders.contains(where: { nameEquals(name, $0) }) { return false }
        return listed.isEmpty || !listed.contains(where: { nameEquals(name, $0) })
    }

    /// Whether `name` equals the lower-case ASCII `lower`, ignoring case, without allocating.
    @inline(__always)
    static func nameEquals(_ name: String, _ lower: String) -> Bool {
        bytesMatch(name, lower) { $0 | 0x20 == $1 }
    }

    /// Whether two field names or tokens are equal ignoring ASCII case, either side in any case
    /// (``nameEquals(_:_:)`` is the cheaper form when the second is lower case already).
    static func equalsIgnoringCase(_ a: String, _ b: String) -> Bool {
        func lower(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5A ? c | 0x20 : c }
        return bytesMatch(a, b) { lower($0) == lower($1) }
    }

    /// Whether two strings have as many UTF-8 bytes and each pair is `same`: over the contiguous
    /// bytes where both have them (native strings do), since iterating two `UTF8View`s with `zip`
    /// was over 1 % of a proxied request's user time.
    @inline(__always)
    private static func bytesMatch(_ a: String, _ b: String, _ same: (UInt8, UInt8) -> Bool) -> Bool {
        let x = a.utf8, y = b.utf8
        guard x.count == y.count else { return false }
        let contiguous = x.withContiguousStorageIfAvailable { p in y.withContiguousStorageIfAvailable { q in p.elementsEqual(q, by: same) } }
        if let equal = contiguous ?? nil { return equal }
        return x.elementsEqual(y, by: same)
    }

    /// Whether a response with this status to a request with this method can have a body.
    static func allowsBody(status: HTTPResponseStatus, isHead: Bool) -> Bool {
        !isHead && status.code >= 200 && status.code != 204 && status.code != 304
    }

    static func writeStatusLine(_ status: HTTPResponseStatus, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("HTTP/1.1 ")
        buffer.writeString(String(status.code))
        buffer.writeStaticString(" ")
        buffer.writeString(status.reasonPhrase)
        buffer.writeStaticString("\r\n")
    }

    static func writeHeader(_ name: String, _ value: String, into buffer: inout ByteBuffer) {
        buffer.writeString(name)
        buffer.writeStaticString(": ")
        buffer.writeString(value)
        buffer.writeStaticString("\r\n")
    }

    /// The head of a relayed upstream response: the upstream's fields minus hop-by-hop and
    /// Connection-listed ones, then the gateway's (`extra`, the request id when absent), the framing
    /// fields and `Connection: close` when the connection ends with this response. Returns the framing.
    static func writeRelayedHead(
        status: HTTPResponseStatus, upstream: HTTPHeaders, extra: [(String, String)] = [], requestID: String, isHead: Bool,
        clientIsHTTP10: Bool, close: Bool, into buffer: inout ByteBuffer
    ) -> Framing {
        writeStatusLine(status, into: &buffer)
        let listed = connectionListed(upstream)
        let extraNames = extra.map { $0.0.lowercased() }
        var hasRequestID = false
        var contentLength: String?
        for (name, value) in upstream where isRelayed(name, listed: listed) {
            if nameEquals(name, "content-length") {
                contentLength = value
                continue
            }
            if nameEquals(name, "x-request-id") { hasRequestID = true }
            if extraNames.contains(where: { nameEquals(name, $0) }) { continue }
            writeHeader(name, value, into: &buffer)
        }
        for (name, value) in extra { writeHeader(name, value, into: &buffer) }
        if !hasRequestID { writeHeader("X-Request-Id", requestID, into: &buffer) }
        let framing: Framing
        if let contentLength {
            writeHeader("Content-Length", contentLength, into: &buffer)
            framing = allowsBody(status: status, isHead: isHead) ? .length : .none
        } else if !allowsBody(status: status, isHead: isHead) {
            framing = .none
        } else if clientIsHTTP10 {
            framing = .untilClose
        } else {
            buffer.writeStaticString("Transfer-Encoding: chunked\r\n")
            framing = .chunked
        }
        if close || framing == .untilClose {
            buffer.writeStaticString("Connection: close\r\n")
        } else if clientIsHTTP10 {
            buffer.writeStaticString("Connection: keep-alive\r\n")
        }
        buffer.writeStaticString("\r\n")
        return framing
    }

    /// An interim (1xx) answer relayed from the upstream (`100 Continue`, `103 Early Hints`): the
    /// status line and the upstream's fields minus hop-by-hop and `Connection`-listed ones. No
    /// framing: a 1xx has no body, and the final answer follows on the same connection.
    static func writeInterimHead(status: HTTPResponseStatus, upstream: HTTPHeaders, into buffer: inout ByteBuffer) {
        writeStatusLine(status, into: &buffer)
        let listed = connectionListed(upstream)
        for (name, value) in upstream where isRelayed(name, listed: listed) && !nameEquals(name, "content-length") {
            writeHeader(name, value, into: &buffer)
        }
        buffer.writeStaticString("\r\n")
    }

    /// The `101 Switching Protocols` of a proxied WebSocket: the upstream's fields minus hop-by-hop,
    /// `Connection`-listed and gateway-owned ones, the request id, and the upgrade's own
    /// `Connection: Upgrade` and `Upgrade: websocket`.
    static func writeSwitchingProtocolsHead(upstream: HTTPHeaders, requestID: String, into buffer: inout ByteBuffer) {
        writeStatusLine(.switchingProtocols, into: &buffer)
        let listed = connectionListed(upstream)
        var hasRequestID = false
        for (name, value) in upstream where isRelayed(name, listed: listed) && !nameEquals(name, "content-length") {
            if ReverseProxy.isGatewayOwnedResponseField(name) { continue }
            if nameEquals(name, "x-request-id") { hasRequestID = true }
            writeHeader(name, value, into: &buffer)
        }
        if !hasRequestID { writeHeader("X-Request-Id", requestID, into: &buffer) }
        buffer.writeStaticString("Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    }

    /// Names listed in `Connection` (lower-cased); they are hop-by-hop too.
    static func connectionListed(_ headers: HTTPHeaders) -> [String] {
        var names: [String] = []
        for (name, value) in headers where nameEquals(name, "connection") {
            // The usual value, one option and no name: nothing to split or lower-case.
            if nameEquals(value, "keep-alive") || nameEquals(value, "close") { continue }
            for token in value.split(separator: ",") {
                let name = token.trimmingASCIISpaces().lowercased()
                if name != "close" && name != "keep-alive" { names.append(name) }
            }
        }
        return names
    }
}

extension HTTPWire {
    /// The values of the cookies called `name` in one `Cookie` field value (surrounding quotes dropped).
    static func cookieValues(_ field: String, named name: String) -> [Substring] {
        field.split(separator: ";").compactMap { pair in
            let trimmed = pair.trimmingASCIISpaces()
            guard let eq = trimmed.firstIndex(of: "="), trimmed[..<eq] == name else { return nil }
            let value = trimmed[trimmed.index(after: eq)...].trimmingASCIISpaces()
            return value.count >= 2 && value.first == "\"" && value.last == "\"" ? value.dropFirst().dropLast() : value
        }
    }
}

extension Substring {
    func trimmingASCIISpaces() -> Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return s
    }
}
