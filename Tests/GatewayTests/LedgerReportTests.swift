import Foundation
import Gateway
import GatewayStorage
import Testing

@Suite("Ledger reports for the seller")
struct LedgerReportTests {
    static let usdc = "0x036cbd53842c5426634e7929541ec2318f3dcf7e"

    static func row(_ nonce: String, route: String, payer: String, amount: String, state: PaymentState, day: Int64) -> PaymentRecord {
        let key = PaymentKey(network: "eip155:84532", asset: usdc, payer: payer, nonce: nonce)
        return PaymentRecord(
            key: key, offer: PaymentOffer(scheme: "exact", network: key.network, asset: usdc, amount: amount, payTo: "0x209693bc6afc0c5328ba36faf03c514ef312287c"),
            routeID: route, method: "GET", path: "/\(route)", requestID: "r-\(nonce)", state: state, attempt: 1, instanceID: "a",
            leaseUntil: 0, validBefore: 0, transaction: state.isSpent ? "0xt\(nonce)" : nil,
            claimedAt: 1_800_000_000_000 + day * 86_400_000, finishedAt: 1_800_000_000_000 + day * 86_400_000 + 5, updatedAt: 0)
    }

    @Test("revenue sums settled payments exactly, per route and per day; refused and released ones do not count")
    func revenueTotals() {
        let rows = [
            Self.row("0x1", route: "weather", payer: "0xa", amount: "1000", state: .settled, day: 0),
            Self.row("0x2", route: "weather", payer: "0xb", amount: "115792089237316195423570985008687907853269984665640564039457584007913129639935",
                     state: .reconciledSettled, day: 1),
            Self.row("0x3", route: "dear", payer: "0xa", amount: "10000", state: .settled, day: 1),
            Self.row("0x4", route: "dear", payer: "0xa", amount: "10000", state: .released, day: 1),
            Self.row("0x5", route: "dear", payer: "0xa", amount: "10000", state: .refused, day: 1),
            Self.row("0x6", route: "dear", payer: "0xa", amount: "10000", state: .unknown, day: 1),
        ]
        var byRoute = RevenueReport(by: .route)
        byRoute.add(rows)
        #expect(byRoute.sorted.map(\.group) == ["weather", "dear"])
        #expect(String(byRoute.sorted[0].total) == "115792089237316195423570985008687907853269984665640564039457584007913129640935")
        #expect(byRoute.sorted[1].payments == 1 && byRoute.sorted[1].total == 10000)
        var byDay = RevenueReport(by: .day)
        byDay.add(rows)
        #expect(byDay.sorted.map(\.group) == ["2027-01-15", "2027-01-16"])
        #expect(byDay.json.contains("\"totalInUnits\":\"0.001 USDC\""))
        #expect(byDay.table.split(separator: "\n").count == 3)
    }

    @Test("the ledger's JSON carries every step's time and leaves out what is not known")
    func ledgerJSON() throws {
        let row = Self.row("0x9", route: "weather", payer: "0xa", amount: "1000", state: .settled, day: 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(LedgerReport.json([row], next: PaymentCursor(row)).utf8)) as? [String: Any])
        let first = try #require((object["payments"] as? [[String: Any]])?.first)
        #expect(first["state"] as? String == "settled")
        #expect(first["amount"] as? String == "1000")
        #expect(first["claimedAt"] as? String == "2027-01-15T08:00:00.000Z")
        #expect(first["finishedAt"] as? String == "2027-01-15T08:00:00.005Z")
        #expect(first["verifiedAt"] == nil && first["reason"] == nil)
        let next = try #require(object["next"] as? String)
        #expect(PaymentCursor(text: next) == PaymentCursor(row))
        #expect(next.hasPrefix("\(row.claimedAt)~"))
    }
}
