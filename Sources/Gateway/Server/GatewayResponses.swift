import GatewayCore
import NIOCore
import NIOHTTP1
import Paywall
import X402

/// An answer the gateway writes itself, complete before it is sent.
package struct Answer: Sendable {
    package var status: HTTPResponseStatus
    package var headers: HTTPHeaders
    /// nil for HEAD (the headers then carry the GET answer's Content-Length) and for 204.
    package var body: ByteBuffer?

    /// Its bytes, minus the per-response fields (`Date`, `X-Request-Id`, `Connection`).
    func encoded() -> EncodedAnswer {
        var head = ByteBufferAllocator().buffer(capacity: 256)
        HTTPWire.writeStatusLine(status, into: &head)
        var hasLength = false
        for (name, value) in headers {
            if HTTPWire.nameEquals(name, "content-length") { hasLength = true }
            HTTPWire.writeHeader(name, value, into: &head)
        }
        if let body, !hasLength { HTTPWire.writeHeader("Content-Length", String(body.readableBytes), into: &head) }
        return EncodedAnswer(head: head, body: body, hasRequestID: headers.contains(name: "x-request-id"))
    }
}

/// An ``Answer`` serialised once (a route's 402 is reused for every request asking for the same URL).
struct EncodedAnswer: Sendable {
    let head: ByteBuffer
    let body: ByteBuffer?
    let hasRequestID: Bool

    /// The complete response: the stored head, `Date`, the request id, `Connection`, the body.
    func bytes(requestID: String, connection: String?, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: head.readableBytes + (body?.readableBytes ?? 0) + 128)
        var head = self.head
        buffer.writeBuffer(&head)
        buffer.writeStaticString("Date: ")
        buffer.writeString(HTTPDate.now())
        buffer.writeStaticString("\r\n")
        if !hasRequestID { HTTPWire.writeHeader("X-Request-Id", requestID, into: &buffer) }
        if let connection { HTTPWire.writeHeader("Connection", connection, into: &buffer) }
        buffer.writeStaticString("\r\n")
        if var body { buffer.writeBuffer(&body) }
        return buffer
    }
}

/// Builders for the answers the gateway writes itself (as opposed to relaying the upstream's).
struct GatewayResponses: Sendable {
    let cors: CORSConfig

    static let exposedHeaders = "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE"
    static let allowedRequestHeaders =
        "PAYMENT-SIGNATURE, X-PAYMENT, PAYMENT-PASS, Access-Control-Expose-Headers, Content-Type, Authorization, Accept"

    func addCORS(_ headers: inout HTTPHeaders) {
        headers.add(name: "Access-Control-Allow-Origin", value: cors.allowOrigin)
        headers.add(name: "Access-Control-Expose-Headers", value: Self.exposedHeaders)
        if cors.allowOrigin != "*" { headers.add(name: "Vary", value: "Origin") }
    }

    /// A small JSON error: `{"error":"<code>","message":"<text>"}`.
    func error(_ status: HTTPResponseStatus, code: String, message: String, head: Bool = false) -> Answer {
        var headers: HTTPHeaders = ["Content-Type": "application/json", "Cache-Control": "no-store"]
        addCORS(&headers)
        let body = "{\"error\":\(JSONString.quoted(code)),\"message\":\(JSONString.quoted(message))}"
        if head { headers.add(name: "Content-Length", value: String(body.utf8.count)) }
        return Answer(status: status, headers: headers, body: head ? nil : ByteBuffer(string: body))
    }

    /// 429 with `Retry-After` (whole seconds), readable by pages on other origins.
    func rateLimited(retryAfter seconds: Int, head: Bool) -> Answer {
        var answer = error(.tooManyRequests, code: "rate_limited",
                           message: "too many requests to this route from this client: retry after \(seconds) s", head: head)
        answer.headers.add(name: "Retry-After", value: String(seconds))
        answer.headers.replaceOrAdd(name: "Access-Control-Expose-Headers", value: Self.exposedHeaders + ", Retry-After")
        return answer
    }

    /// The 402 for API clients: v2 challenge in `PAYMENT-REQUIRED`, v1 challenge as the JSON body.
    /// With a `paywall` (browsers only), the body is that HTML page instead; the header stays.
    func paymentRequired(
        _ challenge: Challenge, resourceURL: String, error: String = Challenge.defaultError, head: Bool,
        paywall: PaywallPage? = nil, method: String = "GET"
    ) -> Answer {
        if let paywall {
            return paywallPage(paywall, challenge: challenge, resourceURL: resourceURL, error: error, head: head, method: method)
        }
        var headers: HTTPHeaders = ["Content-Type": "application/json", "Cache-Control": "no-store"]
        headers.add(name: X402Header.paymentRequired, value: challenge.header(resourceURL: resourceURL, error: error))
        addCORS(&headers)
        let body = challenge.v1Body(resourceURL: resourceURL, error: error)
        if head {
            headers.add(name: "Content-Length", value: String(body.count))
            return Answer(status: .paymentRequired, headers: headers, body: nil)
        }
        return Answer(status: .paymentRequired, headers: headers, body: ByteBuffer(bytes: body))
    }

    /// The browser paywall: the page, its per-response CSP nonce, and the same `PAYMENT-REQUIRED`
    /// header API clients get.
    private func paywallPage(
        _ page: PaywallPage, challenge: Challenge, resourceURL: String, error: String, head: Bool, method: String
    ) -> Answer {
        let json = challenge.paymentRequired(resourceURL: resourceURL, error: error)
        // HEAD describes the GET answer (same length), so the page is the one GET would get.
        let rendered = page.render(paymentRequiredJSON: json, resourceURL: resourceURL, method: head ? "GET" : method)
        var headers: HTTPHeaders = ["Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"]
        headers.add(name: X402Header.paymentRequired, value: Base64.encode(json))
        headers.add(name: "Content-Security-Policy", value: rendered.contentSecurityPolicy)
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        headers.add(name: "Referrer-Policy", value: "no-referrer")
        addCORS(&headers)
        if head {
            headers.add(name: "Content-Length", value: String(rendered.body.count))
            return Answer(status: .paymentRequired, headers: headers, body: nil)
        }
        return Answer(status: .paymentRequired, headers: headers, body: ByteBuffer(bytes: rendered.body))
    }

    /// `GET /.well-known/x402`: public, readable from any page the CORS settings allow.
    func discoveryManifest(_ json: [UInt8], head: Bool) -> Answer {
        var headers: HTTPHeaders = ["Content-Type": "application/json", "Cache-Control": "public, max-age=60"]
        addCORS(&headers)
        if head {
            headers.add(name: "Content-Length", value: String(json.count))
            return Answer(status: .ok, headers: headers, body: nil)
        }
        return Answer(status: .ok, headers: headers, body: ByteBuffer(bytes: json))
    }

    /// Answer to a CORS preflight: allowed without payment.
    func preflight(requestedHeaders: String?) -> Answer {
        var headers: HTTPHeaders = [
            "Access-Control-Allow-Origin": cors.allowOrigin,
            "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": Self.allowedRequestHeaders + (requestedHeaders.map { ", " + $0 } ?? ""),
            "Access-Control-Expose-Headers": Self.exposedHeaders,
            "Access-Control-Max-Age": String(cors.maxAgeSeconds),
            "Cache-Control": "no-store",
        ]
        if cors.allowOrigin != "*" { headers.add(name: "Vary", value: "Origin") }
        return Answer(status: .noContent, headers: headers, body: nil)
    }
}
