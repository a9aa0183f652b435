import GatewayCore
import Yams

extension YAMLReader {
    /// `upto: "$0.05"` (the maximum, in the network's default stablecoin, through Permit2), or
    /// `upto: { max: "$0.05" | { amount, asset, … }, perKiB: PRICE | perUnit: { field, price }, holdBack: SIZE }`.
    func uptoRoute(_ node: Node, defaults: RouteDefaults) -> (Offer, UptoMetering)? {
        if node.scalar != nil {
            guard let offer = offer(node, defaults: defaults, at: node, scheme: "upto") else { return nil }
            return (offer, UptoMetering())
        }
        guard let m = mapping(node, "upto", allowed: ["max", "perKiB", "perUnit", "holdBack"]) else { return nil }
        guard let maxNode = m["max"]?.value else {
            error(node, "upto needs \"max\": the most one request may cost (what the buyer signs for), e.g. max: \"$0.05\"")
            return nil
        }
        guard let offer = offer(maxNode, defaults: defaults, at: node, scheme: "upto") else { return nil }
        var metering = UptoMetering()
        var ok = true
        if m["perKiB"] != nil, let perUnit = m["perUnit"] {
            error(perUnit.key, "upto takes one rule: perKiB or perUnit, not both")
            ok = false
        }
        if let n = m["perKiB"]?.value {
            if let price = unitPrice(n, "upto.perKiB", offer: offer) { metering.rule = .perKiB(price) } else { ok = false }
        } else if let n = m["perUnit"]?.value {
            if let rule = perUnitRule(n, offer: offer) { metering.rule = rule } else { ok = false }
        }
        if let n = m["holdBack"]?.value {
            if n.scalar?.string == "0" {
                metering.holdBack = 0
            } else if let size = byteSize(n, "upto.holdBack") {
                metering.holdBack = size
            } else {
                ok = false
            }
        }
        return ok ? (offer, metering) : nil
    }

    /// `perUnit: { field: usage.total_tokens, price: "$0.00002" }`.
    private func perUnitRule(_ node: Node, offer: Offer) -> UptoMetering.Rule? {
        guard let m = mapping(node, "upto.perUnit", allowed: ["field", "price"]) else { return nil }
        guard let fieldNode = m["field"]?.value, let priceNode = m["price"]?.value else {
            error(node, "upto.perUnit needs \"field\" (where the number is in the JSON answer, e.g. usage.total_tokens) and \"price\" (per unit)")
            return nil
        }
        guard let text = string(fieldNode, "upto.perUnit.field") else { return nil }
        guard let field = JSONFieldPath(text)?.keys else {
            error(fieldNode, "upto.perUnit.field must be keys (or array indexes) joined by dots, like usage.total_tokens, not \"\(text)\"")
            return nil
        }
        guard let price = unitPrice(priceNode, "upto.perUnit.price", offer: offer) else { return nil }
        return .perUnit(field: field, price: price)
    }

    /// A price per unit: `"$0.00001"` (dollars, exact even below one atomic unit) or atomic units (`"25"`, `"2.5"`).
    private func unitPrice(_ node: Node, _ what: String, offer: Offer) -> UnitPrice? {
        guard let text = string(node, what) else { return nil }
        switch UnitPrice.parse(text, decimals: offer.decimals) {
        case .success(let price): return price
        case .failure(.unknownDecimals):
            error(node, "\(what) \"\(text)\" is in dollars but the asset's decimals are unknown: give decimals with the asset, or the price in atomic units")
        case .failure(.notDecimal):
            error(node, "\(what) must be a price like \"$0.001\" or atomic units like \"250\" or \"2.5\", not \"\(text)\"")
        }
        return nil
    }
}
