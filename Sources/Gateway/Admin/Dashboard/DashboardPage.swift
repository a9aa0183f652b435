import BigInt
import Foundation
import GatewayStorage
import Paywall
import X402

/// The revenue dashboard: one self-contained HTML page (inline CSS and script under a per-response
/// CSP nonce, SVG charts drawn here, no external resource), readable on a phone and a desktop, in
/// light and dark. Every value from the ledger or the configuration (route ids, payers, reasons,
/// request ids, transactions) goes through `PaywallEscape.html`; links are built only from
/// explorer URLs the gateway knows and hex the ledger holds, checked first.
///
/// The page refreshes its `<main>` every 10 s from the same URL with `part=main`, which answers
/// only that element (a small script; without script the page is complete, only static).
package struct DashboardPage {
    package let view: RevenueView
    package let recent: [PaymentRecord]
    package let assets: AssetDirectory
    /// "sqlite", "postgres", "memory".
    package let storeKind: String
    /// Unix ms.
    package let now: Int64
    /// A token is configured: offer to sign out.
    package let signedIn: Bool

    package init(view: RevenueView, recent: [PaymentRecord], assets: AssetDirectory, storeKind: String, now: Int64, signedIn: Bool) {
        self.view = view
        self.recent = recent
        self.assets = assets
        self.storeKind = storeKind
        self.now = now
        self.signedIn = signedIn
    }

    static let refreshSeconds = 10

    package static func contentSecurityPolicy(nonce: String) -> String {
        "default-src 'none'; script-src 'nonce-\(nonce)'; style-src 'nonce-\(nonce)'; connect-src 'self'; img-src 'self'; "
            + "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    }

    private static let e = PaywallEscape.html

    package func render(nonce: String) -> String {
        let e = Self.e
        var html = """
            <!doctype html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width,initial-scale=1">
            <meta name="robots" content="noindex">
            <meta name="color-scheme" content="light dark">
            <title>Revenue · x402-gateway</title>
            <style nonce="\(e(nonce))">\(Self.styleSheet)</style>
            </head>
            <body>
            <header>
            <h1>Revenue</h1>
            <nav class="windows" aria-label="Window">
            """
        for window in DashboardWindow.allCases {
            let current = window == view.window ? " aria-current=\"page\"" : ""
            html += "<a href=\"/dashboard?window=\(window.rawValue)\"\(current)>\(window.rawValue)</a>"
        }
        html += "</nav>\n<label class=\"live\"><input type=\"checkbox\" id=\"auto-refresh\" checked> refresh every \(Self.refreshSeconds) s</label>"
        html += "<span class=\"failed\">refresh failed</span>"
        if signedIn {
            html += "<form method=\"post\" action=\"/logout\" class=\"logout\"><button type=\"submit\">Sign out</button></form>"
        }
        html += "\n</header>\n"
        html += main
        html += "<script nonce=\"\(e(nonce))\">\(Self.script)</script>\n</body>\n</html>\n"
        return html
    }

    /// The part the page swaps on refresh.
    package var main: String {
        let e = Self.e
        var html = "<main id=\"dashboard\" data-window=\"\(view.window.rawValue)\" data-generated=\"\(now)\">\n"
        html += attention
        // Totals per asset, then the outcome counts.
        html += "<section class=\"cards\" aria-label=\"Totals\">"
        if view.totals.isEmpty {
            html += "<div class=\"card total empty\"><span class=\"label\">Revenue</span><span class=\"value\">nothing settled in the last \(view.window.rawValue)</span></div>"
        }
        for total in view.totals {
            html += "<div class=\"card total\" data-network=\"\(e(total.network))\" data-asset=\"\(e(total.asset))\" "
                + "data-atomic=\"\(total.total)\" data-payments=\"\(total.payments)\">"
                + "<span class=\"label\">Revenue · \(e(assets.label(network: total.network, asset: total.asset)))</span>"
                + "<span class=\"value amount\">\(e(assets.format(total.total, network: total.network, asset: total.asset)))</span>"
                + "<span class=\"sub\">\(total.payments) payment\(total.payments == 1 ? "" : "s")</span></div>"
        }
        let counted: [(OutcomeCategory, String)] = [(.paid, "ok"), (.refused, "bad"), (.upstreamFailed, "warn"), (.settlementFailed, "bad"),
                                                    (.unknown, "alert")]
        for (category, tone) in counted {
            let count = view.payments(category)
            html += "<div class=\"card count \(count > 0 ? tone : "")\" data-outcome=\"\(category.rawValue)\" data-payments=\"\(count)\">"
                + "<span class=\"label\">\(e(category.title))</span><span class=\"value\">\(count)</span></div>"
        }
        html += "</section>\n"

        // Charts, one per asset.
        for chart in view.charts {
            html += "<section class=\"panel\" aria-label=\"Chart\"><h2>Revenue over time · \(e(assets.label(network: chart.total.network, asset: chart.total.asset)))</h2>"
            html += RevenueChart(chart: chart, buckets: view.buckets, window: view.window, assets: assets).svg
            html += "<ul class=\"legend\">"
            for (k, series) in chart.series.enumerated() {
                let swatch = series.routeID == nil ? "ko" : "k\(k)"
                html += "<li><span class=\"swatch \(swatch)\"></span>\(e(series.routeID ?? "other routes")) "
                    + "<span class=\"num\">\(e(assets.format(series.total, network: chart.total.network, asset: chart.total.asset)))</span></li>"
            }
            html += "</ul></section>\n"
        }

        html += "<div class=\"columns\">"
        html += outcomes
        html += latency
        html += "</div>\n<div class=\"columns\">"
        html += topRoutes
        html += topPayers
        html += "</div>\n"
        html += recentPayments
        let from = LedgerReport.timestamp(view.query.from), to = LedgerReport.timestamp(now)
        html += "<footer>Window \(e(from)) – \(e(to)) (UTC) · bars of \(view.query.bucketMilliseconds / 60_000) min · "
            + "ledger: \(e(storeKind)) · amounts exact, in each asset's units · JSON: <a href=\"/revenue?window=\(view.window.rawValue)\">/revenue</a>, "
            + "<a href=\"/payments\">/payments</a></footer>\n"
        return html + "</main>\n"
    }

    private var attention: String {
        let e = Self.e
        guard view.attentionPayments > 0 else { return "" }
        var html = "<section class=\"attention\" role=\"alert\" data-payments=\"\(view.attentionPayments)\"><h2>"
            + "\(view.attentionPayments) payment\(view.attentionPayments == 1 ? "" : "s") with an unknown settlement outcome</h2>"
            + "<p>The transfer may or may not have happened; the client was told not to pay again. Reconciliation settles them "
            + "against the chain for networks with an RPC URL (<code>networks:</code>); check the others by hand.</p><ul>"
        for line in view.summary.attention {
            let amount = BigUInt(line.total.description) ?? 0
            html += "<li>\(line.payments) on \(e(assets.label(network: line.network, asset: line.asset))): "
                + "\(e(assets.format(amount, network: line.network, asset: line.asset))), oldest claimed \(e(Self.time(line.oldestClaimedAt)))</li>"
        }
        return html + "</ul></section>\n"
    }

    private var outcomes: String {
        let e = Self.e
        var html = "<section class=\"panel\"><h2>Outcomes</h2>"
        guard !view.outcomes.isEmpty else { return html + "<p class=\"none\">No payment in this window.</p></section>" }
        html += "<table class=\"outcomes\"><tbody>"
        for group in view.outcomes {
            let tone = switch group.category {
            case .paid: "ok"
            case .unknown: "alert"
            case .refused, .settlementFailed: "bad"
            default: "warn"
            }
            html += "<tr class=\"group \(tone)\" data-outcome=\"\(group.category.rawValue)\" data-payments=\"\(group.payments)\">"
                + "<th scope=\"row\">\(e(group.category.title))</th><td class=\"num\">\(group.payments)</td></tr>"
            if group.category.listsReasons {
                for (reason, count) in group.reasons {
                    html += "<tr class=\"reason\" data-outcome=\"\(group.category.rawValue)\" data-reason=\"\(e(reason ?? ""))\">"
                        + "<td><code>\(e(reason ?? "no reason recorded"))</code></td><td class=\"num\">\(count)</td></tr>"
                }
            }
        }
        return html + "</tbody></table></section>"
    }

    private var latency: String {
        let l = view.summary.latency
        var html = "<section class=\"panel\"><h2>Settlement latency</h2>"
        guard l.count > 0 else { return html + "<p class=\"none\">No settlement in this window.</p></section>" }
        html += "<dl class=\"latency\" data-count=\"\(l.count)\">"
        for (name, value) in [("p50", l.p50), ("p90", l.p90), ("p99", l.p99), ("max", l.max)] {
            html += "<div><dt>\(name)</dt><dd data-ms=\"\(value ?? 0)\">\(Self.milliseconds(value ?? 0))</dd></div>"
        }
        return html + "</dl><p class=\"sub\">From <code>settling</code> to <code>settled</code> (the facilitator's /settle), over \(l.count) settlement\(l.count == 1 ? "" : "s").</p></section>"
    }

    private var topRoutes: String {
        let e = Self.e
        var html = "<section class=\"panel\"><h2>Top routes</h2>"
        guard !view.routes.isEmpty else { return html + "<p class=\"none\">No revenue in this window.</p></section>" }
        html += "<div class=\"scroll\"><table><thead><tr><th>Route</th><th class=\"num\">Payments</th><th class=\"num\">Revenue</th><th>Share</th></tr></thead><tbody>"
        for route in view.routes.prefix(15) {
            let assetTotal = view.totals.first { $0.network == route.network && $0.asset == route.asset }?.total ?? 0
            let share = assetTotal == 0 ? 0 : Int(route.total * 100 / assetTotal)
            html += "<tr data-route=\"\(e(route.routeID))\" data-atomic=\"\(route.total)\"><td><code>\(e(route.routeID))</code></td>"
                + "<td class=\"num\">\(route.payments)</td><td class=\"num\">\(e(assets.format(route.total, network: route.network, asset: route.asset)))</td>"
                + "<td><span class=\"bar\"><span class=\"fill w\(share)\"></span></span> \(share)%</td></tr>"
        }
        return html + "</tbody></table></div></section>"
    }

    private var topPayers: String {
        let e = Self.e
        var html = "<section class=\"panel\"><h2>Top payers</h2>"
        guard !view.summary.payers.isEmpty else { return html + "<p class=\"none\">No revenue in this window.</p></section>" }
        html += "<div class=\"scroll\"><table><thead><tr><th>Payer</th><th class=\"num\">Payments</th><th class=\"num\">Paid</th></tr></thead><tbody>"
        for payer in view.summary.payers {
            let amount = BigUInt(payer.total.description) ?? 0
            html += "<tr data-payer=\"\(e(payer.payer))\" data-atomic=\"\(payer.total)\"><td>\(Self.addressLink(payer.payer, network: payer.network))</td>"
                + "<td class=\"num\">\(payer.payments)</td><td class=\"num\">\(e(assets.format(amount, network: payer.network, asset: payer.asset)))</td></tr>"
        }
        return html + "</tbody></table></div></section>"
    }

    private var recentPayments: String {
        let e = Self.e
        var html = "<section class=\"panel\"><h2>Recent payments</h2>"
        guard !recent.isEmpty else { return html + "<p class=\"none\">No payment in this window.</p></section>" }
        html += "<div class=\"scroll\"><table class=\"recent\"><thead><tr><th>Time (UTC)</th><th>Route</th><th>Payer</th><th class=\"num\">Amount</th>"
            + "<th>State</th><th>Transaction</th><th>Request id</th></tr></thead><tbody>"
        for row in recent {
            let amount = BigUInt(row.state.isSpent ? row.revenueAmount : row.offer.amount) ?? 0
            let detail = row.reason.map { " <code class=\"why\">\(e($0))</code>" } ?? ""
            html += "<tr data-state=\"\(e(row.state.rawValue))\"><td class=\"time\">\(e(Self.time(row.claimedAt)))</td>"
                + "<td><code>\(e(row.routeID))</code></td><td>\(Self.addressLink(row.key.payer, network: row.key.network))</td>"
                + "<td class=\"num\">\(e(assets.format(amount, network: row.key.network, asset: row.key.asset)))</td>"
                + "<td><span class=\"state \(Self.tone(row.state))\">\(e(row.state.rawValue.replacingOccurrences(of: "_", with: " ")))</span>\(detail)</td>"
                + "<td>\(row.transaction.map { Self.transactionLink($0, network: row.key.network) } ?? "")</td>"
                + "<td><code>\(e(row.requestID))</code></td></tr>"
        }
        return html + "</tbody></table></div></section>"
    }

    // MARK: Pieces

    static func tone(_ state: PaymentState) -> String {
        switch state {
        case .settled, .reconciledSettled: "ok"
        case .refused, .settleFailedAfterDelivery: "bad"
        case .unknown: "alert"
        case .released, .reconciledUnsettled: "warn"
        case .claimed, .verified, .forwarded, .settling, .settlementPending: "busy"
        }
    }

    static func time(_ ms: Int64) -> String {
        LedgerReport.timestamp(ms).prefix(19).replacingOccurrences(of: "T", with: " ")
    }

    static func milliseconds(_ ms: Int64) -> String {
        ms < 10_000 ? "\(ms) ms" : "\(ms / 1000).\(ms % 1000 / 100) s"
    }

    static func isHex(_ text: String, length: Int) -> Bool {
        text.utf8.count == length && text.hasPrefix("0x") && text.utf8.dropFirst(2).allSatisfy {
            ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) || ($0 >= 0x41 && $0 <= 0x46)
        }
    }

    /// The network's public explorer, when it has one.
    static func explorer(_ network: String) -> String? {
        Networks.evmChainId(network).flatMap { BlockExplorers.baseURL(chainID: $0) }.flatMap(PaywallEscape.linkURL)
    }

    /// The transaction hash, linked to the network's explorer when there is one and it is a hash.
    static func transactionLink(_ hash: String, network: String) -> String {
        let shown = "<code title=\"\(e(hash))\">\(e(AssetDirectory.short(hash)))</code>"
        guard isHex(hash, length: 66), let base = explorer(network) else { return shown }
        return "<a class=\"tx\" href=\"\(e(base))/tx/\(e(hash))\" target=\"_blank\" rel=\"noopener noreferrer\">\(shown)</a>"
    }

    static func addressLink(_ address: String, network: String) -> String {
        let shown = "<code title=\"\(e(address))\">\(e(AssetDirectory.short(address)))</code>"
        guard isHex(address, length: 42), let base = explorer(network) else { return shown }
        return "<a href=\"\(e(base))/address/\(e(address))\" target=\"_blank\" rel=\"noopener noreferrer\">\(shown)</a>"
    }

    // MARK: Style and script

    static let styleSheet: String = {
        var css = """
            :root{--bg:#f6f7f9;--fg:#16181d;--muted:#5d6472;--panel:#fff;--line:#e2e5ea;--ok:#1a7f37;--bad:#b42318;--warn:#9a6700;--alert:#c2410c;
            --k0:#2563eb;--k1:#0d9488;--k2:#c026d3;--k3:#ea580c;--k4:#65a30d;--ko:#94a3b8;color-scheme:light dark}
            @media (prefers-color-scheme:dark){:root{--bg:#0f1115;--fg:#e7e9ee;--muted:#9aa3b2;--panel:#171a21;--line:#2a2f3a;--ok:#4ade80;--bad:#f87171;
            --warn:#facc15;--alert:#fb923c;--k0:#60a5fa;--k1:#2dd4bf;--k2:#e879f9;--k3:#fb923c;--k4:#a3e635;--ko:#64748b}}
            *{box-sizing:border-box}body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
            header{display:flex;flex-wrap:wrap;align-items:center;gap:8px 16px;padding:12px 16px;border-bottom:1px solid var(--line);background:var(--panel)}
            h1{font-size:20px;margin:0 8px 0 0}h2{font-size:15px;margin:0 0 10px}
            .windows{display:flex;gap:4px}.windows a{padding:4px 10px;border:1px solid var(--line);border-radius:6px;color:var(--fg);text-decoration:none}
            .windows a[aria-current]{background:var(--fg);color:var(--bg);border-color:var(--fg)}
            .live{color:var(--muted);font-size:13px}.failed{display:none;color:var(--bad);font-size:13px}body.stale .failed{display:inline}
            .logout{margin-left:auto}button{font:inherit;padding:4px 10px;border:1px solid var(--line);border-radius:6px;background:var(--panel);color:var(--fg)}
            main{max-width:1200px;margin:0 auto;padding:16px;display:flex;flex-direction:column;gap:16px}
            .cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
            .card{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:10px 12px;display:flex;flex-direction:column;gap:2px}
            .card .label{color:var(--muted);font-size:12px}.card .value{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
            .card .sub,.sub{color:var(--muted);font-size:12px}.card.ok .value{color:var(--ok)}.card.bad .value{color:var(--bad)}.card.warn .value{color:var(--warn)}
            .card.alert{border-color:var(--alert)}.card.alert .value{color:var(--alert)}
            .attention{border:2px solid var(--alert);background:color-mix(in srgb,var(--alert) 12%,var(--panel));border-radius:10px;padding:12px 16px}
            .attention h2{color:var(--alert)}.attention p,.attention ul{margin:4px 0}
            .panel{background:var(--panel);border:1px solid var(--line);border-radius:10px;padding:12px 14px;min-width:0}
            .columns{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:16px}
            .chart{width:100%;height:auto;display:block}.chart .grid{stroke:var(--line)}.chart .base{stroke:var(--muted)}
            .chart .axis{fill:var(--muted);font-size:11px}
            .k0{fill:var(--k0);background:var(--k0)}.k1{fill:var(--k1);background:var(--k1)}.k2{fill:var(--k2);background:var(--k2)}
            .k3{fill:var(--k3);background:var(--k3)}.k4{fill:var(--k4);background:var(--k4)}.ko{fill:var(--ko);background:var(--ko)}
            .legend{list-style:none;padding:0;margin:8px 0 0;display:flex;flex-wrap:wrap;gap:4px 16px;font-size:13px}
            .swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
            table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
            th{color:var(--muted);font-weight:500;font-size:12px}.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
            .scroll{overflow-x:auto}.recent td{white-space:nowrap}code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;overflow-wrap:anywhere}
            .outcomes .group th{color:var(--fg);font-weight:600;font-size:14px}.outcomes .reason td:first-child{padding-left:24px}
            .outcomes .ok th{color:var(--ok)}.outcomes .bad th{color:var(--bad)}.outcomes .alert th{color:var(--alert)}
            .state{padding:1px 6px;border-radius:4px;font-size:12px;border:1px solid currentColor}.state.ok{color:var(--ok)}.state.bad{color:var(--bad)}
            .state.warn{color:var(--warn)}.state.alert{color:var(--alert);font-weight:600}.state.busy{color:var(--muted)}.why{color:var(--muted)}
            .latency{display:grid;grid-template-columns:repeat(4,1fr);gap:8px;margin:0}.latency dt{color:var(--muted);font-size:12px}
            .latency dd{margin:0;font-size:20px;font-weight:600;font-variant-numeric:tabular-nums}
            .bar{display:inline-block;width:60px;height:8px;background:var(--line);border-radius:4px;vertical-align:middle;overflow:hidden}
            .fill{display:block;height:100%;background:var(--k0)}.none{color:var(--muted)}a{color:var(--k0)}
            footer{color:var(--muted);font-size:12px}
            @media (max-width:600px){header{padding:10px}main{padding:10px}.card .value{font-size:18px}.latency dd{font-size:16px}
            .chart .axis{font-size:22px}}
            """
        // Share bars: a class per whole percent (inline style attributes would need 'unsafe-inline').
        css += (0...100).map { ".w\($0){width:\($0)%}" }.joined()
        return css
    }()

    static let script = """
        (function(){var box=document.getElementById('auto-refresh');
        function schedule(){setTimeout(refresh,\(refreshSeconds * 1000));}
        function refresh(){if(!box.checked||document.hidden){schedule();return;}
        var url=new URL(location.href);url.searchParams.set('part','main');
        fetch(url,{credentials:'same-origin',cache:'no-store',headers:{'Accept':'text/html'}}).then(function(r){
        if(r.status===401){location.reload();return null;}if(!r.ok)throw new Error('HTTP '+r.status);return r.text();}).then(function(text){
        if(text===null)return;var fresh=new DOMParser().parseFromString(text,'text/html').getElementById('dashboard');
        var old=document.getElementById('dashboard');if(fresh&&old){old.replaceWith(document.importNode(fresh,true));}
        document.body.classList.remove('stale');}).catch(function(){document.body.classList.add('stale');}).then(schedule);}
        schedule();})();
        """
}
