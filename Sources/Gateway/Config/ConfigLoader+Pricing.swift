import BigInt
import GatewayCore
import X402
import X402Facilitator
import Yams

/// Dynamic prices in `gateway.yaml`: `price: { rules: [...], default: PRICE }` and
/// `price: { endpoint: URL, key: [...], max: PRICE, … }` (see docs/configuration.md).
extension YAMLReader {
    static let dynamicPriceKeys = ["rules", "default", "endpoint", "key", "timeout", "cacheFor", "cacheEntries", "min", "max", "headers"]
    private static let endpointOnlyKeys = ["key", "timeout", "cacheFor", "cacheEntries", "min", "max", "headers"]

    /// Whether a route's `price:` is a dynamic one (a mapping with `rules`, `default` or `endpoint`),
    /// rather than a fixed `"$0.01"` or `{ amount, asset }`.
    static func isDynamicPrice(_ node: Node) -> Bool {
        node.mapping?.contains { ["rules", "default", "endpoint"].contains($0.key.scalar?.string ?? "") } ?? false
    }

    /// The route's base offer (the rules' fallback, or the endpoint's maximum) and its dynamic price.
    func dynamicPrice(_ node: Node, defaults: RouteDefaults, at routeNode: Node, method: String?) -> (Offer, DynamicPrice)? {
        guard let m = mapping(node, "price", allowed: Self.dynamicPriceKeys) else { return nil }
        if let endpointNode = m["endpoint"] {
            if let rules = m["rules"] { error(rules.key, "give either price.rules or price.endpoint, not both") }
            if let fallback = m["default"] {
                error(fallback.key, "an endpoint price has no default: when the endpoint fails the request is refused (503), never priced lower; bound its answers with min and max")
            }
            return endpointPrice(m, endpoint: endpointNode.value, defaults: defaults, at: routeNode, method: method)
        }
        for key in Self.endpointOnlyKeys { if let entry = m[key] { error(entry.key, "price.\(key) belongs to a pricing endpoint (price.endpoint)") } }
        guard let rulesEntry = m["rules"] else {
            error(node, "a dynamic price needs rules: [{ when: { query | header | body: NAME, is: PATTERN }, price }] and a default")
            return nil
        }
        guard let fallbackEntry = m["default"] else {
            error(rulesEntry.key, "price.rules needs price.default: the price when no rule matches")
            return nil
        }
        guard let offer = offer(fallbackEntry.value, defaults: defaults, at: routeNode) else { return nil }
        guard let items = rulesEntry.value.sequence, !items.isEmpty else {
            error(rulesEntry.value, "price.rules must be a non-empty list of { when: { query | header | body: NAME, is: PATTERN }, price }")
            return nil
        }
        var rules: [PriceRule] = []
        var ruleNodes: [Node] = []
        for item in items {
            guard let rule = priceRule(item, offer: offer, method: method) else { continue }
            rules.append(rule)
            ruleNodes.append(item)
        }
        guard rules.count == items.count else { return nil }
        for (index, reason) in DynamicPrice.unreachable(rules) { error(ruleNodes[index], reason) }
        return (offer, .rules(rules, fallback: offer.amount))
    }

    /// `{ when: { query: NAME | header: NAME | body: PATH, is: PATTERN }, price: PRICE }`.
    private func priceRule(_ node: Node, offer: Offer, method: String?) -> PriceRule? {
        guard let m = mapping(node, "price rule", allowed: ["when", "price"]) else { return nil }
        guard let whenNode = m["when"]?.value, let priceNode = m["price"]?.value else {
            error(node, "a price rule needs when: { query | header | body: NAME, is: PATTERN } and price")
            return nil
        }
        guard let w = mapping(whenNode, "price rule's when", allowed: ["query", "header", "body", "is"]) else { return nil }
        let fields = ["query", "header", "body"].compactMap { kind in w[kind].map { (kind, $0) } }
        guard fields.count == 1, let (kind, entry) = fields.first else {
            error(whenNode, "a price rule's when names exactly one of query, header or body")
            return nil
        }
        guard let patternNode = w["is"]?.value else {
            error(whenNode, "a price rule's when needs is: PATTERN (* any run of characters, ? one, case-sensitive)")
            return nil
        }
        guard let name = string(entry.value, kind), let patternText = string(patternNode, "is"),
              let amount = ruleAmount(priceNode, "price rule's price", offer: offer)
        else { return nil }
        guard let field = priceField(kind: kind, name: name, node: entry.value, method: method) else { return nil }
        return PriceRule(field: field, pattern: PriceGlob(patternText), amount: amount, location: location(node))
    }

