import FixtureEditing
import Foundation
import Gateway
import GatewayCore
import Testing
import X402

@Suite("gateway.yaml loading")
struct ConfigLoaderTests {
    static let valid = """
        listen: 127.0.0.1:8402
        publicBaseURL: https://api.example.com/
        payTo: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
        network: eip155:84532
        facilitator:
          url: https://x402.org/facilitator
          timeout: 10s
          headers: { Authorization: "Bearer ${FACILITATOR_TOKEN}" }
        upstreams:
          api: { url: http://127.0.0.1:8080, timeout: 30s, headers: { X-Api-Key: "${API_KEY}" } }
        routes:
          - match: "GET /weather"
            upstream: api
            price: "$0.001"
            description: Current weather
          - match: "/public/*"
            upstream: api
            free: true
        unmatched: pass        # or: deny (404)
        """
    static let env = ["FACILITATOR_TOKEN": "tok", "API_KEY": "k"]

    @Test("the documented example shape loads with every value in place")
    func validFile() throws {
        let c = try ConfigLoader.parse(yaml: Self.valid, file: "g.yaml", environment: Self.env)
        #expect(c.listen == ListenAddress(host: "127.0.0.1", port: 8402))
        #expect(c.publicBaseURL == "https://api.example.com")
        #expect(c.facilitator?.headers["Authorization"] == "Bearer tok")
        #expect(c.facilitator?.timeout == .seconds(10))
        #expect(c.upstreams["api"]?.port == 8080)
        #expect(c.upstreams["api"]?.headers.first?.value == "k")
        #expect(c.routes.count == 2)
        #expect(c.unmatched == .pass(upstream: "api"))
        guard case .priced(let offers) = c.routes[0].access else { Issue.record("not priced"); return }
        #expect(offers[0].amount == 1000)
        #expect(offers[0].asset == "0x036CbD53842c5426634e7929541eC2318f3dCF7e")
        #expect(offers[0].extra["name"] == .string("USDC"))
        #expect(c.routes[1].access == .free)
    }

    @Test("the default ledger is SQLite beside the file, and the default lease outlives the slowest paid request")
    func storageDefaults() throws {
        let c = try ConfigLoader.parse(yaml: Self.valid, file: "/etc/gw/g.yaml", environment: Self.env)
        #expect(c.storage.backend == .sqlite(path: "/etc/gw/x402-gateway.db"))
        #expect(c.storage.lease == .seconds(300))
        let slow = Self.valid.replacingOccurrences(of: "timeout: 30s", with: "timeout: 10m")
        #expect(slow != Self.valid)
        let long = try ConfigLoader.parse(yaml: slow, file: "g.yaml", environment: Self.env)
        #expect(long.storage.lease == .seconds(600 + 2 * 10 + 60))
        let set = try ConfigLoader.parse(yaml: slow + "\nstorage: { memory: true, lease: 20m }\n", file: "g.yaml", environment: Self.env)
        #expect(set.storage.backend == .memory && set.storage.lease == .seconds(1200))
    }

    /// Replaces `old` with `new` in the valid file and returns the single diagnostic text.
    static func diagnostics(_ old: String, _ new: String, env: [String: String] = env) -> [String] {
        let yaml = old.isEmpty ? valid : valid.replacingOccurrences(of: old, with: new)
        do {
            _ = try ConfigLoader.parse(yaml: yaml, file: "g.yaml", environment: env)
            return []
        } catch {
            return error.diagnostics.map(\.description)
        }
    }

