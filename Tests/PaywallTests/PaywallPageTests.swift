import BigInt
import Foundation
import GatewayCore
import Paywall
import Testing
import X402

// MARK: Fixtures

let payee = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"

func usdcOffer(_ caip2: String, amount: BigUInt = 10_000) -> Offer {
    let network = Networks.named(caip2)!
    let asset = network.defaultAsset!
    return Offer(network: network, amount: amount, asset: asset.address, payTo: payee, maxTimeoutSeconds: 300,
                 extra: ["name": .string(asset.eip712Name), "version": .string(asset.eip712Version)],
                 decimals: asset.decimals, symbol: asset.symbol)
}

struct PageFixture {
    let route: RouteConfig
    let challenge: Challenge
    let page: PaywallPage

    init(description: String = "Current weather", offers: [Offer] = [usdcOffer("eip155:84532")],
         config: PaywallConfig = PaywallConfig(), pass: RoutePass? = nil) {
        route = RouteConfig(id: "weather", pattern: try! RoutePattern("GET /weather"), upstream: "api", access: .priced(offers),
                            description: description, mimeType: "application/json", pass: pass)
        challenge = Challenge(route: route, offers: offers)
        page = PaywallPage(route: route, challenge: challenge, config: config)!
    }

    func render(url: String = "https://api.example.com/weather?city=Paris", error: String = Challenge.defaultError,
                nonce: String = PaywallPage.makeNonce()) -> (html: String, csp: String, json: [UInt8], nonce: String) {
        let json = challenge.paymentRequired(resourceURL: url, error: error)
        let r = page.render(paymentRequiredJSON: json, resourceURL: url, method: "GET", nonce: nonce)
        return (String(decoding: r.body, as: UTF8.self), r.contentSecurityPolicy, json, r.nonce)
    }
}

/// Every `<tag ...>` opening tag of one element name, as its attribute text, and the element's content.
func elements(_ name: String, in html: String) -> [(attributes: String, content: String)] {
    var out: [(String, String)] = []
    var rest = html[...]
    while let open = rest.range(of: "<\(name)", options: .caseInsensitive) {
        guard let close = rest[open.upperBound...].firstIndex(of: ">") else { break }
        let attributes = String(rest[open.upperBound..<close])
        let bodyStart = rest.index(after: close)
        guard let end = rest[bodyStart...].range(of: "</\(name)", options: .caseInsensitive) else {
            out.append((attributes, ""))
            break
        }
        out.append((attributes, String(rest[bodyStart..<end.lowerBound])))
        rest = rest[end.upperBound...]
    }
    return out
}

func dataBlock(_ html: String, id: String) -> String? {
    elements("script", in: html).first { $0.attributes.contains("id=\"\(id)\"") }?.content
}

// MARK: Tests

@Suite("Paywall page")
struct PaywallPageTests {
    @Test("the page shows the price in token units, the network, the payee, the description and the resource URL")
    func content() {
        let f = PageFixture()
        let html = f.render().html
        #expect(html.contains("<span id=\"amount\">0.01</span> <span id=\"symbol\">USDC</span>"))
        #expect(html.contains("<dd id=\"network\">Base Sepolia</dd>"))
        #expect(html.contains(payee))
        #expect(html.contains("<p class=\"desc\">Current weather</p>"))
        #expect(html.contains("https://api.example.com/weather?city=Paris"))
        #expect(!html.contains("<x402-hole"))
    }

