import BigInt
import FixtureEditing
import Gateway
import GatewayCore
import Testing
import X402

/// `upto:` and `assetTransferMethod:` in gateway.yaml: what loads, and the errors with their positions.
@Suite("gateway.yaml: upto and Permit2")
struct UptoConfigTests {
    static func load(_ routes: String, network: String = "eip155:84532") throws -> GatewayConfig {
        let yaml = ConfigProblems.head.replacingOccurrences(of: "eip155:84532", with: network) + routes
        return try ConfigLoader.parse(yaml: yaml, file: "g.yaml", environment: [:])
    }

    static func offers(_ route: RouteConfig) -> [Offer] {
        if case .priced(let offers) = route.access { return offers }
        return []
    }

    @Test("upto: a maximum in dollars or atomic units, paid through Permit2; rules per KiB or per unit; hold-back")
    func loads() throws {
        let c = try Self.load("""
              - match: "POST /chat"
                upto: "$0.05"
              - match: "GET /files/*"
                upto: { max: "$0.10", perKiB: "$0.001", holdBack: 16KiB }
              - match: "POST /llm"
                upto: { max: { amount: "50000", asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e" }, perUnit: { field: usage.total_tokens, price: "$0.0000002" } }
              - match: "GET /sse"
                upto: { max: "$0.01", holdBack: 0 }
            """)
        let chat = Self.offers(c.routes[0])[0]
        #expect(chat.scheme == "upto" && chat.amount == 50_000 && chat.transferMethod == .permit2)
        #expect(chat.extra["assetTransferMethod"] == .string("permit2") && chat.extra["name"] == .string("USDC"))
        #expect(chat.extra["facilitatorAddress"] == nil)  // learnt from the facilitator at start
        #expect(c.routes[0].upto == UptoMetering())
        #expect(c.routes[1].upto == UptoMetering(rule: .perKiB(UnitPrice(numerator: 1000, scale: 0)), holdBack: 16 * 1024))
        #expect(Self.offers(c.routes[1])[0].amount == 100_000)
        #expect(c.routes[2].upto?.rule == .perUnit(field: ["usage", "total_tokens"], price: UnitPrice(numerator: 2, scale: 1)))
        #expect(c.routes[3].upto?.holdBack == 0)
        #expect(c.routes.allSatisfy { $0.settlement == .afterSuccess })
    }

    @Test("exact through Permit2: on request for any asset, and by itself for a default asset that has no EIP-3009")
    func permit2Exact() throws {
        let c = try Self.load("""
              - match: "GET /a"
                price: "$0.01"
                assetTransferMethod: permit2
              - match: "GET /b"
                price: { amount: "2500", asset: "0x7e57000000000000000000000000000000000002" }
                assetTransferMethod: permit2
              - match: "GET /c"
                accepts:
                  - { price: "$0.01" }
                  - { price: "$0.01", assetTransferMethod: permit2 }
            """)
        #expect(Self.offers(c.routes[0])[0].transferMethod == .permit2)
        let any = Self.offers(c.routes[1])[0]
        #expect(any.transferMethod == .permit2 && any.extra == ["assetTransferMethod": .string("permit2")])
        #expect(Self.offers(c.routes[2]).map(\.transferMethod) == [.eip3009, .permit2])
        // MegaETH's default asset (MegaUSD) has no EIP-3009: the loader refused it before Permit2.
        let mega = try Self.load("""
              - match: "GET /m"
                price: "$0.01"
            """, network: "eip155:4326")
        let offer = Self.offers(mega.routes[0])[0]
        #expect(offer.transferMethod == .permit2 && offer.amount == 10_000_000_000_000_000)
    }

