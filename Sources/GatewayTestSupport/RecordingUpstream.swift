import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// One request as the upstream saw it.
public struct RecordedRequest: Sendable {
    public var method: String
    /// The raw request target the upstream received (path and query).
    public var target: String
    /// The `Host` the upstream received (HTTP/1.1 `Host` becomes the request's authority).
    public var host: String?
    public var headers: HTTPFields
    public var bodyBytes: Int
    /// The gateway's port of the connection the request came on (one per upstream connection).
    public var peerPort: Int?
}

/// The upstream's request context: Hummingbird's core storage plus the peer's port.
public struct RecordingUpstreamContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let peerPort: Int?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.peerPort = source.channel.remoteAddress?.port
    }
}

/// A fake upstream API on port 0 that records every request it receives.
///
/// Routes: `/bytes/<n>` streams n bytes in 64 KiB chunks; `/status/<code>` answers that status;
/// `/slow/<ms>` answers after a delay; `/echo` echoes the request body; `/chunked/<n>` streams n
/// bytes without a Content-Length; `/abort/<n>` announces 2n bytes, sends n and drops the
/// connection; everything else answers
/// 200 with a small JSON body naming the path, plus one response field per `h=Name:%20value` in the
/// query (percent-decoded; e.g. `?h=Cache-Control:%20public,%20max-age%3D3600`).
public final class RecordingUpstream: Sendable {
    private let recorded = Mutex<[RecordedRequest]>([])

    public init() {}

    public var requests: [RecordedRequest] { recorded.withLock { $0 } }
    public var count: Int { recorded.withLock { $0.count } }
    public func reset() { recorded.withLock { $0.removeAll() } }

    public func targets() -> [String] { requests.map(\.target) }

    func respond(_ request: Request, peerPort: Int? = nil) async throws -> Response {
        let target = request.head.path ?? ""
        let path = String(target.split(separator: "?", maxSplits: 1).first ?? "")
        var bodyBytes = 0
        var echo = ByteBuffer()
        for try await chunk in request.body {
            bodyBytes += chunk.readableBytes
            if path == "/echo" { echo.writeImmutableBuffer(chunk) }
        }
        recorded.withLock {
            $0.append(RecordedRequest(
                method: request.method.rawValue, target: target, host: request.head.authority, headers: request.headers,
                bodyBytes: bodyBytes, peerPort: peerPort))
        }
        let parts = path.split(separator: "/")
        if parts.count == 2, parts[0] == "bytes", let total = Int(parts[1]) {
            return Response(
                status: .ok, headers: [.contentType: "application/octet-stream"],
                body: ResponseBody(contentLength: total) { writer in
                    let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 64 * 1024)
                    var sent = 0
                    while sent < total {
                        let n = min(chunk.readableBytes, total - sent)
                        try await writer.write(chunk.getSlice(at: 0, length: n)!)
                        sent += n
                    }
                    try await writer.finish(nil)
                })
        }
        if parts.count == 2, parts[0] == "chunked" || parts[0] == "abort", let total = Int(parts[1]) {
            let abort = parts[0] == "abort"
            let body: @Sendable (inout any ResponseBodyWriter) async throws -> Void = { writer in
                try await writer.write(ByteBuffer(repeating: UInt8(ascii: "y"), count: total))
                if abort { throw CancellationError() }
                try await writer.finish(nil)
            }
            return Response(
                status: .ok, headers: [.contentType: "application/octet-stream"],
                body: abort ? ResponseBody(contentLength: 2 * total, body) : ResponseBody(body))
        }
        if parts.count == 2, parts[0] == "status", let code = Int(parts[1]) {
            return Response(status: .init(code: code), headers: [.contentType: "application/json"],
                            body: .init(byteBuffer: ByteBuffer(string: "{\"status\":\(code)}")))
        }
        if parts.count == 2, parts[0] == "slow", let ms = Int(parts[1]) {
            try await Task.sleep(for: .milliseconds(ms))
        }
        if path == "/echo" {
            return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: echo))
        }
        var headers: HTTPFields = [.contentType: "application/json"]
        headers[HTTPField.Name("X-Upstream-Hop")!] = "upstream-value"
        headers[.connection] = "X-Upstream-Hop"
        for field in request.uri.queryParameters.getAll("h") {
            guard let colon = field.firstIndex(of: ":"), let name = HTTPField.Name(String(field[..<colon])) else { continue }
            headers.append(HTTPField(name: name, value: field[field.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        return Response(status: .ok, headers: headers,
                        body: .init(byteBuffer: ByteBuffer(string: "{\"path\":\(jsonQuote(path))}")))
    }

    /// Runs the upstream on 127.0.0.1 port 0; `onPort` receives the bound port.
    public func application(onPort: @escaping @Sendable (Int) async -> Void) -> some ApplicationProtocol {
        Application(
            responder: CallbackResponder { (request: Request, context: RecordingUpstreamContext) in
                try await self.respond(request, peerPort: context.peerPort)
            },
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { await onPort($0.localAddress?.port ?? 0) })
    }
}

func jsonQuote(_ s: String) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = .withoutEscapingSlashes
    let data = (try? encoder.encode(s)) ?? Data("\"\"".utf8)
    return String(decoding: data, as: UTF8.self)
}