    @Test("the embedded JSON is exactly the 402's PaymentRequired, and the page settings describe each offer")
    func embeddedJSON() throws {
        let f = PageFixture(offers: [usdcOffer("eip155:84532"), usdcOffer("eip155:8453", amount: 2_500_000)])
        let (html, _, json, _) = f.render(error: "invalid_exact_evm_payload_signature")
        let block = try #require(dataBlock(html, id: "x402-payment-required"))
        let decoded = try JSONDecoder().decode(PaymentRequired.self, from: Data(block.utf8))
        #expect(decoded == (try JSONDecoder().decode(PaymentRequired.self, from: Data(json))))
        #expect(decoded.error == "invalid_exact_evm_payload_signature")
        #expect(decoded.accepts.count == 2)

        let settings = try #require(dataBlock(html, id: "x402-paywall"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(settings.utf8)) as? [String: Any])
        let offers = try #require(object["offers"] as? [[String: Any]])
        #expect(offers.count == 2)
        #expect(offers[0]["chainId"] as? String == "0x14a34")
        #expect(offers[0]["testnet"] as? Bool == true)
        #expect(offers[1]["price"] as? String == "2.5")
        #expect(offers[1]["network"] as? String == "Base")
        #expect((offers[1]["addChain"] as? [String: Any])?["rpcUrls"] as? [String] == ["https://mainnet.base.org"])
        #expect(html.contains("<select id=\"offer\"><option>0.01 USDC on Base Sepolia</option><option>2.5 USDC on Base</option></select>"))
    }

    static let hostileDescriptions = [
        "</script><script>alert(1)</script>",
        "\"><img src=x onerror=alert(1)>",
        "'; alert(1); '",
        "a\u{2028}b\u{2029}c",
        "<!--<script>",
        "&lt;already escaped&gt; & \" '",
    ]

    @Test("a hostile description is escaped in HTML text and in the script data", arguments: hostileDescriptions)
    func hostileDescription(_ description: String) throws {
        let f = PageFixture(description: description)
        let html = f.render().html
        #expect(html.contains("<p class=\"desc\">\(PaywallEscape.html(description))</p>"))
        try expectThreeScriptsIntact(html)
        let block = try #require(dataBlock(html, id: "x402-payment-required"))
        #expect(!block.contains("<") && !block.contains(">"))
        #expect(!block.unicodeScalars.contains("\u{2028}") && !block.unicodeScalars.contains("\u{2029}"))
        let decoded = try JSONDecoder().decode(PaymentRequired.self, from: Data(block.utf8))
        #expect(decoded.resource.description == description)
    }

    static let hostileURLs = [
        "http://gw.test/weather?q=</script><script>alert(1)</script>",
        "http://gw.test/weather?q=\"><svg onload=alert(1)>",
        "http://gw.test/weather?q='x'&y=<b>",
        "http://gw.test/weather?q=\u{2028}\u{2029}",
        "javascript:alert(1)",
    ]

    @Test("a hostile resource URL is escaped as text, never becomes a link, and round-trips through the JSON", arguments: hostileURLs)
    func hostileURL(_ url: String) throws {
        let f = PageFixture()
        let html = f.render(url: url).html
        #expect(html.contains("<code id=\"resource\">\(PaywallEscape.html(url))</code>"))
        try expectThreeScriptsIntact(html)
        for (attributes, _) in elements("a", in: html) {
            #expect(!attributes.lowercased().contains("javascript:"))
            #expect(!attributes.contains("gw.test"))
        }
        let block = try #require(dataBlock(html, id: "x402-payment-required"))
        #expect(!block.contains("<") && !block.unicodeScalars.contains("\u{2028}"))
        #expect(try JSONDecoder().decode(PaymentRequired.self, from: Data(block.utf8)).resource.url == url)
    }

    @Test("a hostile error text stays inside the JSON data")
    func hostileError() throws {
        let f = PageFixture()
        let html = f.render(error: "</script><script>alert(1)</script>\u{2028}").html
        try expectThreeScriptsIntact(html)
        let block = try #require(dataBlock(html, id: "x402-payment-required"))
        #expect(try JSONDecoder().decode(PaymentRequired.self, from: Data(block.utf8)).error == "</script><script>alert(1)</script>\u{2028}")
    }

