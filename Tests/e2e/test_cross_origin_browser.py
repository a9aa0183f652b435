"""A page on another origin pays through the gateway with `fetch` in headless Chromium, and reads
its receipt from script: the browser's CORS checks decide what the page may see.

The page (served from a second loopback port, so another origin than the gateway's) is a small
browser agent: it fetches the priced URL, reads the 402's PAYMENT-REQUIRED header, has the wallet
(rig/browser.py's EIP-1193 test wallet, which signs with the buyer's key) sign the EIP-3009
authorization, fetches again with PAYMENT-SIGNATURE (a CORS preflight first), and reports the
status, the body, PAYMENT-RESPONSE and Cache-Control as its script sees them. The payment is
judged on chain.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from rig.browser import BrowserWallet
from rig.constants import CHAIN_ID, GATEWAY_YAML_HEAD
from test_paywall_browser import browser  # noqa: F401 (a fixture)

CORS_YAML = GATEWAY_YAML_HEAD + """\
routes:
  - match: "GET /weather"
    price: "$0.001"
    mimeType: application/json
unmatched: deny
"""

AGENT_PAGE = """<!doctype html>
<html lang=en><head><meta charset=utf-8><title>Cross-origin agent</title></head>
<body><p id=state>idle</p>
<script>
function decodeHeader(v) {
  const bin = atob(v), bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return JSON.parse(new TextDecoder().decode(bytes));
}
function encodeHeader(value) {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}
function nonce() {
  const b = crypto.getRandomValues(new Uint8Array(32));
  return '0x' + Array.from(b, x => x.toString(16).padStart(2, '0')).join('');
}
async function buy(url) {
  const challenge = await fetch(url);
  const required = challenge.headers.get('PAYMENT-REQUIRED');
  if (challenge.status !== 402 || !required) return { step: 'challenge', status: challenge.status, required };
  const req = decodeHeader(required), offer = req.accepts[0];
  const [from] = await window.ethereum.request({ method: 'eth_requestAccounts' });
  const now = Math.floor(Date.now() / 1000);
  const auth = { from, to: offer.payTo, value: offer.amount, validAfter: String(now - 600),
                 validBefore: String(now + offer.maxTimeoutSeconds), nonce: nonce() };
  const typed = {
    types: {
      EIP712Domain: [{ name: 'name', type: 'string' }, { name: 'version', type: 'string' },
                     { name: 'chainId', type: 'uint256' }, { name: 'verifyingContract', type: 'address' }],
      TransferWithAuthorization: [{ name: 'from', type: 'address' }, { name: 'to', type: 'address' },
                                  { name: 'value', type: 'uint256' }, { name: 'validAfter', type: 'uint256' },
                                  { name: 'validBefore', type: 'uint256' }, { name: 'nonce', type: 'bytes32' }]
    },
    primaryType: 'TransferWithAuthorization',
    domain: { name: offer.extra.name, version: offer.extra.version, chainId: Number(offer.network.split(':')[1]),
              verifyingContract: offer.asset },
    message: auth
  };
  const signature = await window.ethereum.request({ method: 'eth_signTypedData_v4', params: [from, JSON.stringify(typed)] });
  const header = encodeHeader({ x402Version: 2, resource: req.resource, accepted: offer,
                                payload: { signature, authorization: auth } });
  let paid;
  try {
    paid = await fetch(url, { headers: { 'PAYMENT-SIGNATURE': header } });
  } catch (e) {
    return { step: 'paid', error: String(e) };
  }
  return { step: 'paid', status: paid.status, body: await paid.text(),
           receipt: paid.headers.get('PAYMENT-RESPONSE'), cacheControl: paid.headers.get('Cache-Control'),
           quota: paid.headers.get('X-Quota') };
}
window.startBuying = url => {
  window.outcome = null;
  buy(url).then(r => { window.outcome = r; }, e => { window.outcome = { error: String(e) }; });
};
</script></body></html>
"""


@pytest.fixture(scope="module")
def agent_origin():
    """The agent page on its own loopback port: another origin than the gateway's."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            body = AGENT_PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def cors_gateway(gateway_factory):
    return gateway_factory(CORS_YAML, name="gateway-cors")


def buy_from_page(browser, agent_origin, chain, buyer, url: str) -> dict:  # noqa: F811
    page = browser.new_page(BrowserWallet(buyer, chain, CHAIN_ID, start_chain_id=CHAIN_ID))
    try:
        page.navigate(f"{agent_origin}/agent.html", ready_js="document.readyState === 'complete' && !!window.startBuying")
        assert page.evaluate("location.origin") != url.split("/weather")[0]
        page.evaluate(f"window.startBuying({json.dumps(url)})")
        return page.wait_until("window.outcome", timeout=90)
    finally:
        browser.close_page(page)


def settled(chain, outcome: dict, buyer, payee, before: dict) -> dict:
    assert outcome.get("receipt"), f"the page could not read PAYMENT-RESPONSE: {outcome}"
    receipt = json.loads(base64.b64decode(outcome["receipt"]))
    assert receipt["success"] and receipt["payer"].lower() == buyer.address.lower()
    assert chain.receipt(receipt["transaction"])["status"] == 1
    assert chain.balance_of(buyer.address) == before[buyer.address] - 1000
    assert chain.balance_of(payee) == before[payee] + 1000
    return receipt


def test_a_page_on_another_origin_reads_its_receipt_when_the_upstream_says_nothing_about_cors(
        browser, agent_origin, cors_gateway, chain, buyer, payee, upstream, tag):  # noqa: F811
    url = f"{cors_gateway.url}/weather?{tag}"
    before = {a: chain.balance_of(a) for a in (buyer.address, payee)}
    outcome = buy_from_page(browser, agent_origin, chain, buyer, url)
    assert outcome.get("status") == 200, f"the browser refused the paid answer: {outcome}"
    assert json.loads(outcome["body"])["payer"] == buyer.address
    assert outcome["cacheControl"] == "private, no-store"
    settled(chain, outcome, buyer, payee, before)
    assert len(upstream.requests("/weather", tag)) == 1


def test_a_page_on_another_origin_reads_its_receipt_next_to_the_upstreams_exposed_headers(
        browser, agent_origin, cors_gateway, chain, buyer, payee, upstream, tag):  # noqa: F811
    # The upstream allows exactly the page's origin and exposes a header of its own.
    fields = [f"Access-Control-Allow-Origin: {agent_origin}", "Access-Control-Expose-Headers: X-Quota", "X-Quota: 41",
              "Vary: Origin"]
    url = f"{cors_gateway.url}/weather?{tag}&" + "&".join("h=" + quote(f, safe="") for f in fields)
    before = {a: chain.balance_of(a) for a in (buyer.address, payee)}
    outcome = buy_from_page(browser, agent_origin, chain, buyer, url)
    assert outcome.get("status") == 200, f"the browser refused the paid answer: {outcome}"
    assert outcome["quota"] == "41"
    settled(chain, outcome, buyer, payee, before)
