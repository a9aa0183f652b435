import BigInt
import Gateway
import GatewayCore
import Testing

@Suite("Deferred settlement configuration")
struct DeferredConfigTests {
    @Test("settlement: deferred with verify and riskBudget ($ or atomic units); after-headers; deferredSettlement defaults and values")
    func loads() throws {
        let config = try ConfigLoader.parse(yaml: ConfigProblems.head + """
              - { match: "GET /a", price: "$0.001", settlement: deferred, verify: local, riskBudget: { perPayer: "$1.00", total: "$100" } }
              - { match: "GET /b", price: "$0.001", settlement: deferred, riskBudget: { perPayer: "5000", total: "9000" } }
              - { match: "GET /c", price: "$0.001", settlement: after-headers }
            deferredSettlement:
              concurrency: 64
              lease: 45s
              margin: 20s
              retry: { initial: 500ms, max: 1m }
              poll: 250ms
              refresh: 2s
              failedPayerHold: 1h
            """, file: "g.yaml", environment: [:])
        let a = try #require(config.routes[0].deferral)
        #expect(config.routes[0].settlement == .deferred)
        #expect(a == Deferral(verify: .local, perPayer: 1_000_000, total: 100_000_000))
        #expect(config.routes[1].deferral == Deferral(verify: .facilitator, perPayer: 5000, total: 9000))
        #expect(config.routes[2].settlement == .afterHeaders && config.routes[2].deferral == nil)
        #expect(config.routes[0].paymentIdentifier == nil)
        let d = config.deferredSettlement
        #expect(d.concurrency == 64 && d.lease == .seconds(45) && d.margin == .seconds(20))
        #expect(d.retryInitial == .milliseconds(500) && d.retryMax == .seconds(60) && d.poll == .milliseconds(250))
        #expect(d.refresh == .seconds(2) && d.failedPayerHold == .seconds(3600))

        let defaults = try ConfigLoader.parse(yaml: ConfigProblems.head + "  - { match: \"GET /a\", price: \"$0.001\" }\n",
                                              file: "g.yaml", environment: [:])
        #expect(defaults.deferredSettlement == DeferredSettlementConfig())
        #expect(defaults.deferredSettlement.failedPayerHold == .seconds(86_400))
        let off = try ConfigLoader.parse(yaml: ConfigProblems.head + "  - { match: \"GET /a\", price: \"$0.001\" }\ndeferredSettlement: { failedPayerHold: \"off\" }\n",
                                         file: "g.yaml", environment: [:])
        #expect(off.deferredSettlement.failedPayerHold == nil)
    }

