import BigInt
import GatewayCore
import Testing
import X402

/// Price rules as values: the glob, what a request's fields read as, first match wins, and which
/// rules can never match.
@Suite("dynamic prices: rules")
struct PriceRulesTests {
    @Test("a glob matches the whole value: * any run (none included), ? one character, case-sensitive",
          arguments: [
              ("gpt-4*", "gpt-4", true), ("gpt-4*", "gpt-4o-mini", true), ("gpt-4*", "gpt-3.5", false),
              ("gpt-4*", "GPT-4o", false), ("*", "", true), ("?", "", false), ("?", "é", true),
              ("a?c", "abc", true), ("a?c", "ac", false), ("*mini", "gpt-4o-mini", true), ("*mini", "mini-x", false),
              ("large", "large", true), ("large", "larger", false), ("a*b*c", "aXbYbZc", true), ("a*b*c", "acb", false),
          ])
    func glob(pattern: String, value: String, matches: Bool) {
        #expect(PriceGlob(pattern).matches(value) == matches)
    }

    @Test("one glob covers another exactly when every value the second matches, the first matches too",
          arguments: [
              ("*", "gpt-4*", true), ("gpt-4*", "gpt-4o", true), ("gpt-4*", "gpt-*", false), ("gpt-*", "gpt-4*", true),
              ("a?c", "abc", true), ("a*c", "a?c", true), ("a?c", "a*c", false), ("*", "?*", true), ("?*", "*", false),
              ("*a*", "*ab*", true), ("*ab*", "*a*", false), ("x", "x", true), ("x", "y", false), ("??", "?*", false),
          ])
    func covers(outer: String, inner: String, covers: Bool) {
        #expect(PriceGlob(outer).covers(PriceGlob(inner)) == covers)
    }

    static func request(query: String? = nil, headers: [String: String] = [:], body: String? = nil) -> PriceRequest {
        PriceRequest(query: query, header: { headers[$0] }, body: body.map { Array($0.utf8) })
    }

    static let rules = [
        PriceRule(field: .body(["model"]), pattern: PriceGlob("gpt-4*"), amount: 30_000),
        PriceRule(field: .query("tier"), pattern: PriceGlob("premium"), amount: 20_000),
        PriceRule(field: .header("x-size"), pattern: PriceGlob("large"), amount: 10_000),
        PriceRule(field: .body(["options", "n"]), pattern: PriceGlob("4"), amount: 40_000),
    ]

    @Test("the first rule whose field matches gives the price; none gives the fallback")
    func firstMatchWins() {
        func price(_ r: PriceRequest) -> BigUInt { DynamicPrice.price(rules: Self.rules, fallback: 5_000, r) }
        #expect(price(Self.request()) == 5_000)
        #expect(price(Self.request(body: #"{"model":"gpt-4o"}"#)) == 30_000)
        // Several match: the first listed wins.
        #expect(price(Self.request(query: "tier=premium", headers: ["x-size": "large"], body: #"{"model":"gpt-4o"}"#)) == 30_000)
        #expect(price(Self.request(query: "tier=premium", headers: ["x-size": "large"], body: #"{"model":"gpt-3.5"}"#)) == 20_000)
        #expect(price(Self.request(query: "a=1&tier=basic", headers: ["x-size": "large"])) == 10_000)
        // A number in the body reads as written.
        #expect(price(Self.request(body: #"{"options":{"n":4}}"#)) == 40_000)
        #expect(price(Self.request(body: #"{"options":{"n":4.0}}"#)) == 5_000)
    }

    @Test("query values are form-decoded; the first occurrence counts; a name alone is the empty value")
    func queryDecoding() {
        let r = Self.request(query: "tier=pre%6Dium&tier=basic&flag&q=a+b%2Fc&bad=%zz")
        #expect(r.value(of: .query("tier")) == "premium")
        #expect(r.value(of: .query("flag")) == "")
        #expect(r.value(of: .query("q")) == "a b/c")
        #expect(r.value(of: .query("bad")) == "%zz")
        #expect(r.value(of: .query("missing")) == nil)
    }

    @Test("a body that is not JSON, lacks the field, or has null, an object or an array there: the rule is skipped",
          arguments: ["not json", "", #"{"other":1}"#, #"{"model":null}"#, #"{"model":{"id":"gpt-4"}}"#, #"{"model":["gpt-4"]}"#, "[1,2]"])
    func bodyFallsThrough(body: String) {
        #expect(DynamicPrice.price(rules: Self.rules, fallback: 5_000, Self.request(body: body)) == 5_000)
    }

    @Test("booleans and array indexes in a body path")
    func bodyPaths() {
        let r = Self.request(body: #"{"stream":true,"messages":[{"role":"system"},{"role":"user"}]}"#)
        #expect(r.value(of: .body(["stream"])) == "true")
        #expect(r.value(of: .body(["messages", "1", "role"])) == "user")
        #expect(r.value(of: .body(["messages", "2", "role"])) == nil)
    }

    @Test("a rule after one on the same field that matches every value it matches can never match")
    func unreachable() {
        let rules = [
            PriceRule(field: .body(["model"]), pattern: PriceGlob("gpt-*"), amount: 3),
            PriceRule(field: .body(["model"]), pattern: PriceGlob("gpt-4*"), amount: 4),  // covered by rule 1
            PriceRule(field: .query("model"), pattern: PriceGlob("gpt-4*"), amount: 5),  // another field: fine
            PriceRule(field: .query("tier"), pattern: PriceGlob("*"), amount: 6),
            PriceRule(field: .query("tier"), pattern: PriceGlob("premium"), amount: 7),  // after the catch-all
            PriceRule(field: .query("model"), pattern: PriceGlob("gpt-4*"), amount: 8),  // the same as rule 3
            PriceRule(field: .body(["model"]), pattern: PriceGlob("claude-*"), amount: 9),  // fine
        ]
        let found = DynamicPrice.unreachable(rules)
        #expect(found.map(\.index) == [1, 4, 5])
        #expect(found[0].reason.contains("rule 1 tests body.model with \"gpt-*\""))
        #expect(found[2].reason.contains("the same pattern"))
    }

    @Test("the route at another price: same asset, network, payee; its own challenge")
    func variant() throws {
        let route = CompiledRoute(config: RouteConfig(
            id: "r", pattern: try RoutePattern("POST /chat"), upstream: "api",
            access: .priced([Offer(network: Networks.resolve("eip155:84532")!, amount: 5_000, asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
                                   payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", maxTimeoutSeconds: 60, extra: [:], decimals: 6,
                                   symbol: "USDC")]),
            dynamicPrice: .rules(Self.rules, fallback: 5_000)))
        let priced = try #require(route.priced(at: 30_000))
        #expect(priced.offers.map(\.offer.amount) == [30_000])
        #expect(priced.offers[0].offer.asset == route.offers[0].offer.asset)
        #expect(priced.challenge?.offers.map(\.amount) == [30_000])
        #expect(route.challenge?.offers.map(\.amount) == [5_000])
        #expect(DynamicPrice.rules(Self.rules, fallback: 5_000).highest == 40_000)
        #expect(DynamicPrice.rules(Self.rules, fallback: 5_000).readsBody)
    }
}