    @Test("mistakes are reported as file:line:column: message", arguments: [
        // unknown key, with a suggestion
        ("unmatched: pass", "unmatchd: pass", "g.yaml:19:1: unknown key \"unmatchd\" in the configuration (did you mean \"unmatched\"?)"),
        // unknown key inside a route
        ("    description: Current weather", "    descripton: Current weather", "g.yaml:15:5: unknown key \"descripton\" in route (did you mean \"description\"?)"),
        // bad price
        ("price: \"$0.001\"", "price: \"$1,000\"", "g.yaml:14:12: bad price \"$1,000\": price \"$1,000\" is not a plain decimal amount like \"$0.01\" (no thousands separators, signs or exponents)"),
        // price below one atomic unit
        ("price: \"$0.001\"", "price: \"$0.0000001\"", "g.yaml:14:12: bad price \"$0.0000001\": price has more than 6 decimal places: it is smaller than one atomic unit of the asset"),
        // unknown network
        ("network: eip155:84532", "network: base-sepoila", "g.yaml:4:10: unknown network \"base-sepoila\" in network: use a CAIP-2 id like \"eip155:8453\" or a known name like \"base\""),
        // bad checksum
        ("0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "0x209693Bc6afc0C5328bA36FaF03C514EF312287c", "g.yaml:3:8: payTo \"0x209693Bc6afc0C5328bA36FaF03C514EF312287c\" has a bad EIP-55 checksum (expected 0x209693Bc6afc0C5328bA36FaF03C514EF312287C); check for a typo"),
        // malformed address
        ("0x209693Bc6afc0C5328bA36FaF03C514EF312287C", "0x209693Bc6afc", "g.yaml:3:8: payTo \"0x209693Bc6afc\" is not an EVM address (0x followed by 40 hex digits)"),
        // duplicate route
        ("  - match: \"/public/*\"", "  - match: \"GET /weather\"", "g.yaml:16:12: route \"GET /weather\" duplicates route \"GET /weather\" at line 12, which matches every request it would: it can never be used"),
        // the same pattern again, priced then free (a pattern ending in `*` escaped the old sampled check)
        ("  - match: \"GET /weather\"", "  - match: \"/public/*\"", "g.yaml:16:12: route \"/public/*\" duplicates route \"/public/*\" at line 12, which matches every request it would: it can never be used"),
        // HEAD after GET (GET takes HEAD)
        ("  - match: \"/public/*\"", "  - match: \"HEAD /weather\"", "g.yaml:16:12: route \"HEAD /weather\" is shadowed by route \"GET /weather\" at line 12, which matches every request it would: it can never be used"),
        // shadowed route
        ("  - match: \"GET /weather\"", "  - match: \"/*\"", "g.yaml:16:12: route \"/public/*\" is shadowed by route \"/*\" at line 12, which matches every request it would: it can never be used"),
        // unknown upstream
        ("    upstream: api\n    free", "    upstream: apx\n    free", "g.yaml:17:15: unknown upstream \"apx\" (defined: api)"),
        // bad duration
        ("timeout: 10s", "timeout: ten", "g.yaml:7:12: facilitator.timeout must be a positive duration like \"10s\", \"250ms\" or \"2m\", not \"ten\""),
        // bad listen
        ("listen: 127.0.0.1:8402", "listen: 127.0.0.1", "g.yaml:1:9: listen must be host:port (e.g. 127.0.0.1:8402), not \"127.0.0.1\""),
        // both free and priced
        ("    free: true", "    free: true\n    price: \"$1\"", "g.yaml:19:5: a free route cannot also have \"price\""),
        // bad match
        ("match: \"GET /weather\"", "match: \"get /weather\"", "g.yaml:12:12: bad match \"get /weather\": \"get\" is not an HTTP method (write e.g. \"GET /path\")"),
        // invalid YAML
        ("    description: Current weather", "    description: [Current weather", "g.yaml:16:10: invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence)"),
        // bad unmatched
        ("unmatched: pass", "unmatched: maybe", "g.yaml:19:12: unmatched must be \"pass\" (forward for free) or \"deny\" (404), not \"maybe\""),
    ])
    func mistakes(old: String, new: String, expected: String) {
        let found = Self.diagnostics(old, new)
        #expect(found == [expected])
    }

    @Test("listen addresses and URLs are read by one authority parser: hosts by character, ports 0–65535 (0 only to listen), no user info",
          arguments: [
              ("listen: 127.0.0.1:8402", "listen: \"[::1]:0\"", true),
              ("listen: 127.0.0.1:8402", "listen: 0.0.0.0:65535", true),
              ("listen: 127.0.0.1:8402", "listen: 127.0.0.1:65536", false),
              ("listen: 127.0.0.1:8402", "listen: \"exa mple:80\"", false),
              ("listen: 127.0.0.1:8402", "listen: \"[fe80::1%eth0]:80\"", false),
              ("listen: 127.0.0.1:8402", "listen: \"user@127.0.0.1:80\"", false),
              ("url: http://127.0.0.1:8080,", "url: \"http://user@127.0.0.1:8080\",", false),
              ("url: http://127.0.0.1:8080,", "url: \"http://127.0.0.1:0\",", false),
              ("url: http://127.0.0.1:8080,", "url: \"http://127.0.0.1:080808\",", false),
              ("url: http://127.0.0.1:8080,", "url: \"http://exa%6dple.com\",", false),
              ("url: https://x402.org/facilitator", "url: \"https://tok@x402.org/facilitator\"", false),
              ("publicBaseURL: https://api.example.com/", "publicBaseURL: \"https://api.example.com:99999/\"", false),
          ])
    func authorities(old: String, new: String, accepted: Bool) {
        let found = Self.diagnostics(old, new)
        #expect(found.isEmpty == accepted, "\(new): \(found)")
    }