    @Test("branding: app name escaped, an https or data:image logo shown and allowed by img-src, a javascript: logo dropped")
    func branding() throws {
        let named = PageFixture(config: PaywallConfig(appName: "<b>Acme</b> & \"Co\"", appLogo: "https://cdn.example.com/logo.png?a=1&b=2"))
        let (html, csp, _, _) = named.render()
        #expect(html.contains("<span>&lt;b&gt;Acme&lt;/b&gt; &amp; &quot;Co&quot;</span>"))
        #expect(html.contains("<title>&lt;b&gt;Acme&lt;/b&gt; &amp; &quot;Co&quot; · Payment required</title>"))
        #expect(html.contains("<img src=\"https://cdn.example.com/logo.png?a=1&amp;b=2\""))
        #expect(csp.contains("img-src https: data:"))

        let data = PageFixture(config: PaywallConfig(appLogo: "data:image/png;base64,iVBORw0KGgo="))
        #expect(data.render().html.contains("<img src=\"data:image/png;base64,iVBORw0KGgo=\""))

        for bad in ["javascript:alert(1)", "JavaScript:alert(1)", " javascript:alert(1)", "data:text/html;base64,PHNjcmlwdD4=",
                    "http://plain.example.com/logo.png", "https://x.example.com/\"onerror=\"alert(1)", "//evil.example.com/x.png"] {
            let f = PageFixture(config: PaywallConfig(appLogo: bad))
            let (html, csp, _, _) = f.render()
            #expect(!html.contains("<img"), "logo \(bad) must not be used")
            #expect(!html.lowercased().contains("javascript:alert"))
            #expect(!csp.contains("img-src"))
        }
    }

    @Test("colours reach the style sheet only as hex; a configured palette turns the dark theme off")
    func colours() {
        let good = PageFixture(config: PaywallConfig(colors: PaywallColors(accent: "#0052ff", background: "#fff", text: "#111111")))
        let html = good.render().html
        #expect(html.contains(":root{--accent:#0052ff;--bg:#fff;--fg:#111111}"))
        #expect(!html.contains("prefers-color-scheme"))

        let bad = PageFixture(config: PaywallConfig(colors: PaywallColors(accent: "red;}body{background:url(https://evil.example)")))
        let badHTML = bad.render().html
        #expect(!badHTML.contains("evil.example"))
        #expect(badHTML.contains("prefers-color-scheme"))
    }

    @Test("faucet link and test-network note only on testnets")
    func testnetCopy() {
        let testnet = PageFixture(offers: [usdcOffer("eip155:84532")]).render().html
        #expect(testnet.contains("id=\"testnet\">Test network"))
        #expect(testnet.contains("href=\"https://faucet.circle.com/\""))

        for caip2 in ["eip155:8453", "eip155:137", "eip155:42161"] {
            let mainnet = PageFixture(offers: [usdcOffer(caip2)]).render().html
            #expect(!mainnet.contains("faucet.circle.com"), "\(caip2)")
            #expect(!mainnet.contains("Test network"), "\(caip2)")
            #expect(!mainnet.contains("\"testnet\":true"), "\(caip2)")
        }

        // Mainnet first, testnet second: the note exists for the second offer but starts hidden.
        let mixed = PageFixture(offers: [usdcOffer("eip155:8453"), usdcOffer("eip155:84532")]).render().html
        #expect(mixed.contains("<p class=\"note\" id=\"testnet\" hidden>"))
        #expect(mixed.contains("href=\"https://faucet.circle.com/\" target=\"_blank\" rel=\"noopener noreferrer\" hidden>"))

        // A testnet without a known USDC faucet gets the note but no link.
        let stable = PageFixture(offers: [usdcOffer("eip155:2201")]).render().html
        #expect(stable.contains("id=\"testnet\">Test network"))
        #expect(!stable.contains("faucet.circle.com"))
    }

