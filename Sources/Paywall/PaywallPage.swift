import GatewayCore
import X402

/// The browser paywall of one priced route, compiled once per configuration.
///
/// Everything that only depends on the route and the branding (price, network, payee, style sheet,
/// script, the page settings JSON) is escaped and laid out at init. A request then only fills the
/// holes: the CSP nonce, the method, the resource URL (HTML text) and the 402 JSON (script data).
public struct PaywallPage: Sendable {
    enum Hole: Sendable { case nonce, method, resourceURL, paymentRequired }

    /// What differs between routes with the same offers: filled when the route's page is made.
    enum RouteText: Sendable { case title, description, passNote }

    /// The page in order: bytes, and holes.
    enum Piece: Sendable {
        case bytes([UInt8])
        case hole(Hole)
        case route(RouteText)
    }

    /// The style sheet and the script, the bulk of every page, are the same arrays for all routes
    /// (shared, not copied: ten thousand priced routes cost ten thousand small pages).
    private let pieces: [Piece]
    private let staticByteCount: Int
    /// The `Content-Security-Policy` value around its two nonces.
    private let cspParts: (String, String, String)

    /// One filled page.
    public struct Rendered: Sendable {
        public var body: [UInt8]
        /// For the `Content-Security-Policy` header; its nonce is the one on every `<script>`/`<style>`.
        public var contentSecurityPolicy: String
        public var nonce: String
    }

    /// Nil when the challenge has no offers (nothing to pay with).
    public init?(route: RouteConfig, challenge: Challenge, config: PaywallConfig) {
        var compiler = PaywallCompiler(config: config)
        guard let page = compiler.page(route: route, challenge: challenge) else { return nil }
        self = page
    }

    /// The page of `route`: `shape` with the route's title and description filled in.
    init(route: RouteConfig, shape: Shape) {
        let e = PaywallEscape.html
        let title = shape.appName ?? (route.description.isEmpty ? "Payment required" : String(route.description.prefix(80)))
        var pieces: [Piece] = []
        for piece in shape.pieces {
            let text: String
            switch piece {
            case .route(.title): text = e(title)
            case .route(.description): text = route.description.isEmpty ? "" : "<p class=\"desc\">\(e(route.description))</p>\n"
            case .route(.passNote): text = route.pass.map { "<p class=\"note\" id=\"pass-note\">\(e(Self.passNote($0)))</p>\n" } ?? ""
            case .bytes, .hole:
                pieces.append(piece)
                continue
            }
            if case .bytes(let before)? = pieces.last {
                pieces[pieces.count - 1] = .bytes(before + Array(text.utf8))
            } else {
                pieces.append(.bytes(Array(text.utf8)))
            }
        }
        self.pieces = pieces
        self.staticByteCount = pieces.reduce(0) { total, piece in
            if case .bytes(let bytes) = piece { return total + bytes.count }
            return total
        }
        self.cspParts = shape.cspParts
    }

    /// The page of every route with the same offers, title and description left open. `settingsJSON`:
    /// ``settingsJSON(_:)`` of the offers' views.
    struct Shape: Sendable {
        let pieces: [Piece]
        /// The configured application name, which is then every page's title.
        let appName: String?
        let cspParts: (String, String, String)

