import Foundation
import GatewayCore
import GatewayStorage
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Paywall
import X402

/// The admin routes of the revenue dashboard: the page, its JSON, and the sign-in form.
extension GatewayServer {
    /// Recent payments listed on the page.
    static let dashboardRecentRows = 25

    func addDashboardRoutes(_ router: Router<BasicRequestContext>) {
        router.get("dashboard") { request, _ in
            guard let window = DashboardWindow.parse(request.uri.queryParameters["window"].map(String.init)) else {
                return Self.json(.badRequest, "{\"error\":\"unknown window\",\"windows\":[\"1h\",\"24h\",\"7d\",\"30d\"]}")
            }
            let now = self.store.now()
            let query = window.query(now: now)
            let summary: RevenueSummary, recent: [PaymentRecord]
            await self.ledgerWritesLanded()
            do {
                summary = try await self.store.revenue(query)
                recent = try await self.store.payments(PaymentQuery(since: query.from, limit: Self.dashboardRecentRows))
            } catch {
                self.logger.error("payment store failed", metadata: ["x402.stage": "dashboard", "error": "\(error)"])
                return Self.json(.serviceUnavailable, "{\"error\":\"storage_unavailable\",\"message\":\(JSONString.quoted("\(error)"))}")
            }
            let config = self.box.snapshot.config
            let page = DashboardPage(
                view: RevenueView(summary: summary, window: window, query: query), recent: recent, assets: AssetDirectory(config: config),
                storeKind: self.store.kind, now: now, signedIn: config.admin?.token != nil)
            let nonce = PaywallPage.makeNonce()
            // `part=main`: only the content, for the page's own refresh (parsing a whole page again would
            // meet its style sheet under the new nonce, which the running page's CSP reports as a violation).
            let body = request.uri.queryParameters["part"] == "main" ? page.main : page.render(nonce: nonce)
            return AdminPages.html(.ok, body, csp: DashboardPage.contentSecurityPolicy(nonce: nonce))
        }
        router.get("revenue") { request, _ in
            let parameters = request.uri.queryParameters
            guard let window = DashboardWindow.parse(parameters["window"].map(String.init)) else {
                return Self.json(.badRequest, "{\"error\":\"unknown window\",\"windows\":[\"1h\",\"24h\",\"7d\",\"30d\"]}")
            }
            var grouping: RevenueJSON.Grouping?
            if let by = parameters["by"] {
                guard let parsed = RevenueJSON.Grouping(rawValue: String(by)) else {
                    let names = RevenueJSON.Grouping.allCases.map { JSONString.quoted($0.rawValue) }.joined(separator: ",")
                    return Self.json(.badRequest, "{\"error\":\"unknown grouping\",\"by\":[\(names)]}")
                }
                grouping = parsed
            }
            let top = min(100, max(1, parameters["top"].flatMap { Int(String($0)) } ?? 10))
            let now = self.store.now()
            let query = window.query(now: now, topPayers: top)
            await self.ledgerWritesLanded()
            do {
                let summary = try await self.store.revenue(query)
                let view = RevenueView(summary: summary, window: window, query: query)
                return Self.json(.ok, RevenueJSON.render(view, by: grouping, assets: AssetDirectory(config: self.box.snapshot.config)))
            } catch {
                return Self.json(.serviceUnavailable, "{\"error\":\"storage_unavailable\",\"message\":\(JSONString.quoted("\(error)"))}")
            }
        }
        router.get("login") { _, _ in
            guard self.box.snapshot.config.admin?.token != nil else { return AdminPages.redirect(to: "/dashboard") }
            return AdminPages.login(status: .ok, failed: false)
        }
        router.post("login") { request, _ in
            let access = AdminAccess(token: self.box.snapshot.config.admin?.token)
            guard access.token != nil else { return AdminPages.redirect(to: "/dashboard") }
            var request = request
            let body = (try? await request.collectBody(upTo: 4096)).map { String(buffer: $0) } ?? ""
            let presented = AdminAccess.formField(body, named: "token") ?? ""
            let now = Int64(Date().timeIntervalSince1970)
            guard access.accepts(formToken: presented), let session = access.session(now: now) else {
                self.logger.notice("admin sign-in refused")
                return AdminPages.login(status: .unauthorized, failed: true)
            }
            self.logger.info("admin signed in")
            return AdminPages.redirect(to: "/dashboard", setCookie: AdminAccess.setCookie(session))
        }
        router.post("logout") { _, _ in
            AdminPages.redirect(to: "/login", setCookie: AdminAccess.clearCookie)
        }
    }
}