    @Test("deferred settlement mistakes are reported at their place", arguments: [
        ("  - { match: \"GET /a\", price: \"$0.01\", settlement: deferred }",
         "g.yaml:5:52: settlement: deferred needs riskBudget: { perPayer: \"$1.00\", total: \"$100.00\" }: how much may stay unsettled"),
        ("  - { match: \"GET /a\", price: \"$0.01\", settlement: later }",
         "g.yaml:5:52: settlement must be \"after-success\", \"after-headers\", \"before\" or \"deferred\", not \"later\""),
        ("  - { match: \"GET /a\", price: \"$0.01\", verify: local }", "g.yaml:5:40: verify applies to settlement: deferred only"),
        ("  - { match: \"GET /a\", price: \"$0.01\", riskBudget: { perPayer: \"$1\", total: \"$2\" } }",
         "g.yaml:5:40: riskBudget applies to settlement: deferred only"),
        ("  - { match: \"GET /a\", price: \"$0.01\", settlement: deferred, verify: maybe, riskBudget: { perPayer: \"$1\", total: \"$2\" } }",
         "g.yaml:5:70: verify must be \"local\" (signature, amount, payee, time window and replay checked here) or \"facilitator\" (and /verify), not \"maybe\""),
        ("  - { match: \"GET /a\", price: \"$0.01\", settlement: deferred, riskBudget: { perPayer: \"$1\" } }",
         "g.yaml:5:74: riskBudget needs both perPayer (one payer's unsettled payments) and total (all unsettled payments on the route)"),
        ("  - { match: \"GET /a\", price: \"$0.01\", settlement: deferred, riskBudget: { perPayer: \"$3\", total: \"$2\" } }",
         "g.yaml:5:86: riskBudget.perPayer cannot exceed riskBudget.total"),
        ("  - { match: \"GET /a\", price: \"$0.01\", settlement: deferred, riskBudget: { perPayer: \"$0.001\", total: \"$2\" } }",
         "g.yaml:5:86: riskBudget.perPayer is less than one payment on this route (10000 atomic units): no payment would ever be deferred"),
        ("  - { match: \"GET /a\", price: \"$0.01\", settlement: deferred, riskBudget: { perPayer: \"-1\", total: \"$2\" } }",
         "g.yaml:5:86: riskBudget.perPayer must be a positive amount: \"$1.00\" or a whole number of atomic units, not \"-1\""),
        ("  - { match: \"GET /a\", price: \"$0.01\", settlement: deferred, riskBudget: [1, 2] }",
         "g.yaml:5:74: riskBudget must be a mapping"),
        ("  - { match: \"GET /a\", price: \"$0.01\", settlement: deferred, paymentIdentifier: required, riskBudget: { perPayer: \"$1\", total: \"$2\" } }",
         "g.yaml:5:62: paymentIdentifier needs settlement: after-success (a streamed answer cannot be stored and replayed)"),
        ("  - { match: \"GET /a\", price: \"$0.01\", settlement: after-headers, paymentIdentifier: optional }",
         "g.yaml:5:67: paymentIdentifier needs settlement: after-success (a streamed answer cannot be stored and replayed)"),
        ("  - { match: \"GET /a\", free: true, settlement: deferred, riskBudget: { perPayer: \"$1\", total: \"$2\" } }",
         "g.yaml:5:48: a free route cannot have settlement: deferred (nothing is paid on it)"),
        ("  - { match: \"GET /a\", price: \"$0.01\" }\ndeferredSettlement: { lease: 5s }",
         "g.yaml:6:30: deferredSettlement.lease must outlast a settle call: at least facilitator.timeout + 5s (15s)"),
        ("  - { match: \"GET /a\", price: \"$0.01\" }\ndeferredSettlement: { margin: 2s }",
         "g.yaml:6:31: deferredSettlement.margin must be at least 6s: facilitators refuse an authorization that expires within 6 seconds"),
        ("  - { match: \"GET /a\", price: \"$0.01\" }\ndeferredSettlement: { concurrency: 0 }",
         "g.yaml:6:36: deferredSettlement.concurrency must be a whole number between 1 and 4096, not \"0\""),
        ("  - { match: \"GET /a\", price: \"$0.01\" }\ndeferredSettlement: { retry: { initial: 2s, max: 1s } }",
         "g.yaml:6:50: deferredSettlement.retry.max cannot be less than retry.initial"),
        ("  - { match: \"GET /a\", price: \"$0.01\" }\ndeferredSettlement: { workers: 3 }",
         "g.yaml:6:23: unknown key \"workers\" in deferredSettlement"),
    ])
    func mistakes(_ route: String, _ expected: String) {
        let text = ConfigProblems.of(ConfigProblems.head + route + "\n")
        #expect(text.split(separator: "\n").contains { $0.hasPrefix(expected) }, "\(text)")
    }

    @Test("a route with settlement: deferred cannot issue passes")
    func noPasses() {
        let text = ConfigProblems.of(ConfigProblems.head + """
              - { match: "GET /a", price: "$0.01", settlement: deferred, riskBudget: { perPayer: "$1", total: "$2" }, pass: { for: 1h } }
            passes: { keys: [{ id: k1, secret: "0123456789abcdef0123456789abcdef" }] }

            """)
        #expect(text.contains("a route with settlement: deferred cannot issue passes: a pass would outlive a payment not settled yet"), "\(text)")
    }
}
