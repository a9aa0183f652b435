"""Route passes in a real headless Chromium: pay once through the paywall, read again.

The buyer pays for an article through the gateway's paywall page (real wallet signature, the rig's
facilitator settling on the local chain). The paid answer carries a pass; the page reloads and the
article shows as itself. Reloading, and opening another article of the same route, shows the
content with no second payment and no second transfer on chain. The second priced route still asks
for payment. Once the pass's short `for:` is over, the paywall is back.
"""

from __future__ import annotations

import base64
import json
import secrets
import time

import pytest
import requests

from rig.browser import Browser, BrowserWallet, chromium_binary
from rig.clients import requests_session
from rig.constants import CHAIN_ID, GATEWAY_YAML_HEAD

PASS_SECONDS = 30

PASS_YAML = GATEWAY_YAML_HEAD + f"""\
paywall:
  appName: Acme Media
passes:
  keys:
    - {{ id: e2e, secret: "${{E2E_PASS_KEY}}" }}
routes:
  - match: "GET /articles/*"
    price: "$0.01"
    description: Premium articles
    mimeType: text/html
    pass: {{ for: {PASS_SECONDS}s, scope: route }}
  - match: "GET /weather"
    price: "$0.001"
    description: Current weather
    mimeType: application/json
unmatched: deny
"""

ARTICLE_READY = "document.readyState === 'complete' && document.getElementById('article-body') && document.getElementById('article-body').textContent"
PAYWALL_READY = "document.readyState === 'complete' && !!document.getElementById('pay')"


@pytest.fixture(scope="module")
def browser(run_dir):
    binary = chromium_binary()
    if binary is None:
        pytest.fail("no Chromium found (scripts/e2e.sh installs Debian's chromium; or set E2E_CHROMIUM)")
    b = Browser.start(run_dir, binary)
    yield b
    b.stop()


@pytest.fixture(scope="module")
def pass_gateway(gateway_factory):
    return gateway_factory(PASS_YAML, name="gateway-passes", env={"E2E_PASS_KEY": secrets.token_urlsafe(32)})


def reload(page, ready_js: str, timeout: float = 30):
    """Reloads the page and waits for the new document (the old one is marked, so it cannot pass for it)."""
    page.evaluate("window.__beforeReload = true")
    page.send("Page.reload", {"ignoreCache": True})
    return page.wait_until(f"!window.__beforeReload && ({ready_js})", timeout)


