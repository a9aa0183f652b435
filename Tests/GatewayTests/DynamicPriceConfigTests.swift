import BigInt
import Gateway
import GatewayCore
import Testing
import X402

/// `price: { rules, default }` and `price: { endpoint, … }` in gateway.yaml: what loads, and the
/// errors with their positions (the first route is on line 5).
@Suite("gateway.yaml: dynamic prices")
struct DynamicPriceConfigTests {
    static func load(_ routes: String) throws -> GatewayConfig {
        try ConfigLoader.parse(yaml: ConfigProblems.head + routes, file: "g.yaml", environment: ["PRICER_KEY": "k1"])
    }

    @Test("rules on a body field, the query and a header, with a fallback; the route's offer is the fallback")
    func rules() throws {
        let c = try Self.load("""
              - match: "POST /v1/chat"
                price:
                  rules:
                    - { when: { body: model, is: "gpt-4*" }, price: "$0.03" }
                    - { when: { query: tier, is: premium }, price: "$0.02" }
                    - { when: { header: X-Size, is: "large" }, price: "10000" }
                  default: "$0.005"
            """)
        let route = c.routes[0]
        guard case .priced(let offers) = route.access, case .rules(let rules, let fallback)? = route.dynamicPrice else {
            Issue.record("not a rule-priced route")
            return
        }
        #expect(offers.map(\.amount) == [5_000] && fallback == 5_000)
        #expect(rules.map(\.field) == [.body(["model"]), .query("tier"), .header("x-size")])
        #expect(rules.map(\.amount) == [30_000, 20_000, 10_000])
        #expect(rules.map(\.pattern.description) == ["gpt-4*", "premium", "large"])
        #expect(rules[0].location?.line == 8)
    }

    @Test("an endpoint with its key, bounds, timeout, cache and headers; its offer is the maximum")
    func endpoint() throws {
        let c = try Self.load("""
              - match: "POST /v1/chat"
                price:
                  endpoint: "http://127.0.0.1:9000/price"
                  key: [query.tier, header.X-Plan, body.input.model]
                  min: "$0.001"
                  max: "$0.50"
                  timeout: 250ms
                  cacheFor: 30s
                  cacheEntries: 500
                  headers: { Authorization: "Bearer ${PRICER_KEY}" }
            """)
        guard case .endpoint(let e)? = c.routes[0].dynamicPrice, case .priced(let offers) = c.routes[0].access else {
            Issue.record("not an endpoint-priced route")
            return
        }
        #expect(e.url == "http://127.0.0.1:9000/price")
        #expect(e.key == [.query("tier"), .header("x-plan"), .body(["input", "model"])])
        #expect(e.min == 1_000 && e.max == 500_000 && offers.map(\.amount) == [500_000])
        #expect(e.timeout == .milliseconds(250) && e.cacheFor == .seconds(30) && e.cacheEntries == 500)
        #expect(e.headers == ["Authorization": "Bearer k1"] && e.decimals == 6)
    }

    @Test("a price rule that can never match, and other mistakes, are errors at their position",
          arguments: [
              // After a catch-all on the same field.
              ("""
                - match: "POST /chat"
                  price:
                    rules:
                      - { when: { query: tier, is: "*" }, price: "$0.02" }
                      - { when: { query: tier, is: premium }, price: "$0.03" }
                    default: "$0.01"
              """, "g.yaml:9:11: this price rule can never match: rule 1 (8:11) tests query.tier with \"*\""),
              // Covered by an earlier, wider pattern.
              ("""
                - match: "POST /chat"
                  price:
                    rules:
                      - { when: { body: model, is: "gpt-*" }, price: "$0.02" }
                      - { when: { body: model, is: "gpt-4o" }, price: "$0.03" }
                    default: "$0.01"
              """, "g.yaml:9:11: this price rule can never match: rule 1 (8:11) tests body.model with \"gpt-*\""),
              // A body field on a GET route.
              ("""
                - match: "GET /report"
                  price:
                    rules:
                      - { when: { body: size, is: "large" }, price: "$0.02" }
                    default: "$0.01"
              """, "g.yaml:8:27: this price rule can never match: the route is GET only, and GET requests carry no body"),
              // The payment header: absent on the 402's request, present on the paid retry.
              ("""
                - match: "GET /report"
                  price:
                    rules:
                      - { when: { header: PAYMENT-SIGNATURE, is: "*" }, price: "$0.02" }
                    default: "$0.01"
              """, "g.yaml:8:29: this price rule can never match: PAYMENT-SIGNATURE differs between the request answered 402"),
              ("""
                - match: "GET /report"
                  price:
                    rules:
                      - { when: { query: tier, is: premium }, price: "$0.02" }
              """, "g.yaml:7:7: price.rules needs price.default"),
              ("""
                - match: "GET /report"
                  price:
                    rules:
                      - { when: { query: tier, header: X-Tier, is: premium }, price: "$0.02" }
                    default: "$0.01"
              """, "g.yaml:8:19: a price rule's when names exactly one of query, header or body"),
              ("""
                - match: "GET /report"
                  price:
                    rules:
                      - { when: { query: tier, is: premium }, price: "two dollars" }
                    default: "$0.01"
              """, "g.yaml:8:56: price rule's price must be a positive amount"),
              ("""
                - match: "GET /report"
                  price: { endpoint: "http://127.0.0.1:9000/price", key: [query.tier] }
              """, "g.yaml:6:24: a pricing endpoint needs max"),
              ("""
                - match: "GET /report"
                  price: { endpoint: "http://127.0.0.1:9000/price", max: "$1", default: "$0.01" }
              """, "g.yaml:6:66: an endpoint price has no default"),
              ("""
                - match: "GET /report"
                  price: { endpoint: "ftp://pricer/price", max: "$1" }
              """, "g.yaml:6:24: price.endpoint must be an http(s) URL"),
              ("""
                - match: "GET /report"
                  price: { endpoint: "http://127.0.0.1:9000/price", max: "$1", key: [cookie.session] }
              """, "g.yaml:6:72: a price.key entry is query.NAME, header.NAME or body.PATH"),
              ("""
                - match: "GET /report"
                  price: { endpoint: "http://127.0.0.1:9000/price", max: "$1", min: "$2" }
              """, "g.yaml:6:71: price.min cannot exceed price.max"),
              ("""
                - match: "GET /report"
                  price: { rules: [{ when: { query: a, is: b }, price: "$0.02" }], default: "$0.01", timeout: 1s }
              """, "g.yaml:6:88: price.timeout belongs to a pricing endpoint"),
              ("""
                - match: "GET /report"
                  accepts: [{ price: { rules: [{ when: { query: a, is: b }, price: "$0.02" }], default: "$0.01" } }]
              """, "g.yaml:6:24: a dynamic price (rules or endpoint) goes on a route's price, not in an accepts entry"),
              ("""
                - match: "POST /chat"
                  settlement: deferred
                  riskBudget: { perPayer: "$0.02", total: "$1" }
                  price:
                    rules:
                      - { when: { body: model, is: "gpt-4*" }, price: "$0.03" }
                    default: "$0.01"
              """, "g.yaml:7:17: riskBudget.perPayer is less than the highest price this route can ask (30000 atomic units)"),
              ("""
                - match: "POST /chat"
                  upto: "$0.05"
                  price: { rules: [{ when: { query: a, is: b }, price: "$0.02" }], default: "$0.01" }
              """, "give either \"upto\""),
          ])
    func problems(routes: String, expected: String) {
        let found = ConfigProblems.of(ConfigProblems.head + routes)
        #expect(found.contains(expected), "\(found)")
    }
}
