import Gateway
import GatewayCore
import Testing

@Suite("Route passes: configuration and check")
struct PassConfigTests {
    static let secret = "0123456789abcdef0123456789abcdef-k1"
    static let env = ["K1": secret, "K2": "fedcba9876543210fedcba9876543210-k2", "SHORT": "only-20-bytes-secret"]
    /// Three lines of keys, then ``ConfigProblems/head``: the first route is on line 8.
    static let keys = """
        passes:
          keys:
            - { id: k1, secret: "${K1}" }

        """
    static let base = keys + ConfigProblems.head

    static func problems(_ yaml: String, env: [String: String] = PassConfigTests.env) -> String {
        ConfigProblems.with(yaml, environment: env)
    }

    @Test("valid passes load: keys in order, the first signing; for, scope (path by default), group per route")
    func loads() throws {
        let yaml = """
            passes:
              keys:
                - { id: k2, secret: "${K2}" }
                - { id: k1, secret: "${K1}" }

            """ + ConfigProblems.head + """
              - { match: "GET /articles/:id", price: $0.01, pass: { for: 24h } }
              - { match: "/news/a/*", price: $0.01, pass: { for: 7d, scope: route, group: news } }
              - { match: "/news/b/*", price: $0.02, pass: { for: 90, scope: route, group: news } }
              - { match: "/paid", price: $0.01 }
              - { match: "/free", free: true }

            """
        let config = try ConfigLoader.parse(yaml: yaml, file: "g.yaml", environment: Self.env)
        #expect(config.passes?.keys.map(\.id) == ["k2", "k1"])
        #expect(config.passes?.keys.last?.secret == Array(Self.secret.utf8))
        #expect(config.routes.map(\.pass) == [
            RoutePass(seconds: 86_400, scope: .path), RoutePass(seconds: 7 * 86_400, scope: .route, group: "news"),
            RoutePass(seconds: 90, scope: .route, group: "news"), nil, nil,
        ])
        #expect(PassKeyring(config.passes!)?.signingKeyID == "k2")
    }

    @Test("route mistakes are reported at their place", arguments: [
        ("  - match: /a\n    free: true\n    pass: { for: 1h }\n",
         "g.yaml:10:5: a free route cannot have a pass (nothing is paid on it; a pass sent to it is ignored)"),
        ("  - match: /a\n    price: $0.01\n    pass: { for: 10ms }\n",
         "g.yaml:10:18: pass.for must be a whole duration from 1s to 366d, like \"90s\", \"30m\", \"24h\" or \"7d\", not \"10ms\""),
        ("  - match: /a\n    price: $0.01\n    pass: { for: 0s }\n",
         "g.yaml:10:18: pass.for must be a whole duration from 1s to 366d, like \"90s\", \"30m\", \"24h\" or \"7d\", not \"0s\""),
        ("  - match: /a\n    price: $0.01\n    pass: { for: 367d }\n",
         "g.yaml:10:18: pass.for must be a whole duration from 1s to 366d, like \"90s\", \"30m\", \"24h\" or \"7d\", not \"367d\""),
        ("  - match: /a\n    price: $0.01\n    pass: { for: a day }\n",
         "g.yaml:10:18: pass.for must be a whole duration from 1s to 366d, like \"90s\", \"30m\", \"24h\" or \"7d\", not \"a day\""),
        ("  - match: /a\n    price: $0.01\n    pass: { scope: route }\n",
         "g.yaml:10:11: pass needs \"for\": how long a pass stays valid after the payment, e.g. for: 24h"),
        ("  - match: /a\n    price: $0.01\n    pass: { for: 1h, scope: site }\n",
         "g.yaml:10:29: pass.scope must be \"path\" (the path paid for) or \"route\" (every request the route matches), not \"site\""),
        ("  - match: /a\n    price: $0.01\n    pass: { for: 1h, group: \"a b\" }\n",
         "g.yaml:10:29: pass.group must be 1 to 64 letters, digits, '-', '_' or '.', not \"a b\""),
        ("  - match: /a\n    price: $0.01\n    pass: { for: 1h, uses: 5 }\n",
         "g.yaml:10:22: pass.uses (passes counted by use) needs durable pass state, which this gateway does not have yet: only time-bound passes (for:) are supported"),
        ("  - match: /a\n    price: $0.01\n    pass: { for: 1h, sope: route }\n",
         "g.yaml:10:22: unknown key \"sope\" in pass (did you mean \"scope\"?)"),
        ("  - match: /a\n    price: $0.01\n    cache: upstream\n    pass: { for: 1h }\n",
         "g.yaml:11:5: a route with cache: upstream cannot issue passes: a shared cache would hand the pass cookie to everyone"),
    ])
    func routeMistakes(route: String, expected: String) {
        #expect(Self.problems(Self.base + route) == expected)
    }

    @Test("a pass without passes keys is refused at the route's pass")
    func noKeys() {
        #expect(Self.problems(ConfigProblems.head + "  - match: /a\n    price: $0.01\n    pass: { for: 1h }\n")
            == "g.yaml:7:5: pass needs the top-level passes: { keys: [{ id, secret: \"${PASS_KEY}\" }] } that passes are signed with")
    }

    @Test("key mistakes are reported at their place, and a secret is never shown", arguments: [
        ("    - { id: k1, secret: \"${SHORT}\" }\n",
         "g.yaml:3:25: passes.keys[0].secret is 20 bytes: use at least 32 random bytes, e.g. $(openssl rand -base64 32) (the value is not shown)"),
        ("    - { id: k1, secret: \"${MISSING}\" }\n", "g.yaml:3:25: environment variable MISSING is not set"),
        ("    - { id: k1, secret: \"0123456789abcdef0123456789abcdef-literal\" }\n",
         "g.yaml:3:25: passes.keys[0].secret must come from the environment, like \"${PASS_KEY_1}\": a secret written in the file ends up in backups and version control (the value is not shown)"),
        ("    - { id: \"k 1\", secret: \"${K1}\" }\n", "g.yaml:3:13: passes.keys[0].id must be 1 to 16 letters, digits, '-' or '_', not \"k 1\""),
        ("    - { id: k1, secret: \"${K1}\" }\n    - { id: k1, secret: \"${K2}\" }\n",
         "g.yaml:4:13: passes.keys[1].id \"k1\" is used twice: each key needs its own id"),
        ("    - { id: k1 }\n", "g.yaml:3:7: passes.keys[0] needs \"id\" (written into each pass) and \"secret\" (from the environment)"),
        ("    - { id: k1, secret: \"${K1}\", algorithm: sha1 }\n", "g.yaml:3:34: unknown key \"algorithm\" in passes.keys[0]"),
    ])
    func keyMistakes(keyLines: String, expected: String) {
        let yaml = "passes:\n  keys:\n" + keyLines + ConfigProblems.head + "  - { match: /a, price: $0.01, pass: { for: 1h } }\n"
        let found = Self.problems(yaml)
        #expect(found == expected)
        #expect(!found.contains("0123456789abcdef") && !found.contains("only-20-bytes"))
    }

    @Test("passes needs a non-empty keys list")
    func emptyKeys() {
        #expect(Self.problems("passes: { keys: [] }\n" + ConfigProblems.head + "  - { match: /a, price: $0.01 }\n")
            == "g.yaml:1:17: passes.keys must be a non-empty list of { id, secret: \"${PASS_KEY}\" }")
        #expect(Self.problems("passes: {}\n" + ConfigProblems.head + "  - { match: /a, price: $0.01 }\n")
            == "g.yaml:1:9: passes needs \"keys\": a list of { id, secret: \"${PASS_KEY}\" } (the first signs new passes)")
    }
}