def claims(token: str) -> dict:
    part = token.split(".")[2]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_pay_once_then_reload_and_read_without_paying_until_the_pass_expires(browser, pass_gateway, chain, facilitator, upstream,
                                                                             buyer, payee, tag):
    wallet = BrowserWallet(buyer, chain, CHAIN_ID, start_chain_id=CHAIN_ID)
    page = browser.new_page(wallet, isolated=True)
    try:
        url = f"{pass_gateway.url}/articles/one?{tag}"
        page.navigate(url, ready_js=PAYWALL_READY)
        assert page.responses[0]["status"] == 402
        assert page.evaluate("document.getElementById('pass-note').textContent") == \
            f"One payment opens this page and the others like it to you for {PASS_SECONDS} seconds."

        block = chain.block_number()
        before = chain.balance_of(buyer.address)
        settled = facilitator.stats()["settle"]
        page.click("#pay")
        page.wait_until(ARTICLE_READY, timeout=90)

        # Paid once, then the page reloaded itself: the article is the upstream's own document, at its URL.
        assert page.evaluate("document.title") == "Premium article"
        assert page.evaluate("location.href") == url
        assert buyer.address in page.evaluate("document.getElementById('article-body').textContent")
        assert facilitator.stats()["settle"] == settled + 1
        assert [(t["to"], t["value"]) for t in chain.transfers(block, sender=buyer.address)] == [(payee, 10_000)]
        paid = page.responses_matching(lambda r: r["url"] == url and "payment-pass" in r["headers"])
        assert len(paid) == 1 and "payment-response" in paid[0]["headers"]
        token = paid[0]["headers"]["payment-pass"]
        expires = claims(token)["exp"]
        assert claims(token)["sub"] == buyer.address and "p" not in claims(token)

        # The cookie as the browser keeps it: HttpOnly, SameSite=Lax, the route's path, not Secure over http.
        cookies = [c for c in page.send("Network.getCookies", {"urls": [url]})["cookies"] if c["name"].startswith("x402-pass-")]
        assert len(cookies) == 1
        assert cookies[0]["value"] == token and cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Lax"
        assert cookies[0]["path"] == "/articles/" and not cookies[0]["secure"]
        assert page.evaluate("document.cookie").find("x402-pass") == -1

        # Reload, and another article of the route: content, no payment, no transfer.
        reload(page, ARTICLE_READY)
        page.navigate(f"{pass_gateway.url}/articles/two?{tag}", ready_js=ARTICLE_READY)
        assert facilitator.stats()["settle"] == settled + 1
        assert wallet.methods().count("eth_signTypedData_v4") == 1
        assert chain.balance_of(buyer.address) == before - 10_000
        assert len(chain.transfers(block, sender=buyer.address)) == 1

        # The upstream got the payer on every request, the pass mark on the pass requests, never the pass.
        seen = upstream.requests("/articles/one", tag) + upstream.requests("/articles/two", tag)
        # (the paid GET, the page's HEAD check of the pass, its reload, the test's reload, the second article)
        assert [r["method"] for r in seen] == ["GET", "HEAD", "GET", "GET", "GET"]
        assert all(r["headers"].get("x-payment-payer") == buyer.address for r in seen)
        assert [r["headers"].get("x-payment-pass") for r in seen] == [None] + [str(expires)] * 4
        assert all("x402-pass" not in r["headers"].get("cookie", "") for r in seen)

        # The other priced route still asks for payment.
        page.navigate(f"{pass_gateway.url}/weather?{tag}", ready_js=PAYWALL_READY)
        assert page.evaluate("document.getElementById('heading').textContent") == "Payment required"
        assert upstream.requests("/weather", tag) == []

        # After the pass's time, the article's paywall is back; nothing was paid in between.
        time.sleep(max(0.0, expires - time.time()) + 1)
        page.navigate(url, ready_js=PAYWALL_READY)
        assert page.evaluate("document.getElementById('heading').textContent") == "Payment required"
        assert len(chain.transfers(block, sender=buyer.address)) == 1
        assert facilitator.stats()["settle"] == settled + 1
    finally:
        browser.close_page(page)


def test_an_agent_gets_the_pass_in_a_header_and_sends_it_back_as_a_bearer(pass_gateway, upstream, buyer, tag):
    """The official SDK's client pays; the pass comes back in PAYMENT-PASS and opens the route as a bearer token."""
    session = requests_session(buyer)
    url = f"{pass_gateway.url}/articles/agent?{tag}"
    paid = session.get(url, timeout=60)
    assert paid.status_code == 200 and "PAYMENT-RESPONSE" in paid.headers
    token = paid.headers["PAYMENT-PASS"]
    again = requests.get(f"{pass_gateway.url}/articles/agent-2?{tag}", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert again.status_code == 200 and buyer.address in again.text
    assert "PAYMENT-RESPONSE" not in again.headers
    forged = token[:-10] + ("A" if token[-10] != "A" else "B") + token[-9:]  # one character of the MAC
    refused = requests.get(f"{pass_gateway.url}/articles/agent-2?{tag}", headers={"Authorization": f"Bearer {forged}"}, timeout=10)
    assert refused.status_code == 402
    assert [r["method"] for r in upstream.requests("/articles/agent", tag)] == ["GET"]
    opened = upstream.requests("/articles/agent-2", tag)
    assert len(opened) == 1 and opened[0]["headers"]["x-payment-pass"] == str(claims(token)["exp"])
    assert "authorization" not in opened[0]["headers"]
