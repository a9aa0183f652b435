import Foundation
import GatewayCore
import HTTPTypes
import Hummingbird
import NIOCore
import Paywall
import X402

extension HTTPResponse.Status {
    /// 402 has no named constant in swift-http-types.
    static let paymentRequired = HTTPResponse.Status(code: 402, reasonPhrase: "Payment Required")
}

extension HTTPField.Name {
    static let paymentRequired = HTTPField.Name(X402Header.paymentRequired)!
    static let paymentSignature = HTTPField.Name(X402Header.paymentSignature)!
    static let paymentResponse = HTTPField.Name(X402Header.paymentResponse)!
    static let xPayment = HTTPField.Name(X402Header.xPayment)!
    static let xPaymentResponse = HTTPField.Name(X402Header.xPaymentResponse)!
    static let xForwardedFor = HTTPField.Name("X-Forwarded-For")!
    static let xForwardedProto = HTTPField.Name("X-Forwarded-Proto")!
    static let xForwardedHost = HTTPField.Name("X-Forwarded-Host")!
    static let forwarded = HTTPField.Name("Forwarded")!
    static let settlementOverrides = HTTPField.Name("Settlement-Overrides")!
    static let referrerPolicy = HTTPField.Name("Referrer-Policy")!
}

/// An answer the gateway writes itself, complete before it is sent: written straight to the
/// channel by ``FastAnswerHandler``, or handed to Hummingbird as a ``Response``.
struct Answer: Sendable {
    var status: HTTPResponse.Status
    var headers: HTTPFields
    /// nil for HEAD (the headers then carry the GET answer's Content-Length) and for 204.
    var body: ByteBuffer?

    var response: Response {
        Response(status: status, headers: headers, body: body.map { ResponseBody(byteBuffer: $0) } ?? ResponseBody())
    }
}

/// Builders for the answers the gateway writes itself (as opposed to relaying the upstream's).
struct GatewayResponses: Sendable {
    let cors: CORSConfig

    static let exposedHeaders = "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE"
    static let allowedRequestHeaders =
        "PAYMENT-SIGNATURE, X-PAYMENT, Access-Control-Expose-Headers, Content-Type, Authorization, Accept"

    func addCORS(_ headers: inout HTTPFields) {
        headers[.accessControlAllowOrigin] = cors.allowOrigin
        headers[.accessControlExposeHeaders] = Self.exposedHeaders
        if cors.allowOrigin != "*" { headers[.vary] = "Origin" }
    }

    /// A small JSON error: `{"error":"<code>","message":"<text>"}`.
    func error(_ status: HTTPResponse.Status, code: String, message: String, head: Bool = false) -> Answer {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        headers[.cacheControl] = "no-store"
        addCORS(&headers)
        let body = "{\"error\":\(JSONString.quoted(code)),\"message\":\(JSONString.quoted(message))}"
        if head { headers[.contentLength] = String(body.utf8.count) }
        return Answer(status: status, headers: headers, body: head ? nil : ByteBuffer(string: body))
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
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        headers[.cacheControl] = "no-store"
        headers[.paymentRequired] = challenge.header(resourceURL: resourceURL, error: error)
        addCORS(&headers)
        let body = challenge.v1Body(resourceURL: resourceURL, error: error)
        if head {
            headers[.contentLength] = String(body.count)
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
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        headers[.paymentRequired] = Base64.encode(json)
        headers[.contentSecurityPolicy] = rendered.contentSecurityPolicy
        headers[.xContentTypeOptions] = "nosniff"
        headers[.referrerPolicy] = "no-referrer"
        addCORS(&headers)
        if head {
            headers[.contentLength] = String(rendered.body.count)
            return Answer(status: .paymentRequired, headers: headers, body: nil)
        }
        return Answer(status: .paymentRequired, headers: headers, body: ByteBuffer(bytes: rendered.body))
    }

    /// Answer to a CORS preflight: allowed without payment.
    func preflight(requestedHeaders: String?) -> Answer {
        var headers = HTTPFields()
        headers[.accessControlAllowOrigin] = cors.allowOrigin
        headers[.accessControlAllowMethods] = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        headers[.accessControlAllowHeaders] = Self.allowedRequestHeaders + (requestedHeaders.map { ", " + $0 } ?? "")
        headers[.accessControlExposeHeaders] = Self.exposedHeaders
        headers[.accessControlMaxAge] = String(cors.maxAgeSeconds)
        headers[.cacheControl] = "no-store"
        if cors.allowOrigin != "*" { headers[.vary] = "Origin" }
        return Answer(status: .noContent, headers: headers, body: nil)
    }
}
