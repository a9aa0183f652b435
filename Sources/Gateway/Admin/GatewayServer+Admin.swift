import Foundation
import GatewayCore
import GatewayStorage
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Paywall
import Synchronization
import X402
import X402Facilitator

/// The admin listener: `GET /healthz`, `GET /readyz`, `GET /metrics`, `GET /payments`,
/// `GET /payments/deferred`, `GET /revenue`,
/// `GET /dashboard`, `POST /reload`, and with `admin.token` the sign-in form (`/login`, `/logout`).
extension GatewayServer {
    func adminApplication(_ admin: AdminConfig) -> some ApplicationProtocol {
        let router = Router()
        // The token is read from the serving snapshot: a reload changes it at once.
        router.add(middleware: AdminGuard(token: { [box] in box.snapshot.config.admin?.token }))
        addDashboardRoutes(router)
        router.get("healthz") { _, _ in Self.json(.ok, "{\"status\":\"ok\"}") }
        router.get("readyz") { _, _ in
            let (ready, checks) = await self.readiness()
            let body = "{\"status\":\(JSONString.quoted(ready ? "ready" : "not_ready")),\"checks\":{"
                + checks.map { "\(JSONString.quoted($0.name)):\(JSONString.quoted($0.detail))" }.joined(separator: ",") + "}}"
            return Self.json(ready ? .ok : .serviceUnavailable, body)
        }
        router.get("payments") { request, _ in
            let parameters = request.uri.queryParameters
            var query = PaymentQuery(limit: min(1000, max(1, parameters["limit"].flatMap { Int(String($0)) } ?? 100)))
            query.routeID = parameters["route"].map(String.init)
            query.payer = parameters["payer"].map { String($0).lowercased() }
            query.before = parameters["before"].flatMap { Int64(String($0)) }
            query.since = parameters["since"].flatMap { Int64(String($0)) }
            if let after = parameters["after"] {
                guard let cursor = PaymentCursor(text: String(after)) else {
                    return Self.json(.badRequest, "{\"error\":\"bad cursor\",\"message\":\"after takes the next value of the previous page\"}")
                }
                query.after = cursor
            }
            if let states = parameters["state"] {
                let parsed = states.split(separator: ",").map { PaymentState(rawValue: String($0)) }
                guard !parsed.contains(nil) else {
                    return Self.json(.badRequest, "{\"error\":\"unknown state\"}")
                }
                query.states = parsed.compactMap { $0 }
            }
            // Payments answered just now are listed as settled (their last step is written behind the answer).
            await self.ledgerWritesLanded()
            do {
                let rows = try await self.store.payments(query)
                let next = rows.count == query.limit ? rows.last.map(PaymentCursor.init) : nil
                return Self.json(.ok, LedgerReport.json(rows, next: next))
            } catch {
                return Self.json(.serviceUnavailable, "{\"error\":\"storage_unavailable\",\"message\":\(JSONString.quoted("\(error)"))}")
            }
        }
        router.get("payments/deferred") { _, _ in
            let now = self.store.now()
            let hold = self.box.snapshot.config.deferredSettlement.failedPayerHold?.wholeMilliseconds ?? 0
            do {
                return Self.json(.ok, LedgerReport.deferredJSON(try await self.store.deferredSummary(failuresSince: now - hold), now: now))
            } catch {
                return Self.json(.serviceUnavailable, "{\"error\":\"storage_unavailable\",\"message\":\(JSONString.quoted("\(error)"))}")
            }
        }
        router.get("metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: self.metrics.exposition())))
        }
        router.post("reload") { _, _ in
            switch await self.reload(trigger: "admin endpoint") {
            case .applied(let restart):
                let list = restart.map { JSONString.quoted($0) }.joined(separator: ",")
                return Self.json(.ok, "{\"result\":\"applied\",\"restartRequired\":[\(list)]}")
            case .rejected(let errors):
                return Self.json(.unprocessableContent, "{\"result\":\"rejected\",\"errors\":\(JSONString.quoted(errors))}")
            case .noSource:
                return Self.json(.conflict, "{\"result\":\"rejected\",\"errors\":\"the gateway was not started from a file\"}")
            }
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(admin.listen.host, port: admin.listen.port), serverName: nil),
            onServerRunning: Self.announce("admin listening", admin.listen, logger: logger, then: { [logger] port in
                if admin.token == nil, !Self.isLoopback(admin.listen.host) {
                    logger.warning("the admin listener is not on loopback and has no admin.token: anyone who reaches it sees revenue and can reload",
                                   metadata: ["address": "\(admin.listen)"])
                }
                await self.onAdminListening(port)
            }),
            logger: logger)
    }

    static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    static func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(
            status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    /// Ready when the configuration is loaded, the facilitator answers `/supported` with every
    /// configured payment kind, the payment store answers, and every upstream host resolves. Each
    /// check says why it failed. Payments with an unknown settlement outcome are named under
    /// `storage` (per network, with whether reconciliation reads that network) without making the
    /// gateway unready.
    func readiness() async -> (ready: Bool, checks: [(name: String, detail: String)]) {
        var ready = true
        var checks: [(String, String)] = []
        if let error = lastReloadError {
            checks.append(("config", "ok (serving the previous configuration; the last reload failed: \(error))"))
        } else {
            checks.append(("config", "ok"))
        }
        switch await facilitatorCoverage() {
        case .notNeeded: checks.append(("facilitator", "ok (no priced routes)"))
        case .complete: checks.append(("facilitator", "ok"))
        case .notConfigured:
            ready = false
            checks.append(("facilitator", "routes are priced but no facilitator is configured"))
        case .missing(let kinds):
            ready = false
            checks.append(("facilitator", "does not support: \(kinds.joined(separator: ", "))"))
        case .unreachable(let why):
            ready = false
            checks.append(("facilitator", "unreachable: \(why)"))
        }
        if let group = box.snapshot.facilitatorGroup {
            // Each member: a resting one does not make the gateway unready while another serves.
            let members = group.status().map { member in
                "\(member.name): " + (member.resting.map { "resting after a failure (\($0))" } ?? "serving")
            }
            checks.append(("facilitators", members.joined(separator: "; ")))
        }
        if let tls = serverTLS.withLock({ $0 }) {
            let (info, refused) = tls.status
            if Date() > info.notAfter {
                ready = false
                checks.append(("tls", "the served certificate expired: \(info)"))
            } else {
                checks.append(("tls", "ok (serving \(info)" + (refused.map { "; the files as they are now are not served: \($0)" } ?? "") + ")"))
            }
        }
        do {
            try await store.ping()
            let unknown = try await reconciler.attention()
            let durability = store.kind == "memory" ? "; in memory: neither durable nor shared" : ""
            var attention = ""
            if !unknown.isEmpty {
                let total = unknown.map(\.count).reduce(0, +)
                let every = Reconciler.text(box.snapshot.config.reconcile.interval)
                let networks = unknown.map { entry in
                    "\(entry.network): \(entry.count), " + (entry.rpcHost.map { "reconciled against the chain (\($0)) every \(every)" }
                        ?? "no rpc in networks: reconcile by hand")
                }
                let payments = total == 1 ? "1 payment with an unknown settlement outcome needs" : "\(total) payments with an unknown settlement outcome need"
                attention = "; \(payments) reconciliation (\(networks.joined(separator: "; ")))"
            }
            checks.append(("storage", "ok (\(store.kind)\(durability)\(attention))"))
        } catch {
            ready = false
            checks.append(("storage", "unavailable: \(error)"))
        }
        for (name, upstream) in box.snapshot.config.upstreams.sorted(by: { $0.key < $1.key }) {
            if await Self.resolves(upstream.host) {
                checks.append(("upstream \(name)", "ok"))
            } else {
                ready = false
                checks.append(("upstream \(name)", "host \(upstream.host) does not resolve"))
            }
        }
        return (ready, checks)
    }

    private static func resolves(_ host: String) async -> Bool {
        if IPRange.parseAddress(host) != nil { return true }
        let result = try? await NIOThreadPool.singleton.runIfActive { () -> Bool in
            var info: UnsafeMutablePointer<addrinfo>?
            let rc = getaddrinfo(host, nil, nil, &info)
            if let info { freeaddrinfo(info) }
            return rc == 0
        }
        return result ?? false
    }
}