    @Test("mistakes are reported at their line and column", arguments: [
        ("""
          - match: "GET /a"
            upto: "$0.01"
            settlement: before
        """, "g.yaml:7:17: an upto route settles once the upstream has answered in full"),
        ("""
          - match: "GET /a"
            upto: "$0.01"
            settlement: after-headers
        """, "g.yaml:7:17: an upto route settles once the upstream has answered in full"),
        ("""
          - match: "GET /a"
            upto: "$0.01"
            settlement: deferred
            riskBudget: { perPayer: "$0.10", total: "$1.00" }
        """, "g.yaml:7:17: an upto route settles once the upstream has answered in full"),
        ("""
          - match: "GET /a"
            upto: "$0.01"
            price: "$0.01"
        """, "g.yaml:7:5: give either \"upto\""),
        ("""
          - match: "GET /a"
            upto: { perKiB: "$0.001" }
        """, "g.yaml:6:11: upto needs \"max\""),
        ("""
          - match: "GET /a"
            upto: { max: "$0.01", perKiB: "$0.001", perUnit: { field: n, price: "1" } }
        """, "g.yaml:6:45: upto takes one rule"),
        ("""
          - match: "GET /a"
            upto: { max: "$0.01", perKiB: "cheap" }
        """, "g.yaml:6:35: upto.perKiB must be a price like"),
        ("""
          - match: "GET /a"
            upto: { max: "$0.01", perUnit: { field: "usage..tokens", price: "1" } }
        """, "g.yaml:6:45: upto.perUnit.field must be keys"),
        ("""
          - match: "GET /a"
            upto: { max: "$0.01", perUnit: { field: n } }
        """, "g.yaml:6:36: upto.perUnit needs \"field\""),
        ("""
          - match: "GET /a"
            upto: { max: { amount: "10", asset: "0x7e57000000000000000000000000000000000002" }, perKiB: "$0.001" }
        """, "upto.perKiB \"$0.001\" is in dollars but the asset's decimals are unknown"),
        ("""
          - match: "GET /a"
            upto: "$0.01"
            assetTransferMethod: eip3009
        """, "g.yaml:6:11: upto is paid through Permit2 only"),
        ("""
          - match: "GET /a"
            price: "$0.01"
            assetTransferMethod: permit3
        """, "g.yaml:7:26: assetTransferMethod must be \"eip3009\" or \"permit2\""),
        ("""
          - match: "GET /a"
            price: { amount: "10", asset: "0x7e57000000000000000000000000000000000002" }
        """, "or assetTransferMethod: permit2 (any ERC-20)"),
        ("""
          - match: "GET /a"
            upto: { max: "$0.01", holdBack: lots }
        """, "g.yaml:6:37: upto.holdBack must be a size"),
        ("""
          - match: "GET /a"
            upto: { max: "$0.01", holdBack: 1KiB }
            paymentIdentifier: optional
        """, "g.yaml:7:5: paymentIdentifier needs an answer held back whole, not upto.holdBack"),
    ])
    func problems(routes: String, expected: String) {
        let text = ConfigProblems.of(ConfigProblems.head + routes)
        #expect(text.contains(expected), "\(text)")
    }

    @Test("a streamed upto route does not inherit the top-level paymentIdentifier; a held-back one does")
    func identifierDefault() throws {
        let c = try ConfigLoader.parse(yaml: "paymentIdentifier: optional\n" + ConfigProblems.head + """
              - match: "GET /streamed"
                upto: { max: "$0.01", holdBack: 1KiB }
              - match: "GET /held"
                upto: "$0.01"
            """, file: "g.yaml", environment: [:])
        #expect(c.routes[0].paymentIdentifier == nil && c.routes[1].paymentIdentifier == .optional)
    }

    @Test("a network whose default asset needs Permit2 cannot be forced to EIP-3009")
    func permit2OnlyAsset() {
        let yaml = ConfigProblems.head.replacingOccurrences(of: "eip155:84532", with: "eip155:4326") + """
              - match: "GET /a"
                price: "$0.01"
                assetTransferMethod: eip3009
            """
        #expect(ConfigProblems.of(yaml).contains("has no EIP-3009 transferWithAuthorization: it is paid through Permit2"))
    }
}
