"""The browser paywall in a real headless Chromium, paying through the gateway with the rig's real
facilitator and chain.

The page under test is exactly what the gateway serves; the only thing the test provides is the
wallet (rig/browser.py): an EIP-1193 provider injected before the page's scripts run, which signs
with the buyer's key. Payment success is judged on chain (the token moved buyer → payee in the
transaction the gateway reported) and by the upstream having served the paid request.

Screenshots land in the run directory; with E2E_SCREENSHOT_DIR set (e.g. docs/images) they are also
written there: paywall-initial.png, paywall-paid.png, paywall-rejected.png.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import requests

from rig.browser import Browser, BrowserWallet, chromium_binary
from rig.constants import CHAIN_ID, GATEWAY_YAML_HEAD

PAYWALL_YAML = GATEWAY_YAML_HEAD + """\
paywall:
  appName: Acme Media
routes:
  - match: "GET /article"
    price: "$0.01"
    description: Today's premium article
    mimeType: text/html
  - match: "GET /weather"
    price: "$0.001"
    description: Current weather
    mimeType: application/json
unmatched: deny
"""

BROWSER_HEADERS = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36",
}


@pytest.fixture(scope="module")
def browser(run_dir):
    binary = chromium_binary()
    if binary is None:
        pytest.fail("no Chromium found (scripts/e2e.sh installs Debian's chromium; or set E2E_CHROMIUM)")
    b = Browser.start(run_dir, binary)
    yield b
    b.stop()


@pytest.fixture(scope="module")
def paywall_gateway(gateway_factory):
    return gateway_factory(PAYWALL_YAML, name="gateway-paywall")


def save_screenshot(page, run_dir: Path, name: str) -> None:
    path = page.screenshot(run_dir / "screenshots" / name)
    target = os.environ.get("E2E_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / name)


def status_text(page) -> str:
    return page.evaluate("document.getElementById('status').textContent")


def csp_problems(page) -> list[str]:
    return [line for line in page.console if "Content Security Policy" in line or "Refused to" in line]


def test_browser_and_api_clients_get_their_402(paywall_gateway, tag):
    url = f"{paywall_gateway.url}/weather?{tag}"
    html = requests.get(url, headers=BROWSER_HEADERS, timeout=10)
    api = requests.get(url, headers={"Accept": "application/json"}, timeout=10)
    assert html.status_code == api.status_code == 402
    assert html.headers["Content-Type"] == "text/html; charset=utf-8"
    assert html.headers["PAYMENT-REQUIRED"] == api.headers["PAYMENT-REQUIRED"]
    assert "script-src 'nonce-" in html.headers["Content-Security-Policy"]
    assert api.headers["Content-Type"] == "application/json"
    assert json.loads(api.content)["x402Version"] == 1
    assert len(html.content) <= 40 * 1024


def test_pays_in_the_browser_and_lands_on_the_upstream_page(browser, paywall_gateway, chain, facilitator, upstream,
                                                            buyer, payee, tag, run_dir):
    wallet = BrowserWallet(buyer, chain, CHAIN_ID)
    page = browser.new_page(wallet)
    try:
        url = f"{paywall_gateway.url}/article?{tag}"
        page.navigate(url, ready_js="document.readyState === 'complete' && !!document.getElementById('pay')")
        first = page.responses[0]
        assert first["status"] == 402 and first["headers"]["content-type"].startswith("text/html")
        assert page.evaluate("document.getElementById('amount').textContent + ' ' + document.getElementById('symbol').textContent") == "0.01 USDC"
        assert page.evaluate("document.getElementById('network').textContent") == "Base Sepolia"
        assert page.evaluate("document.getElementById('pay').disabled") is False
        save_screenshot(page, run_dir, "paywall-initial.png")

        before = {a: chain.balance_of(a) for a in (buyer.address, payee)}
        block = chain.block_number()
        stats = facilitator.stats()
        page.click("#pay")
        page.wait_until("document.getElementById('article-body') && document.getElementById('article-body').textContent", timeout=90)

        # The upstream's own page replaced the paywall, and names the payer the gateway verified.
        assert page.evaluate("document.title") == "Premium article"
        assert buyer.address in page.evaluate("document.getElementById('article-body').textContent")
        # The wallet was asked to connect, switch from chain 1, read the balance, then sign once.
        methods = wallet.methods()
        assert methods[0] == "eth_requestAccounts"
        assert "wallet_switchEthereumChain" in methods
        assert methods.index("eth_call") < methods.index("eth_signTypedData_v4")
        assert methods.count("eth_signTypedData_v4") == 1
        signed = wallet.signed[0]
        assert signed["domain"] == {"name": "USDC", "version": "2", "chainId": CHAIN_ID,
                                    "verifyingContract": "0x036CbD53842c5426634e7929541eC2318f3dCF7e"}
        assert signed["message"]["value"] == "10000" and signed["message"]["to"] == payee
        # The real facilitator verified and settled it, and the money moved on chain.
        after = facilitator.stats()
        assert after["verify"] > stats["verify"] and after["settle"] == stats["settle"] + 1
        assert chain.balance_of(buyer.address) == before[buyer.address] - 10_000
        assert chain.balance_of(payee) == before[payee] + 10_000
        moved = chain.transfers(block, sender=buyer.address)
        assert [(t["to"], t["value"]) for t in moved] == [(payee, 10_000)]
        paid = page.responses_matching(lambda r: r["url"] == url and r["status"] == 200)
        assert len(paid) == 1 and "payment-response" in paid[0]["headers"]
        assert [r["headers"].get("x-payment-payer") for r in upstream.requests("/article", tag)] == [buyer.address]
        assert csp_problems(page) == []
    finally:
        browser.close_page(page)


def test_json_answer_is_shown_with_the_transaction(browser, paywall_gateway, chain, upstream, buyer, payee, tag, run_dir):
    wallet = BrowserWallet(buyer, chain, CHAIN_ID, start_chain_id=CHAIN_ID)
    page = browser.new_page(wallet)
    try:
        page.navigate(f"{paywall_gateway.url}/weather?{tag}",
                      ready_js="document.readyState === 'complete' && !!document.getElementById('pay')")
        before = chain.balance_of(payee)
        block = chain.block_number()
        page.click("#pay")
        text = page.wait_until("!document.getElementById('result').hidden && document.getElementById('result').textContent", timeout=90)
        body = json.loads(text)
        assert body["message"] == "hello from upstream" and body["payer"] == buyer.address
        assert "\n  " in text  # pretty-printed
        status = status_text(page)
        assert status.startswith("Paid \u2014 transaction 0x")
        transaction = status.split("transaction ", 1)[1].rstrip(".")
        assert chain.receipt(transaction)["status"] == 1
        assert [t["tx"].lower() for t in chain.transfers(block, sender=buyer.address)] == [transaction.lower()]
        assert chain.balance_of(payee) == before + 1_000
        assert page.evaluate("document.getElementById('pay').hidden") is True
        assert page.evaluate("document.getElementById('heading').textContent") == "Payment complete"
        assert "wallet_switchEthereumChain" not in wallet.methods()
        assert csp_problems(page) == []
        save_screenshot(page, run_dir, "paywall-paid.png")
    finally:
        browser.close_page(page)


def test_rejected_signature_shows_the_message_and_charges_nothing(browser, paywall_gateway, chain, facilitator, upstream,
                                                                  buyer, tag, run_dir):
    wallet = BrowserWallet(buyer, chain, CHAIN_ID, reject=("eth_signTypedData_v4",))
    page = browser.new_page(wallet)
    try:
        page.navigate(f"{paywall_gateway.url}/article?{tag}",
                      ready_js="document.readyState === 'complete' && !!document.getElementById('pay')")
        before = chain.balance_of(buyer.address)
        stats = facilitator.stats()
        page.click("#pay")
        message = page.wait_until("document.getElementById('status').classList.contains('err') && document.getElementById('status').textContent")
        assert message == "You rejected the request in your wallet. Nothing was paid."
        assert page.evaluate("document.getElementById('pay').disabled") is False  # ready for another try
        assert wallet.methods().count("eth_signTypedData_v4") == 1
        assert facilitator.stats()["verify"] == stats["verify"]
        assert chain.balance_of(buyer.address) == before
        assert upstream.requests("/article", tag) == []
        save_screenshot(page, run_dir, "paywall-rejected.png")
    finally:
        browser.close_page(page)


def test_insufficient_balance_is_caught_before_signing(browser, paywall_gateway, chain, poor_buyer, upstream, tag):
    wallet = BrowserWallet(poor_buyer, chain, CHAIN_ID)
    page = browser.new_page(wallet)
    try:
        page.navigate(f"{paywall_gateway.url}/weather?{tag}",
                      ready_js="document.readyState === 'complete' && !!document.getElementById('pay')")
        page.click("#pay")
        message = page.wait_until("document.getElementById('status').classList.contains('err') && document.getElementById('status').textContent")
        assert message.startswith("Insufficient balance: this costs 0.001 USDC")
        assert "holds 0 USDC on Base Sepolia" in message
        assert "eth_signTypedData_v4" not in wallet.methods()
        assert upstream.requests("/weather", tag) == []
    finally:
        browser.close_page(page)


def test_a_refused_payment_shows_the_reason_from_the_402(browser, paywall_gateway, chain, facilitator, buyer, upstream, tag):
    """The wallet signs over the wrong EIP-712 domain (a token name the offer does not name): the
    gateway's own pre-verification refuses it, and the page shows the reason from the 402."""
    wallet = BrowserWallet(buyer, chain, CHAIN_ID, start_chain_id=CHAIN_ID)
    original = wallet.handle

    def tampering(method, params):
        if method == "eth_signTypedData_v4":
            typed = json.loads(params[1])
            typed["domain"]["name"] = "Not USDC"
            params = [params[0], json.dumps(typed)]
        return original(method, params)

    wallet.handle = tampering
    page = browser.new_page(wallet)
    try:
        page.navigate(f"{paywall_gateway.url}/weather?{tag}",
                      ready_js="document.readyState === 'complete' && !!document.getElementById('pay')")
        page.click("#pay")
        message = page.wait_until("document.getElementById('status').classList.contains('err') && document.getElementById('status').textContent")
        assert message == "Payment refused: the payment signature does not match its sender. You were not charged."
        assert upstream.requests("/weather", tag) == []
    finally:
        browser.close_page(page)


def test_without_a_wallet_the_page_says_so(browser, paywall_gateway, upstream, tag):
    page = browser.new_page(None)
    try:
        page.navigate(f"{paywall_gateway.url}/weather?{tag}",
                      ready_js="document.readyState === 'complete' && !!document.getElementById('pay')")
        assert page.evaluate("typeof window.ethereum") == "undefined"
        page.click("#pay")
        message = page.wait_until("document.getElementById('status').classList.contains('err') && document.getElementById('status').textContent")
        assert message.startswith("No wallet found.")
        assert upstream.requests("/weather", tag) == []
    finally:
        browser.close_page(page)