        /// Nil when there are no offers (nothing to pay with).
        init?(offers: [Offer], config: PaywallConfig, settingsJSON: String) {
            let views = offers.map(OfferView.init)
            guard let first = views.first else { return nil }
            let logo = config.appLogo.flatMap(PaywallEscape.logoURL)
            let appName = config.appName.flatMap { $0.isEmpty ? nil : String($0.prefix(80)) }
            let e = PaywallEscape.html
            func token(_ hole: Hole) -> String { PaywallPage.token(hole) }
            func token(_ text: RouteText) -> String { PaywallPage.token(text) }
            func token(_ shared: Shared) -> String { PaywallPage.token(shared) }

            var html = """
                <!doctype html>
                <html lang="en">
                <head>
                <meta charset="utf-8">
                <meta name="viewport" content="width=device-width,initial-scale=1">
                <meta name="robots" content="noindex">
                <title>\(token(.title)) · Payment required</title>
                <style nonce="\(token(.nonce))">
                \(PaywallPage.styleSheet(config.colors))\(token(.style))</style>
                </head>
                <body data-method="\(token(.method))">
                <main>

                """
            if appName != nil || logo != nil {
                html += "<div class=\"brand\">"
                if let logo { html += "<img src=\"\(e(logo))\" alt=\"\" referrerpolicy=\"no-referrer\">" }
                if let appName { html += "<span>\(e(appName))</span>" }
                html += "</div>\n"
            }
            html += "<h1 id=\"heading\">Payment required</h1>\n"
            html += token(.description)
            html += token(.passNote)
            html += """
                <p class="price"><span id="amount">\(e(first.price))</span> <span id="symbol">\(e(first.symbol))</span></p>
                <dl>
                <dt>Network</dt><dd id="network">\(e(first.network))</dd>
                <dt>Pay to</dt><dd><code id="payto">\(e(offers[0].payTo))</code></dd>
                <dt>Resource</dt><dd><code id="resource">\(token(.resourceURL))</code></dd>
                </dl>

                """
            if views.count > 1 {
                html += "<label for=\"offer\">Pay with</label>\n<select id=\"offer\">"
                for view in views { html += "<option>\(e("\(view.price) \(view.symbol) on \(view.network)"))</option>" }
                html += "</select>\n"
            }
            if let testnetView = views.first(where: \.testnet) {
                // Shown by the script for test networks only; rendered visible when the first offer is one.
                let faucet = views.compactMap(\.faucet).first.flatMap(PaywallEscape.linkURL)
                html += "<p class=\"note\" id=\"testnet\"\(first.testnet ? "" : " hidden")>Test network: these tokens have no real value."
                if let faucet {
                    html += " <a id=\"faucet\" href=\"\(e(faucet))\" target=\"_blank\" rel=\"noopener noreferrer\""
                        + "\(first.faucet == nil ? " hidden" : "")>Get free test \(e(testnetView.symbol))</a>"
                }
                html += "</p>\n"
            }
            html += """
                <div id="wallets" hidden></div>
                <button id="pay" type="button" disabled>Connect wallet and pay</button>
                <p id="status" class="msg" role="status" aria-live="polite"></p>
                <noscript><p class="note">Paying here needs JavaScript and a browser wallet. Programs can pay with any x402 client: the offer is in the PAYMENT-REQUIRED header.</p></noscript>
                <pre id="result" hidden></pre>
                <a id="download" hidden></a>
                </main>
                <footer>HTTP 402 · paid with <a href="https://x402.org" rel="noopener noreferrer">x402</a></footer>
                <script type="application/json" id="x402-payment-required" nonce="\(token(.nonce))">\(token(.paymentRequired))</script>
                <script type="application/json" id="x402-paywall" nonce="\(token(.nonce))">\(settingsJSON)</script>
                <script nonce="\(token(.nonce))">
                \(token(.script))</script>
                </body>
                </html>

                """
            self.pieces = PaywallPage.cut(html)
            self.appName = appName
            let imageSource = logo == nil ? "" : " img-src https: data:;"
            self.cspParts = (
                "default-src 'none'; script-src 'nonce-",
                "'; style-src 'nonce-",
                "';\(imageSource) connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
        }
    }

