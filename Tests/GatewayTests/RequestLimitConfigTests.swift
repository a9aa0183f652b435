import Gateway
import GatewayCore
import Testing

/// `rateLimit`, `freePerClient` and `clientLimits` as `check` reads them: values, defaults, and
/// every mistake reported at its line and column.
@Suite("Rate limit and free allowance configuration")
struct RequestLimitConfigTests {
    @Test("rateLimit, freePerClient and clientLimits are read with their defaults")
    func values() throws {
        let yaml = ConfigProblems.head + """
              - { match: "GET /paid", price: "$0.01", rateLimit: { requests: 10, per: 1s, burst: 20 }, freePerClient: { requests: 3, per: 1d } }
              - { match: "GET /free", free: true, rateLimit: { requests: 5, per: 100ms } }
              - { match: "GET /other", price: "$0.01" }
            clientLimits: { ipv4Prefix: 24, ipv6Prefix: 48, maxKeys: 5000, sync: 250ms }
            """
        let config = try ConfigLoader.parse(yaml: yaml, file: "g.yaml", environment: [:])
        #expect(config.routes[0].rateLimit == RateLimit(requests: 10, per: .seconds(1), burst: 20))
        #expect(config.routes[0].freePerClient == FreeAllowance(requests: 3, per: 86_400))
        #expect(config.routes[1].rateLimit == RateLimit(requests: 5, per: .milliseconds(100), burst: 5))
        #expect(config.routes[1].rateLimit?.interval == 20_000_000)
        #expect(config.routes[2].rateLimit == nil && config.routes[2].freePerClient == nil)
        #expect(config.clientLimits.ipv4Prefix == 24 && config.clientLimits.ipv6Prefix == 48)
        #expect(config.clientLimits.maxKeys == 5000 && config.clientLimits.sync == .milliseconds(250))
        let defaults = try ConfigLoader.parse(yaml: ConfigProblems.head + "  - { match: \"/a\", free: true }\n", file: "g.yaml", environment: [:])
        #expect(defaults.clientLimits == ClientLimitsConfig())
        #expect(defaults.clientLimits.ipv4Prefix == 32 && defaults.clientLimits.ipv6Prefix == 64)
        let windows = try ConfigLoader.parse(yaml: ConfigProblems.head + """
              - { match: "/a", price: "$0.01", freePerClient: { requests: 1, per: 12h }, rateLimit: { requests: 1, per: 3600 } }
            """, file: "g.yaml", environment: [:])
        #expect(windows.routes[0].freePerClient?.per == 43_200)
        #expect(windows.routes[0].rateLimit?.per == .seconds(3600))
    }

    @Test("mistakes in rate limits and allowances are check errors with line and column", arguments: [
        ("  - { match: \"/a\", price: \"$0.01\", rateLimt: { requests: 1, per: 1s } }",
         "g.yaml:5:36: unknown key \"rateLimt\" in route (did you mean \"rateLimit\"?)"),
        ("  - { match: \"/a\", price: \"$0.01\", rateLimit: { request: 1, per: 1s } }",
         "g.yaml:5:49: unknown key \"request\" in rateLimit (did you mean \"requests\"?)"),
        ("  - { match: \"/a\", price: \"$0.01\", rateLimit: { requests: 1, per: 0 } }",
         "g.yaml:5:67: rateLimit.per must be a positive duration like \"1s\", \"100ms\", \"1m\" or \"1d\", at most 366d, not \"0\""),
        ("  - { match: \"/a\", price: \"$0.01\", rateLimit: { requests: 1, per: soon } }",
         "g.yaml:5:67: rateLimit.per must be a positive duration"),
        ("  - { match: \"/a\", price: \"$0.01\", rateLimit: { requests: 0, per: 1s } }",
         "g.yaml:5:59: rateLimit.requests must be a whole number between 1 and 1000000, not \"0\""),
        ("  - { match: \"/a\", price: \"$0.01\", rateLimit: { requests: 10, per: 1s, burst: -1 } }",
         "g.yaml:5:79: rateLimit.burst must be a whole number between 1 and 1000000, not \"-1\""),
        ("  - { match: \"/a\", price: \"$0.01\", rateLimit: { per: 1s } }",
         "g.yaml:5:47: rateLimit needs \"requests\" and \"per\""),
        ("  - { match: \"/a\", price: \"$0.01\", rateLimit: 10 }",
         "g.yaml:5:47: rateLimit must be a mapping"),
        ("  - { match: \"/a\", price: \"$0.01\", rateLimit: { requests: 1, per: 1d, burst: 400 } }",
         "g.yaml:5:47: rateLimit takes more than 366 days to refill its burst"),
        ("  - { match: \"/a\", price: \"$0.01\", freePerClient: { requests: 3, per: 0 } }",
         "g.yaml:5:71: freePerClient.per must be a positive duration like \"1d\", \"12h\" or \"30s\", at most 366d, not \"0\""),
        ("  - { match: \"/a\", price: \"$0.01\", freePerClient: { requests: 3, per: 500ms } }",
         "g.yaml:5:71: freePerClient.per must be a positive duration"),
        ("  - { match: \"/a\", price: \"$0.01\", freePerClient: { requests: 3, per: 400d } }",
         "g.yaml:5:71: freePerClient.per must be a positive duration"),
        ("  - { match: \"/a\", price: \"$0.01\", freePerClient: { requests: 3, window: 1d } }",
         "g.yaml:5:66: unknown key \"window\" in freePerClient"),
        ("  - { match: \"/a\", free: true, freePerClient: { requests: 3, per: 1d } }",
         "g.yaml:5:32: a free route cannot have freePerClient"),
        ("  - { match: \"/a\", free: true }\nclientLimits: { ipv6Prefix: 200 }",
         "g.yaml:6:29: clientLimits.ipv6Prefix must be a whole number between 16 and 128, not \"200\""),
        ("  - { match: \"/a\", free: true }\nclientLimits: { ipv4Prefix: 33 }",
         "g.yaml:6:29: clientLimits.ipv4Prefix must be a whole number between 8 and 32"),
        ("  - { match: \"/a\", free: true }\nclientLimits: { sync: 1ms }",
         "g.yaml:6:23: clientLimits.sync must be between 50ms and 1m"),
        ("  - { match: \"/a\", free: true }\nclientLimits: { maxKey: 10 }",
         "g.yaml:6:17: unknown key \"maxKey\" in clientLimits (did you mean \"maxKeys\"?)"),
        ("  - { match: \"/a\", free: true }\nclientLimit: { maxKeys: 10 }",
         "g.yaml:6:1: unknown key \"clientLimit\" in the configuration (did you mean \"clientLimits\"?)"),
    ])
    func mistakes(route: String, expected: String) {
        let problems = ConfigProblems.of(ConfigProblems.head + route + "\n")
        #expect(problems.contains(expected), "\(problems)")
    }
}