    @Test("the CSP nonce is on every script and style element and matches the header")
    func cspNonce() throws {
        let f = PageFixture()
        let (html, csp, _, nonce) = f.render()
        #expect(nonce.count >= 22)
        #expect(csp.contains("script-src 'nonce-\(nonce)'"))
        #expect(csp.contains("style-src 'nonce-\(nonce)'"))
        for directive in ["default-src 'none'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'", "connect-src 'self'"] {
            #expect(csp.contains(directive))
        }
        #expect(!csp.contains("unsafe"))
        #expect(!csp.contains("img-src"))
        let tags = elements("script", in: html) + elements("style", in: html)
        #expect(tags.count == 4)
        for (attributes, _) in tags { #expect(attributes.contains("nonce=\"\(nonce)\""), "\(attributes)") }
        #expect(!html.contains(" style=\""), "no inline style attributes (the CSP would block them)")
        let markup = String(html[..<html.range(of: "<script")!.lowerBound])
        #expect(!markup.contains(try Regex(#"\son[a-z]+\s*="#)), "no inline event handlers")
    }

    @Test("every response gets a fresh nonce")
    func freshNonces() {
        let f = PageFixture()
        let nonces = (0..<200).map { _ in f.render().nonce }
        #expect(Set(nonces).count == nonces.count)
        for n in nonces { #expect(n.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) }
    }

    @Test("the page stays within 40 KB with a long description, several offers and a long URL")
    func sizeBound() {
        let long = String(repeating: "A very long description of the resource & its <terms>. ", count: 40)
        let f = PageFixture(description: long, offers: ["eip155:84532", "eip155:8453", "eip155:137", "eip155:42161"].map { usdcOffer($0) },
                            config: PaywallConfig(appName: "Acme Weather", appLogo: "https://cdn.example.com/logo.png"))
        let url = "https://api.example.com/weather?" + String(repeating: "q=x&", count: 200)
        let body = f.render(url: url).html.utf8.count
        #expect(body <= 40 * 1024, "page is \(body) bytes")
        let plain = PageFixture().render().html.utf8.count
        #expect(plain <= 24 * 1024, "plain page is \(plain) bytes")
    }

    @Test("filling a page only touches the holes: two renders with the same nonce are identical")
    func deterministic() {
        let f = PageFixture()
        #expect(f.render(nonce: "abc").html == f.render(nonce: "abc").html)
        #expect(f.render(nonce: "abc").html != f.render(nonce: "abd").html)
    }

    private func expectThreeScriptsIntact(_ html: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws {
        let lower = html.lowercased()
        #expect(lower.components(separatedBy: "<script").count - 1 == 3, sourceLocation: sourceLocation)
        #expect(lower.components(separatedBy: "</script").count - 1 == 3, sourceLocation: sourceLocation)
        #expect(!lower.contains("<img src=x"), sourceLocation: sourceLocation)
        #expect(!lower.contains("<svg"), sourceLocation: sourceLocation)
    }
    @Test("routes with the same offers share one layout, and each page still shows its own title and escaped description")
    func sharedLayout() {
        let hostile = PageFixture(description: "<b>\"x\"</b> & co")
        let plain = PageFixture(description: "")
        var compiler = PaywallCompiler(config: PaywallConfig())
        let url = "https://api.example.com/weather"
        for fixture in [hostile, plain] {
            let shared = compiler.page(route: fixture.route, challenge: fixture.challenge)!
            let json = fixture.challenge.paymentRequired(resourceURL: url)
            let alone = fixture.page.render(paymentRequiredJSON: json, resourceURL: url, method: "GET", nonce: "n")
            #expect(shared.render(paymentRequiredJSON: json, resourceURL: url, method: "GET", nonce: "n").body == alone.body)
        }
        let html = { (f: PageFixture) in String(decoding: f.page.render(paymentRequiredJSON: [], resourceURL: url, method: "GET").body, as: UTF8.self) }
        #expect(html(hostile).contains("<title>&lt;b&gt;&quot;x&quot;&lt;/b&gt; &amp; co · Payment required</title>"))
        #expect(html(hostile).contains("<p class=\"desc\">&lt;b&gt;&quot;x&quot;&lt;/b&gt; &amp; co</p>"))
        #expect(html(plain).contains("<title>Payment required · Payment required</title>"))
        #expect(!html(plain).contains("class=\"desc\""))
    }
}

@Suite("Paywall escaping")
struct PaywallEscapeTests {
    @Test("HTML escaping covers the five significant characters")
    func html() {
        #expect(PaywallEscape.html("<a href=\"x\">'&'</a>") == "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;")
        #expect(PaywallEscape.html("café ✓") == "café ✓")
    }

    @Test("JSON for a script element escapes <, >, & and the JavaScript line separators, and stays the same JSON")
    func scriptJSON() throws {
        let value = ["k": "</script><!--&\u{2028}\u{2029}é"]
        let json = try HeaderCodec.compactJSON(value)
        let escaped = PaywallEscape.scriptJSON(json)
        let text = String(decoding: escaped, as: UTF8.self)
        #expect(text == #"{"k":"\u003c/script\u003e\u003c!--\u0026\u2028\u2029é"}"#)
        #expect(try JSONDecoder().decode([String: String].self, from: Data(escaped)) == value)
    }

    @Test("only plain http(s) URLs become links", arguments: [
        ("https://faucet.circle.com/", true), ("http://example.com/a?b=c", true), ("HTTPS://EXAMPLE.COM", true),
        ("javascript:alert(1)", false), ("JAVASCRIPT:alert(1)", false), (" https://example.com", false),
        ("data:text/html,<script>", false), ("https://example.com/\"onmouseover=\"x", false), ("https:///path", false),
        ("//example.com", false), ("https://exa mple.com", false), ("vbscript:x", false), ("https://example.com/\u{2028}", false),
    ])
    func links(_ url: String, _ allowed: Bool) {
        #expect((PaywallEscape.linkURL(url) != nil) == allowed)
    }

    @Test("hex colours only", arguments: [("#0052ff", true), ("#05f", true), ("#0052FF", true), ("0052ff", false), ("#0052f", false),
                                          ("#gggggg", false), ("red", false), ("#fff;}", false)])
    func colours(_ text: String, _ allowed: Bool) {
        #expect((PaywallEscape.hexColor(text) != nil) == allowed)
    }
}

@Suite("Browser detection")
struct BrowserDetectionTests {
    @Test("HTML page only for a browser that accepts text/html", arguments: [
        ("text/html,application/xhtml+xml,*/*;q=0.8", "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", true),
        ("text/html", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Safari/604.1", true),
        ("*/*", "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", false),
        ("application/json", "Mozilla/5.0", false),
        ("text/html", "curl/8.5.0", false),
        ("text/html", "python-httpx/0.27", false),
        ("text/html", nil, false),
        (nil, "Mozilla/5.0", false),
    ] as [(String?, String?, Bool)])
    func detection(_ accept: String?, _ userAgent: String?, _ expected: Bool) {
        #expect(BrowserDetection.wantsPaywall(accept: accept, userAgent: userAgent) == expected)
    }
}

@Suite("paywall and Permit2")
struct PaywallPermit2Tests {
    @Test("routes with a Permit2 or upto offer get no page (the page signs EIP-3009 only)", arguments: [
        ("exact", AssetTransferMethod.eip3009, true), ("exact", .permit2, false), ("upto", .permit2, false),
    ])
    func onlyEIP3009(scheme: String, method: AssetTransferMethod, paged: Bool) throws {
        let network = Networks.named("eip155:84532")!
        let offer = Offer(scheme: scheme, network: network, amount: 1000, asset: network.defaultAsset!.address,
                          payTo: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C", maxTimeoutSeconds: 300,
                          extra: ["name": .string("USDC"), "version": .string("2")], decimals: 6, symbol: "USDC", transferMethod: method)
        let route = RouteConfig(id: "r", pattern: try RoutePattern("GET /r"), upstream: "api", access: .priced([offer]))
        var compiler = PaywallCompiler(config: PaywallConfig())
        let compiled = CompiledRoute(config: route)
        #expect((compiler.page(route: route, challenge: try #require(compiled.challenge)) != nil) == paged)
    }
}