    /// Fills the page for one request. `paymentRequiredJSON` is the compact v2 `PaymentRequired`
    /// (the same bytes as the `PAYMENT-REQUIRED` header, before base64).
    public func render(paymentRequiredJSON: [UInt8], resourceURL: String, method: String,
                       nonce: String = PaywallPage.makeNonce()) -> Rendered {
        let url = Array(PaywallEscape.html(resourceURL).utf8)
        let methodBytes = Array(PaywallEscape.html(method).utf8)
        let nonceBytes = Array(nonce.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(staticByteCount + url.count + paymentRequiredJSON.count + 128)
        for piece in pieces {
            switch piece {
            case .bytes(let bytes): out.append(contentsOf: bytes)
            case .hole(.nonce): out.append(contentsOf: nonceBytes)
            case .hole(.method): out.append(contentsOf: methodBytes)
            case .hole(.resourceURL): out.append(contentsOf: url)
            case .hole(.paymentRequired): PaywallEscape.appendScriptJSON(paymentRequiredJSON, to: &out)
            case .route: break  // filled when the page was made
            }
        }
        let csp = cspParts.0 + nonce + cspParts.1 + nonce + cspParts.2
        return Rendered(body: out, contentSecurityPolicy: csp, nonce: nonce)
    }

    /// What one payment opens, in words: "One payment opens this page to you for 24 hours."
    static func passNote(_ pass: RoutePass) -> String {
        let units: [(UInt64, String)] = [(86_400, "day"), (3600, "hour"), (60, "minute"), (1, "second")]
        let (size, unit) = units.first { pass.seconds % $0.0 == 0 } ?? (1, "second")
        let n = pass.seconds / size
        let span = "\(n) \(unit)\(n == 1 ? "" : "s")"
        switch pass.scope {
        case .path: return "One payment opens this page to you for \(span)."
        case .route: return "One payment opens this page and the others like it to you for \(span)."
        }
    }

    /// 16 bytes from the system CSPRNG, base64url without padding (22 characters).
    public static func makeNonce() -> String {
        var rng = SystemRandomNumberGenerator()
        let a = rng.next() as UInt64, b = rng.next() as UInt64
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        for word in [a, b] { for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) } }
        return Base64.encodeURL(bytes)
    }

    // MARK: Compile-time pieces

    /// The parts every page shares, inserted where their markers are.
    enum Shared: CaseIterable { case style, script }

    private static let sharedBytes: [Shared: [UInt8]] = [
        .style: Array(PaywallAssets.style.utf8), .script: Array(PaywallAssets.script.utf8),
    ]

    /// Markers for the holes and the shared parts. They contain `<`, which escaping always turns
    /// into `&lt;` or `\u003c`, so no configured or requested value can forge one.
    static func token(_ hole: Hole) -> String { "<x402-hole:\(hole)>" }
    static func token(_ text: RouteText) -> String { "<x402-route:\(text)>" }
    static func token(_ shared: Shared) -> String { "<x402-shared:\(shared)>" }

    static func cut(_ html: String) -> [Piece] {
        let bytes = Array(html.utf8)
        let markers: [(Piece, [UInt8])] = [Hole.nonce, .method, .resourceURL, .paymentRequired].map { (.hole($0), Array(token($0).utf8)) }
            + [RouteText.title, .description, .passNote].map { (.route($0), Array(token($0).utf8)) }
            + Shared.allCases.map { (.bytes(sharedBytes[$0]!), Array(token($0).utf8)) }
        var pieces: [Piece] = []
        var fragmentStart = 0
        var i = 0
        while let open = bytes[i...].firstIndex(of: UInt8(ascii: "<")) {
            guard let (piece, marker) = markers.first(where: { bytes[open...].starts(with: $0.1) }) else {
                i = open + 1
                continue
            }
            pieces.append(.bytes(Array(bytes[fragmentStart..<open])))
            pieces.append(piece)
            fragmentStart = open + marker.count
            i = fragmentStart
        }
        pieces.append(.bytes(Array(bytes[fragmentStart...])))
        return pieces
    }

    /// Theme variables: a light and a dark palette, then the configured colours (hex only).
    /// Configuring `background` or `text` turns the automatic dark palette off.
    static func styleSheet(_ colors: PaywallColors) -> String {
        let accent = colors.accent.flatMap(PaywallEscape.hexColor)
        let background = colors.background.flatMap(PaywallEscape.hexColor)
        let text = colors.text.flatMap(PaywallEscape.hexColor)
        var css = ":root{--bg:#f4f5f7;--fg:#14161a;--card:#fff;--line:#e3e5e8;--muted:#5b6370;--soft:#f1f3f6;"
            + "--accent:#2456e8;--err:#b42318;--okc:#067647}\n"
        if background == nil && text == nil {
            css += "@media (prefers-color-scheme:dark){:root{--bg:#0e1014;--fg:#eceef2;--card:#171a20;--line:#2a2f38;"
                + "--muted:#a0a8b5;--soft:#1f232b;--accent:#6d8dff;--err:#ff8a80;--okc:#5ad19a}}\n"
        }
        let custom = [("--accent", accent), ("--bg", background), ("--fg", text)].compactMap { name, value in value.map { "\(name):\($0)" } }
        if !custom.isEmpty { css += ":root{\(custom.joined(separator: ";"))}\n" }
        return css
    }

