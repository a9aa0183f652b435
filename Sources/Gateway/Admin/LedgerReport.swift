import Foundation
import GatewayStorage
import X402

/// Ledger rows as the seller reads them: JSON (admin `/payments`, `x402-gateway payments --json`)
/// or an aligned table for a terminal. Amounts stay in atomic units, as strings.
public enum LedgerReport {
    /// `next`: where the next page starts (`after=` of `/payments`), when there may be one.
    public static func json(_ rows: [PaymentRecord], next: PaymentCursor? = nil) -> String {
        let items = rows.map(json).joined(separator: ",")
        let page = next.map { ",\"next\":\(JSONString.quoted($0.text))" } ?? ""
        return "{\"payments\":[\(items)]\(page)}"
    }

    static func json(_ r: PaymentRecord) -> String {
        var fields: [(String, String)] = [
            ("network", JSONString.quoted(r.key.network)), ("asset", JSONString.quoted(r.key.asset)),
            ("payer", JSONString.quoted(r.key.payer)), ("nonce", JSONString.quoted(r.key.nonce)),
            ("scheme", JSONString.quoted(r.offer.scheme)), ("amount", JSONString.quoted(r.offer.amount)),
            ("payTo", JSONString.quoted(r.offer.payTo)), ("route", JSONString.quoted(r.routeID)),
            ("method", JSONString.quoted(r.method)), ("path", JSONString.quoted(r.path)),
            ("requestId", JSONString.quoted(r.requestID)), ("state", JSONString.quoted(r.state.rawValue)),
            ("attempt", "\(r.attempt)"), ("instance", JSONString.quoted(r.instanceID)),
        ]
        func add(_ name: String, _ value: String?) { if let value { fields.append((name, JSONString.quoted(value))) } }
        if let status = r.upstreamStatus { fields.append(("upstreamStatus", "\(status)")) }
        if r.deferred { fields += [("deferred", "true"), ("settleAttempts", "\(r.settleAttempts)")] }
        add("verifiedPayer", r.verifiedPayer)
        add("reason", r.reason)
        add("transaction", r.transaction)
        if r.offer.transferMethod != "eip3009" { add("transferMethod", r.offer.transferMethod) }
        add("chargedAmount", r.chargedAmount)
        add("chargeBasis", r.chargeBasis)
        add("paymentIdentifier", r.paymentIdentifier)
        add("claimedAt", timestamp(r.claimedAt))
        add("verifiedAt", r.verifiedAt.map(timestamp))
        add("forwardedAt", r.forwardedAt.map(timestamp))
        add("settlingAt", r.settlingAt.map(timestamp))
        add("finishedAt", r.finishedAt.map(timestamp))
        add("reconciledAt", r.reconciledAt.map(timestamp))
        add("updatedAt", timestamp(r.updatedAt))
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }

    /// An aligned table: when, route, payer, amount, state, transaction or reason.
    public static func table(_ rows: [PaymentRecord]) -> String {
        let header = ["CLAIMED (UTC)", "ROUTE", "METHOD PATH", "PAYER", "AMOUNT", "STATE", "TX / REASON", "REQUEST"]
        let lines = rows.map { r in
            [timestamp(r.claimedAt), r.routeID, "\(r.method) \(r.path)", r.key.payer, r.offer.amount, r.state.rawValue,
             r.transaction ?? r.reason ?? "", r.requestID]
        }
        let widths = header.indices.map { i in ([header] + lines).map { $0[i].count }.max() ?? 0 }
        return ([header] + lines).map { cells in
            cells.enumerated().map { i, cell in i == cells.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }

    /// Unix milliseconds as ISO 8601 with milliseconds, UTC.
    static func timestamp(_ ms: Int64) -> String {
        var seconds = time_t(ms / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
                      Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(ms % 1000))
    }
}
