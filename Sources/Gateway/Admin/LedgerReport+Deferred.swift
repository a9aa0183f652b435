import BigInt
import Foundation
import GatewayStorage
import X402

/// The ledger's deferred settlements, summed (admin `/payments/deferred`, `x402-gateway payments
/// --deferred`): how many wait, how old the oldest is, how much is unsettled per route (atomic
/// units, exact), how many were delivered and then failed, and who failed lately.
extension LedgerReport {
    public struct DeferredRoute: Sendable, Equatable {
        public var route: String
        public var pending: Int
        public var unknown: Int
        /// Atomic units of the route's asset, queued or unknown.
        public var exposure: BigUInt
    }

    public static func deferredRoutes(_ summary: DeferredSummary) -> [DeferredRoute] {
        var routes: [String: DeferredRoute] = [:]
        for group in summary.unsettled {
            var route = routes[group.routeID] ?? DeferredRoute(route: group.routeID, pending: 0, unknown: 0, exposure: 0)
            if group.state == .settlementPending { route.pending += group.count } else { route.unknown += group.count }
            route.exposure += (BigUInt(group.amount) ?? 0) * BigUInt(group.count)
            routes[group.routeID] = route
        }
        return routes.values.sorted { $0.route < $1.route }
    }

    /// Seconds since the oldest queued payment was claimed (0 when none waits).
    static func oldestPendingSeconds(_ summary: DeferredSummary, now: Int64) -> Double {
        let oldest = summary.unsettled.filter { $0.state == .settlementPending }.map(\.oldestClaimedAt).min()
        return oldest.map { Double(max(0, now - $0)) / 1000 } ?? 0
    }

    public static func deferredJSON(_ summary: DeferredSummary, now: Int64) -> String {
        let routes = deferredRoutes(summary)
        let items = routes.map { r in
            "{\"route\":\(JSONString.quoted(r.route)),\"pending\":\(r.pending),\"unknown\":\(r.unknown),\"exposure\":\(JSONString.quoted(String(r.exposure)))}"
        }
        let payers = summary.failedPayers.sorted { $0.key < $1.key }.map { payer, at in
            "{\"payer\":\(JSONString.quoted(payer)),\"lastFailure\":\(JSONString.quoted(timestamp(at)))}"
        }
        return "{\"pending\":\(routes.map(\.pending).reduce(0, +)),\"unknown\":\(routes.map(\.unknown).reduce(0, +)),"
            + "\"failures\":\(summary.failures),\"oldestPendingSeconds\":\(String(format: "%.3f", oldestPendingSeconds(summary, now: now))),"
            + "\"routes\":[\(items.joined(separator: ","))],\"failedPayers\":[\(payers.joined(separator: ","))]}"
    }

    public static func deferredTable(_ summary: DeferredSummary, now: Int64) -> String {
        let routes = deferredRoutes(summary)
        var text = "pending \(routes.map(\.pending).reduce(0, +)), unknown \(routes.map(\.unknown).reduce(0, +)), "
            + "failed after delivery \(summary.failures), oldest pending \(String(format: "%.1f", oldestPendingSeconds(summary, now: now))) s\n"
        let header = ["ROUTE", "PENDING", "UNKNOWN", "EXPOSURE (ATOMIC)"]
        let lines = routes.map { [$0.route, String($0.pending), String($0.unknown), String($0.exposure)] }
        let widths = header.indices.map { i in ([header] + lines).map { $0[i].count }.max() ?? 0 }
        text += ([header] + lines).map { cells in
            cells.enumerated().map { i, cell in i == cells.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
        if !summary.failedPayers.isEmpty {
            text += "recently failed payers (served after-success): "
                + summary.failedPayers.keys.sorted().joined(separator: ", ") + "\n"
        }
        return text
    }
}