    /// A field a rule or an endpoint's key reads, refused where it could never be there.
    private func priceField(kind: String, name: String, node: Node, method: String?) -> PriceField? {
        guard let field = PriceField(kind: kind, name: name) else {
            let expected = switch kind {
            case "body": "keys (or array indexes) joined by dots, like model or input.size"
            case "header": "a header name"
            default: "a query parameter name"
            }
            error(node, "\(kind) must be \(expected), not \"\(name)\"")
            return nil
        }
        if case .header(let header) = field, Self.retryHeaders.contains(header) {
            error(node, "this price rule can never match: \(name) differs between the request answered 402 and its paid retry, so the price would change under the payment")
            return nil
        }
        if field.readsBody, let method, method == "GET" || method == "HEAD" {
            error(node, "this price rule can never match: the route is \(method) only, and \(method) requests carry no body")
            return nil
        }
        return field
    }

    /// Headers a paid retry adds or that only describe the framing of one request.
    private static let retryHeaders: Set<String> = [
        "payment-signature", "x-payment", "content-length", "transfer-encoding", "expect", "connection",
    ]

    /// A rule's price or `min` in the route's asset: `"$0.03"` (needs its decimals) or a whole
    /// number of atomic units.
    private func ruleAmount(_ node: Node, _ what: String, offer: Offer) -> BigUInt? {
        assetAmount(node, what, decimals: offer.decimals,
                    noDecimals: "\(what) in dollars needs the route's asset decimals: give atomic units (e.g. \"10000\") or decimals on the default price")
    }

    /// A positive amount: `"$1.00"` in an asset of `decimals` (nil: `noDecimals` is the error) or a
    /// whole number of atomic units.
    func assetAmount(_ node: Node, _ what: String, decimals: Int?, noDecimals: String) -> BigUInt? {
        guard let text = string(node, what) else { return nil }
        if text.hasPrefix("$") {
            guard let decimals else {
                error(node, noDecimals)
                return nil
            }
            do {
                let amount = try Money.atomicUnits(fromDollars: text, decimals: decimals)
                if amount > 0 { return amount }
            } catch {
                self.error(node, "bad \(what) \"\(text)\": \(error)")
                return nil
            }
        } else if let amount = Money.atomicUnits(fromInteger: text), amount > 0 {
            return amount
        }
        error(node, "\(what) must be a positive amount: \"$1.00\" or a whole number of atomic units, not \"\(text)\"")
        return nil
    }

    /// `{ endpoint: URL, key: [query.NAME | header.NAME | body.PATH], max: PRICE, min?, timeout?, cacheFor?, cacheEntries?, headers? }`.
    private func endpointPrice(_ m: [String: (key: Node, value: Node)], endpoint: Node, defaults: RouteDefaults, at routeNode: Node,
                               method: String?) -> (Offer, DynamicPrice)? {
        guard let url = string(endpoint, "price.endpoint") else { return nil }
        guard let parsed = parseBaseURL(url, allowPath: true), JSONPostClient.accepts(url: parsed) else {
            error(endpoint, "price.endpoint must be an http(s) URL without user info, query or fragment, like http://pricer:9000/price, not \"\(url)\"")
            return nil
        }
        guard let maxEntry = m["max"] else {
            error(endpoint, "a pricing endpoint needs max: the highest price it may answer (higher answers are refused)")
            return nil
        }
        guard let offer = offer(maxEntry.value, defaults: defaults, at: routeNode) else { return nil }
        var key: [PriceField] = []
        if let keyEntry = m["key"] {
            guard let items = keyEntry.value.sequence else {
                error(keyEntry.value, "price.key must be a list like [query.tier, header.X-Plan, body.model]")
                return nil
            }
            for item in items {
                guard let text = string(item, "price.key entry") else { continue }
                let parts = text.split(separator: ".", maxSplits: 1)
                guard parts.count == 2, ["query", "header", "body"].contains(String(parts[0])) else {
                    error(item, "a price.key entry is query.NAME, header.NAME or body.PATH, not \"\(text)\"")
                    continue
                }
                if let field = priceField(kind: String(parts[0]), name: String(parts[1]), node: item, method: method) {
                    if key.contains(field) { error(item, "\(field) is already in price.key") } else { key.append(field) }
                }
            }
        }
        var config = PricingEndpoint(url: parsed, key: key, max: offer.amount, decimals: offer.decimals)
        if let n = m["min"]?.value, let min = ruleAmount(n, "price.min", offer: offer) {
            if min > offer.amount { error(n, "price.min cannot exceed price.max") } else { config.min = min }
        }
        if let n = m["timeout"]?.value, let v = duration(n, "price.timeout") {
            if v > .seconds(30) { error(n, "price.timeout must be at most 30s: the client waits for it") } else { config.timeout = v }
        }
        if let n = m["cacheFor"]?.value, let v = duration(n, "price.cacheFor") {
            if v < .seconds(1) {
                error(n, "price.cacheFor must be at least 1s: the paid retry must find the price its 402 offered")
            } else {
                config.cacheFor = v
            }
        }
        if let n = m["cacheEntries"]?.value, let v = int(n, "price.cacheEntries", range: 1...1_000_000) { config.cacheEntries = v }
        if let n = m["headers"]?.value, let pairs = stringMap(n, "price.headers") {
            for (name, value) in pairs { config.headers[name] = value }
        }
        return (offer, .endpoint(config))
    }
}
