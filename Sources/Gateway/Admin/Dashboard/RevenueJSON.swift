import BigInt
import GatewayStorage
import X402

/// `GET /revenue`: the dashboard's numbers as JSON. Amounts are strings of atomic units (exact),
/// with the asset's `decimals`, `symbol` and `totalInUnits` when the gateway knows them.
/// Without `by`: everything (totals, series, routes, payers, outcomes, latency, unknown outcomes);
/// with `by`: only that grouping, as `revenue`.
package enum RevenueJSON {
    package enum Grouping: String, CaseIterable {
        case route, asset, network, payer, time, outcome
    }

    package static func render(_ view: RevenueView, by grouping: Grouping?, assets: AssetDirectory) -> String {
        var fields = [
            ("window", JSONString.quoted(view.window.rawValue)),
            ("from", JSONString.quoted(LedgerReport.timestamp(view.query.from))),
            ("to", JSONString.quoted(LedgerReport.timestamp(view.query.to - 1))),
            ("bucketSeconds", "\(view.query.bucketMilliseconds / 1000)"),
        ]
        if let grouping {
            fields.append(("by", JSONString.quoted(grouping.rawValue)))
            fields.append(("revenue", array(lines(view, grouping, assets: assets))))
        } else {
            fields.append(("totals", array(lines(view, .asset, assets: assets))))
            fields.append(("series", array(lines(view, .time, assets: assets))))
            fields.append(("routes", array(lines(view, .route, assets: assets))))
            fields.append(("payers", array(lines(view, .payer, assets: assets))))
            fields.append(("outcomes", array(lines(view, .outcome, assets: assets))))
            let l = view.summary.latency
            var latency = [("settlements", "\(l.count)")]
            for (name, value) in [("p50", l.p50), ("p90", l.p90), ("p99", l.p99), ("max", l.max)] {
                if let value { latency.append((name + "Ms", "\(value)")) }
            }
            fields.append(("settlementLatency", object(latency)))
            fields.append(("unknownOutcomes", array(view.summary.attention.map { line in
                object([("network", JSONString.quoted(line.network)), ("asset", JSONString.quoted(line.asset)),
                        ("payments", "\(line.payments)")] + amount(BigUInt(line.total.description) ?? 0, network: line.network, asset: line.asset, assets: assets)
                       + [("oldestClaimedAt", JSONString.quoted(LedgerReport.timestamp(line.oldestClaimedAt)))])
            })))
        }
        return object(fields)
    }

    static func lines(_ view: RevenueView, _ grouping: Grouping, assets: AssetDirectory) -> [String] {
        switch grouping {
        case .asset:
            return view.totals.map { total in
                object(asset(total.network, total.asset) + [("payments", "\(total.payments)")]
                       + amount(total.total, network: total.network, asset: total.asset, assets: assets))
            }
        case .network:
            var networks: [String: (Int, [(String, BigUInt)])] = [:]
            for total in view.totals {
                networks[total.network, default: (0, [])].0 += total.payments
                networks[total.network]!.1.append((total.asset, total.total))
            }
            return networks.keys.sorted().map { network in
                let (payments, totals) = networks[network]!
                return object([("network", JSONString.quoted(network)), ("payments", "\(payments)"),
                               ("assets", array(totals.sorted { $0.0 < $1.0 }.map { asset, total in
                                   object([("asset", JSONString.quoted(asset))] + amount(total, network: network, asset: asset, assets: assets))
                               }))])
            }
        case .route:
            return view.routes.map { route in
                object([("route", JSONString.quoted(route.routeID))] + asset(route.network, route.asset)
                       + [("payments", "\(route.payments)")] + amount(route.total, network: route.network, asset: route.asset, assets: assets))
            }
        case .payer:
            return view.summary.payers.map { payer in
                object([("payer", JSONString.quoted(payer.payer))] + asset(payer.network, payer.asset) + [("payments", "\(payer.payments)")]
                       + amount(BigUInt(payer.total.description) ?? 0, network: payer.network, asset: payer.asset, assets: assets))
            }
        case .time:
            // Per bucket and asset, routes together (per route: `summary.revenue`, grouped the same way by the page).
            var buckets: [String: (Int64, String, String, Int, BigUInt)] = [:]
            for line in view.summary.revenue {
                let key = "\(line.bucketStart) \(line.network) \(line.asset)"
                let previous = buckets[key] ?? (line.bucketStart, line.network, line.asset, 0, 0)
                buckets[key] = (previous.0, previous.1, previous.2, previous.3 + line.payments, previous.4 + (BigUInt(line.total.description) ?? 0))
            }
            return buckets.values.sorted { ($0.0, $0.1, $0.2) < ($1.0, $1.1, $1.2) }.map { start, network, asset, payments, total in
                object([("bucket", JSONString.quoted(LedgerReport.timestamp(start)))] + self.asset(network, asset)
                       + [("payments", "\(payments)")] + amount(total, network: network, asset: asset, assets: assets))
            }
        case .outcome:
            return view.outcomes.flatMap { group in
                group.reasons.map { reason, payments in
                    var fields = [("outcome", JSONString.quoted(group.category.rawValue))]
                    if let reason { fields.append(("reason", JSONString.quoted(reason))) }
                    return object(fields + [("payments", "\(payments)")])
                }
            }
        }
    }

    private static func asset(_ network: String, _ asset: String) -> [(String, String)] {
        [("network", JSONString.quoted(network)), ("asset", JSONString.quoted(asset))]
    }

    private static func amount(_ total: BigUInt, network: String, asset: String, assets: AssetDirectory) -> [(String, String)] {
        var fields = [("total", JSONString.quoted(String(total)))]
        let known = assets.asset(network: network, address: asset)
        if let decimals = known.decimals {
            fields.append(("decimals", "\(decimals)"))
            if let symbol = known.symbol { fields.append(("symbol", JSONString.quoted(symbol))) }
            fields.append(("totalInUnits", JSONString.quoted(Money.format(total, decimals: decimals))))
        }
        return fields
    }

    private static func object(_ fields: [(String, String)]) -> String {
        "{" + fields.map { "\(JSONString.quoted($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }

    private static func array(_ items: [String]) -> String { "[" + items.joined(separator: ",") + "]" }
}