    /// The page settings the script reads: one entry per offer (same order as `accepts`) and the
    /// human text for refusal codes.
    static func settingsJSON(_ views: [OfferView]) -> String {
        struct Settings: Encodable {
            var offers: [OfferView]
            var reasons: [String: String]
        }
        let json = (try? HeaderCodec.compactJSON(Settings(offers: views, reasons: reasonTexts))) ?? Array("{}".utf8)
        return String(decoding: PaywallEscape.scriptJSON(json), as: UTF8.self)
    }

    /// Refusal codes (the gateway's own and common facilitator ones) in words.
    static let reasonTexts: [String: String] = {
        var texts = Dictionary(uniqueKeysWithValues: RefusalReason.allCases.map { ($0.rawValue, $0.message) })
        texts["insufficient_funds"] = "the wallet's token balance is too low"
        texts["invalid_exact_evm_insufficient_balance"] = "the wallet's token balance is too low"
        texts["invalid_exact_evm_nonce_already_used"] = "this authorization has already been used"
        texts["invalid_exact_evm_signature"] = RefusalReason.badSignature.message
        texts["invalid_exact_evm_token_name_mismatch"] = "the token's signing domain does not match the offer"
        texts["invalid_exact_evm_token_version_mismatch"] = "the token's signing domain does not match the offer"
        texts["invalid_exact_evm_transaction_simulation_failed"] = "the transfer would fail on chain"
        texts["transaction_failed"] = "the transfer failed on chain"
        texts["invalid_exact_evm_transaction_failed"] = "the transfer failed on chain"
        texts["invalid_payment"] = "the facilitator refused the payment"
        texts["unexpected_verify_error"] = "the facilitator could not check the payment"
        texts["unexpected_settle_error"] = "the facilitator could not settle the payment"
        return texts
    }()
}

/// What the page shows about one offer, computed at configuration time.
struct OfferView: Sendable, Encodable {
    struct NativeCurrency: Sendable, Encodable {
        var name: String
        var symbol: String
        var decimals: Int
    }

    /// EIP-3085 `wallet_addEthereumChain` parameters (without `chainId`, which the script adds).
    struct AddChain: Sendable, Encodable {
        var chainName: String
        var rpcUrls: [String]
        var nativeCurrency: NativeCurrency
        var blockExplorerUrls: [String]?
    }

    /// Human amount ("0.01"), or atomic units when the token's decimals are unknown.
    var price: String
    var symbol: String
    var decimals: Int?
    var network: String
    /// `0x`-prefixed hex, as EIP-1193 wallets report it.
    var chainId: String
    var testnet: Bool
    var faucet: String?
    var addChain: AddChain?

    init(_ offer: Offer) {
        let asset = offer.asset
        let shortAsset = asset.count > 12 ? "\(asset.prefix(6))…\(asset.suffix(4))" : asset
        if let decimals = offer.decimals {
            price = Money.format(offer.amount, decimals: decimals)
            symbol = offer.symbol ?? "tokens (\(shortAsset))"
        } else {
            price = String(offer.amount)
            symbol = "atomic units of " + (offer.symbol ?? "token \(shortAsset)")
        }
        decimals = offer.decimals
        let info = offer.network
        network = info.displayName == info.caip2 ? "EVM chain \(info.chainId)" : info.displayName
        chainId = "0x" + String(info.chainId, radix: 16)
        testnet = info.isTestnet
        let chain = ChainDirectory.known[info.chainId]
        faucet = info.isTestnet && offer.symbol == "USDC" ? chain?.usdcFaucet : nil
        addChain = chain.map {
            AddChain(chainName: network, rpcUrls: [$0.rpcURL],
                     nativeCurrency: NativeCurrency(name: $0.nativeName, symbol: $0.nativeSymbol, decimals: 18),
                     blockExplorerUrls: $0.explorerURL.map { [$0] })
        }
    }
}
