import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Paywall

/// Hummingbird middleware in front of every admin route: lets a request through when
/// ``AdminAccess`` admits it; otherwise 401, with the sign-in form for the dashboard and JSON for
/// the rest. Nothing of the request (its token, its cookie) is logged.
struct AdminGuard<Context: RequestContext>: RouterMiddleware {
    let token: @Sendable () -> String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let access = AdminAccess(token: token())
        let admitted = access.admits(
            path: request.uri.path, method: request.method.rawValue, authorization: request.headers[values: .authorization],
            cookies: request.headers[values: .cookie], now: Int64(Date().timeIntervalSince1970))
        if admitted { return try await next(request, context) }
        if request.uri.path == "/dashboard" && (request.method == .get || request.method == .head) {
            return AdminPages.login(status: .unauthorized, failed: false)
        }
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        headers[.cacheControl] = "no-store"
        headers[.wwwAuthenticate] = "Bearer realm=\"x402-gateway admin\""
        return Response(status: .unauthorized, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string:
            "{\"error\":\"unauthorized\",\"message\":\"admin.token is set: send Authorization: Bearer <token>, or sign in at /login\"}")))
    }
}

/// The HTML answers of the admin listener, each with its own CSP nonce.
enum AdminPages {
    static func html(_ status: HTTPResponse.Status, _ body: String, csp: String, extra: [(HTTPField.Name, String)] = []) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        headers[.contentSecurityPolicy] = csp
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        for (name, value) in extra { headers.append(HTTPField(name: name, value: value)) }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    static func login(status: HTTPResponse.Status, failed: Bool, extra: [(HTTPField.Name, String)] = []) -> Response {
        let nonce = PaywallPage.makeNonce()
        var extra = extra
        if status == .unauthorized { extra.append((.wwwAuthenticate, "Bearer realm=\"x402-gateway admin\"")) }
        return html(status, AdminLoginPage.render(nonce: nonce, failed: failed), csp: AdminLoginPage.contentSecurityPolicy(nonce: nonce), extra: extra)
    }

    static func redirect(to location: String, setCookie: String? = nil) -> Response {
        var headers = HTTPFields()
        headers[.location] = location
        headers[.cacheControl] = "no-store"
        if let setCookie { headers[.setCookie] = setCookie }
        return Response(status: .seeOther, headers: headers)
    }
}