    @Test("an upstream URL's scheme and host are read case-insensitively and kept lowercased; an IPv6 literal loses its brackets")
    func upstreamAuthority() throws {
        let yaml = Self.valid.replacingOccurrences(of: "url: http://127.0.0.1:8080,", with: "url: \"HTTPS://API.Example.COM:8443/v1/\",")
        let upstream = try #require(try ConfigLoader.parse(yaml: yaml, file: "g.yaml", environment: Self.env).upstreams["api"])
        #expect(upstream.tls && upstream.host == "api.example.com" && upstream.port == 8443 && upstream.basePath == "/v1")
        let v6 = Self.valid.replacingOccurrences(of: "url: http://127.0.0.1:8080,", with: "url: \"http://[::1]\",")
        let literal = try #require(try ConfigLoader.parse(yaml: v6, file: "g.yaml", environment: Self.env).upstreams["api"])
        #expect(literal.host == "::1" && literal.port == 80 && !literal.tls)
        #expect(literal.hostHeader == "[::1]", "an IPv6 literal's Host header keeps its brackets")
    }

    @Test("facilitator.caFile must name a PEM file with a certificate")
    func caFile() throws {
        let found = Self.diagnostics("timeout: 10s\n", "timeout: 10s\n  caFile: /nonexistent/ca.pem\n")
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("g.yaml:8:11: facilitator.caFile: cannot read PEM certificates from \"/nonexistent/ca.pem\"") == true)
        let yaml = Self.valid.replacingOccurrences(of: "timeout: 10s\n", with: "timeout: 10s\n  caFile: \(Self.certificate)\n")
        #expect(try ConfigLoader.parse(yaml: yaml, file: "g.yaml", environment: Self.env).facilitator?.caFile == Self.certificate)
    }

    static var certificate: String { Bundle.module.path(forResource: "localhost-cert", ofType: "pem", inDirectory: "Fixtures") ?? "" }

    @Test("an unset environment variable is an error at its use")
    func unsetEnv() {
        let found = Self.diagnostics("", "", env: ["API_KEY": "k"])
        #expect(found == ["g.yaml:8:29: environment variable FACILITATOR_TOKEN is not set"])
    }

    @Test("several mistakes are all reported, in file order")
    func several() {
        let yaml = Self.valid
            .replacingOccurrences(of: "price: \"$0.001\"", with: "price: \"$x\"")
            .replacingOccurrences(of: "unmatched: pass", with: "unmatched: pass\nbogus: 1")
        do {
            _ = try ConfigLoader.parse(yaml: yaml, file: "g.yaml", environment: Self.env)
            Issue.record("expected errors")
        } catch {
            #expect(error.diagnostics.map(\.location.line) == [14, 20])
        }
    }

    @Test("a $ price on a network without a default stablecoin asks for an explicit asset")
    func noDefaultAsset() {
        let found = Self.diagnostics("network: eip155:84532", "network: avalanche")
        #expect(found == ["g.yaml:14:12: network eip155:43114 has no default stablecoin: give the price as { amount, asset, extra: { name, version } }"])
    }

    @Test("explicit atomic prices and several accepts entries load")
    func accepts() throws {
        let yaml = Self.valid.replacingOccurrences(of: "    price: \"$0.001\"\n", with: """
                accepts:
                  - price: "$4.02"
                  - price: { amount: "2000", asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e" }
                    network: base-sepolia
                    maxTimeoutSeconds: 60
                  - price: { amount: "7", asset: "0x5425890298aed601595a70AB815c96711a31Bc65", extra: { name: "USD Coin", version: "2" } }
                    network: eip155:43113

            """)
        let c = try ConfigLoader.parse(yaml: yaml, file: "g.yaml", environment: Self.env)
        guard case .priced(let offers) = c.routes[0].access else { Issue.record("not priced"); return }
        #expect(offers.map { String($0.amount) } == ["4020000", "2000", "7"])
        #expect(offers.map(\.network.caip2) == ["eip155:84532", "eip155:84532", "eip155:43113"])
        #expect(offers[1].maxTimeoutSeconds == 60)
        #expect(offers[1].extra["name"] == .string("USDC"))  // known asset: domain filled in
        #expect(offers[2].extra["name"] == .string("USD Coin"))
    }

    // MARK: networks and reconcile

    @Test("networks name each chain's rpc (expanded from the environment; names or CAIP-2 ids, flow or block style); reconcile has defaults")
    func networks() throws {
        let simple = Self.valid + """

            networks:
              base: { rpc: "${BASE_RPC_URL}", timeout: 3s }
              eip155:84532:
                rpc: http://127.0.0.1:8545
                logBlocks: 500
              "eip155:137": https://polygon.example.com/?key=k
            reconcile: { interval: 30s, grace: 5m, batch: 20 }
            """
        let c = try ConfigLoader.parse(yaml: simple, file: "g.yaml", environment: Self.env.merging(["BASE_RPC_URL": "https://base.example.com/v2/KEY"]) { $1 })
        #expect(c.networks.keys.sorted() == ["eip155:137", "eip155:8453", "eip155:84532"])
        #expect(c.networks["eip155:8453"] == ChainRPCConfig(network: "eip155:8453", chainId: 8453, rpc: "https://base.example.com/v2/KEY", timeout: .seconds(3)))
        #expect(c.networks["eip155:8453"]?.host == "base.example.com")
        #expect(c.networks["eip155:84532"]?.logBlocks == 500)
        #expect(c.networks["eip155:84532"]?.timeout == .seconds(10))
        #expect(c.networks["eip155:137"]?.rpc == "https://polygon.example.com/?key=k")
        #expect(c.reconcile == ReconcileConfig(interval: .seconds(30), grace: .seconds(300), batch: 20))
        let defaults = try ConfigLoader.parse(yaml: Self.valid, file: "g.yaml", environment: Self.env)
        #expect(defaults.networks.isEmpty)
        #expect(defaults.reconcile == ReconcileConfig(interval: .seconds(60), grace: .seconds(600), batch: 100))
    }

    @Test("networks and reconcile mistakes are reported at their place; an rpc URL is never echoed", arguments: [
        ("networks: { eip155:84532: { rpc: \"ftp://h/KEY\" } }", "g.yaml:20:34: networks.\"eip155:84532\".rpc must be an absolute http(s) URL without user info, like https://host/path (the value is not shown: it may hold a key)"),
        ("networks: { eip155:84532: { rpc: \"https://u:KEY@h/\" } }", "g.yaml:20:34: networks.\"eip155:84532\".rpc must be an absolute http(s) URL without user info, like https://host/path (the value is not shown: it may hold a key)"),
        ("networks: { solana: { rpc: \"https://h/\" } }", "g.yaml:20:13: unknown network \"solana\" in networks: use an EVM CAIP-2 id like \"eip155:8453\" or a known name like \"base\""),
        ("networks: { base: { timeout: 5s } }", "g.yaml:20:19: networks.\"base\" needs \"rpc\": the chain's JSON-RPC URL"),
        ("networks: { base: https://a/, \"eip155:8453\": https://b/ }", "g.yaml:20:31: network eip155:8453 is listed twice in networks"),
        ("networks: [ base ]", "g.yaml:20:11: networks must be a mapping of network ids to { rpc: URL }, e.g. \"eip155:8453\": { rpc: \"${BASE_RPC_URL}\" }"),
        ("networks: { base: { rpc: \"https://h/\", logBlocks: 0 } }", "g.yaml:20:51: networks.\"base\".logBlocks must be a whole number between 1 and 1000000, not \"0\""),
        ("reconcile: { interval: 500ms }", "g.yaml:20:24: reconcile.interval must be at least 1s"),
        ("reconcile: { batch: 0 }", "g.yaml:20:21: reconcile.batch must be a whole number between 1 and 10000, not \"0\""),
        ("reconcile: { grace: soon }", "g.yaml:20:21: reconcile.grace must be a positive duration like \"10s\", \"250ms\" or \"2m\", not \"soon\""),
        ("reconcile: { every: 1m }", "g.yaml:20:14: unknown key \"every\" in reconcile"),
    ])
    func networkMistakes(line: String, expected: String) {
        let yaml = Self.valid + "\n" + line + "\n"
        do {
            _ = try ConfigLoader.parse(yaml: yaml, file: "g.yaml", environment: Self.env)
            Issue.record("expected an error")
        } catch {
            #expect(error.diagnostics.map(\.description) == [expected])
            #expect(!error.description.contains("KEY"))
        }
    }

    @Test("an unknown key in a network entry is named, with the missing rpc")
    func networkUnknownKey() {
        do {
            _ = try ConfigLoader.parse(yaml: Self.valid + "\nnetworks: { base: { url: \"https://h/KEY\" } }\n", file: "g.yaml", environment: Self.env)
            Issue.record("expected an error")
        } catch {
            #expect(error.diagnostics.map(\.description) == [
                "g.yaml:20:19: networks.\"base\" needs \"rpc\": the chain's JSON-RPC URL",
                "g.yaml:20:21: unknown key \"url\" in networks.\"base\"",
            ])
        }
    }
}
