import NIOCore
import NIOPosix

/// A parsed HTTP/1.1 response read off a raw socket.
public struct RawHTTPResponse: Sendable {
    public var status: Int
    /// Header lines as (name, value), in order.
    public var headers: [(String, String)]
    public var body: [UInt8]
    public var bodyByteCount: Int
    /// A chunked body's trailer fields, and whether its last chunk came (false: cut short).
    public var trailers: [(String, String)] = []
    public var chunkedComplete = false

    public func trailer(_ name: String) -> String? {
        trailers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// A deliberately dumb HTTP client: sends bytes exactly as given (no URL normalisation), so tests
/// can present the gateway with the ambiguous request targets real attackers send.
public enum RawHTTP {
    public static func send(port: Int, raw: String, discardBody: Bool = false,
                            onBodyBytes: (@Sendable (Int) -> Void)? = nil) async throws -> RawHTTPResponse {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: Array(raw.utf8)))
            let isHeadRequest = raw.hasPrefix("HEAD ")
            var head: [UInt8] = []
            var body: [UInt8] = []
            var bodyCount = 0
            var headDone = false
            for try await chunk in inbound {
                var bytes = Array(chunk.readableBytesView)
                if !headDone {
                    head.append(contentsOf: bytes)
                    guard let end = findHeadEnd(head) else { continue }
                    bytes = Array(head[(end + 4)...])
                    head.removeSubrange(end...)
                    headDone = true
                    if (isHeadRequest || isBodyless(head)) && bytes.isEmpty { break }
                    if contentLength(head) == 0 { break }
                }
                bodyCount += bytes.count
                onBodyBytes?(bodyCount)
                if !discardBody { body.append(contentsOf: bytes) }
                // Stop at the end of a Content-Length body (the server may keep the connection open).
                if let length = contentLength(head), bodyCount >= length { break }
                if isHeadRequest || isBodyless(head) { break }
            }
            return parse(head: head, body: body, bodyCount: bodyCount)
        }
    }

    /// Writes `raw` (several requests, pipelined or not) on one connection and reads until the
    /// server closes it; returns the responses in order. Bodies are framed by Content-Length or
    /// chunked encoding; `headRequests` says which responses answer a HEAD (no body).
    /// With `halfClose`, the sending side is shut down right after the requests are written.
    public static func exchange(port: Int, raw: String, headRequests: Set<Int> = [], halfClose: Bool = false) async throws -> [RawHTTPResponse] {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
        let bytes = try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: Array(raw.utf8)))
            if halfClose { outbound.finish() }
            var all: [UInt8] = []
            for try await chunk in inbound { all.append(contentsOf: chunk.readableBytesView) }
            return all
        }
        var responses: [RawHTTPResponse] = []
        var rest = bytes[...]
        while let end = findHeadEnd(Array(rest)) {
            let head = Array(rest.prefix(end))
            rest = rest.dropFirst(end + 4)
            var body: [UInt8] = []
            if headRequests.contains(responses.count) || isBodyless(head) {
                // no body
            } else if let length = contentLength(head) {
                body = Array(rest.prefix(length))
                rest = rest.dropFirst(length)
            } else if let terminator = Array(rest).firstRange(of: Array("0\r\n\r\n".utf8)) {
                body = Array(rest.prefix(terminator.upperBound))
                rest = rest.dropFirst(terminator.upperBound)
            }
            responses.append(parse(head: head, body: body, bodyCount: body.count))
        }
        return responses
    }

    /// Sends `raw` (which must ask for `Connection: close`) over a blocking socket (``RawSocket``)
    /// on the calling thread and reads until the server closes. For latency measured from a thread
    /// of its own: the async clients share the test process's event loops and executor with every
    /// test running in parallel, and under load their scheduling delays would be timed as the server's.
    public static func sendBlocking(port: Int, raw: String) throws -> RawHTTPResponse {
        let socket = try RawSocket(port: port, receiveTimeout: 30)
        guard socket.sendBlocking(Array(raw.utf8)) else { throw RawSocketError.sendFailed }
        let bytes = socket.readBlocking().bytes
        guard let end = findHeadEnd(bytes) else { throw RawSocketError.noResponseHead }
        let body = Array(bytes[(end + 4)...])
        return parse(head: Array(bytes[..<end]), body: body, bodyCount: body.count)
    }

    private static func headerLines(_ head: [UInt8]) -> [Substring] {
        String(decoding: head, as: UTF8.self).split(separator: "\r\n")
    }

    private static func contentLength(_ head: [UInt8]) -> Int? {
        for line in headerLines(head) where line.lowercased().hasPrefix("content-length:") {
            return Int(line.dropFirst("content-length:".count).filter { $0 != " " })
        }
        return nil
    }

    /// HEAD answers, interim (1xx) answers and 204/304 have no body whatever their headers say; the
    /// raw requests here are only ever HEAD when the request line says so, which the caller passes as `raw`.
    private static func isBodyless(_ head: [UInt8]) -> Bool {
        guard let status = headerLines(head).first?.split(separator: " ").dropFirst().first else { return false }
        return status == "204" || status == "304" || status.hasPrefix("1")
    }

    private static func findHeadEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }

    private static func parse(head: [UInt8], body: [UInt8], bodyCount: Int) -> RawHTTPResponse {
        let lines = String(decoding: head, as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines.first?.split(separator: " ") ?? []
        let status = statusParts.count > 1 ? Int(statusParts[1]) ?? 0 : 0
        var headers: [(String, String)] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingSpaces()))
        }
        var response = RawHTTPResponse(status: status, headers: headers, body: body, bodyByteCount: bodyCount)
        if headers.contains(where: { $0.0.lowercased() == "transfer-encoding" && $0.1.lowercased().contains("chunked") }) {
            (response.body, response.trailers, response.chunkedComplete) = dechunk(body)
        }
        return response
    }

    private static func dechunk(_ bytes: [UInt8]) -> (body: [UInt8], trailers: [(String, String)], complete: Bool) {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            var j = i
            while j + 1 < bytes.count && !(bytes[j] == 13 && bytes[j + 1] == 10) { j += 1 }
            guard j + 1 < bytes.count else { break }  // a size line cut short
            let sizeText = String(decoding: bytes[i..<j], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText, radix: 16) else { break }
            let start = j + 2
            if size == 0 {
                // The last chunk: trailer fields up to the blank line.
                let rest = String(decoding: bytes[start...], as: UTF8.self)
                var trailers: [(String, String)] = []
                for line in rest.split(separator: "\r\n", omittingEmptySubsequences: false) {
                    if line.isEmpty { return (out, trailers, true) }
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    trailers.append((String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingSpaces()))
                }
                return (out, trailers, false)
            }
            out.append(contentsOf: bytes[start..<min(start + size, bytes.count)])
            i = start + size + 2
        }
        return (out, [], false)
    }
}

extension String {
    fileprivate func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}
