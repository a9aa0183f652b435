import Paywall

/// The admin listener's sign-in form (when `admin.token` is set): one field, posted to `/login`,
/// which answers with the session cookie. Self-contained, under the same kind of CSP as the dashboard.
enum AdminLoginPage {
    static func contentSecurityPolicy(nonce: String) -> String {
        "default-src 'none'; style-src 'nonce-\(nonce)'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    }

    static func render(nonce: String, failed: Bool) -> String {
        let e = PaywallEscape.html
        return """
            <!doctype html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width,initial-scale=1">
            <meta name="robots" content="noindex">
            <meta name="color-scheme" content="light dark">
            <title>Sign in · x402-gateway</title>
            <style nonce="\(e(nonce))">
            :root{--bg:#f6f7f9;--fg:#16181d;--muted:#5d6472;--panel:#fff;--line:#e2e5ea;--bad:#b42318;--accent:#2563eb}
            @media (prefers-color-scheme:dark){:root{--bg:#0f1115;--fg:#e7e9ee;--muted:#9aa3b2;--panel:#171a21;--line:#2a2f3a;--bad:#f87171;--accent:#60a5fa}}
            *{box-sizing:border-box}body{margin:0;min-height:100vh;display:grid;place-items:center;background:var(--bg);color:var(--fg);
            font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;padding:16px}
            form{background:var(--panel);border:1px solid var(--line);border-radius:12px;padding:24px;width:100%;max-width:360px;display:flex;flex-direction:column;gap:12px}
            h1{font-size:20px;margin:0}p{margin:0;color:var(--muted);font-size:13px}.error{color:var(--bad)}
            input{font:inherit;padding:8px 10px;border:1px solid var(--line);border-radius:8px;background:var(--bg);color:var(--fg)}
            button{font:inherit;padding:8px 12px;border:0;border-radius:8px;background:var(--accent);color:#fff;font-weight:600}
            </style>
            </head>
            <body>
            <form method="post" action="/login">
            <h1>x402-gateway admin</h1>
            <p>The revenue dashboard needs the admin token (<code>admin.token</code>).</p>
            \(failed ? "<p class=\"error\" role=\"alert\" id=\"login-error\">That is not the admin token.</p>" : "")
            <input type="password" name="token" id="token" autocomplete="current-password" required autofocus aria-label="Admin token">
            <button type="submit">Sign in</button>
            </form>
            </body>
            </html>

            """
    }
}
