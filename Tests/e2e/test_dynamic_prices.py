"""Dynamic prices paid by the official Python SDK: a route priced by rules on a JSON body field and
the query, and a route priced by a pricing endpoint (a small HTTP server run by this test). The SDK
reads each request's 402, pays the amount it names, and the buyer loses exactly that on chain.
"""

from __future__ import annotations

import json
import threading

import pytest
import requests

from x402.http import x402HTTPClientSync

from rig.clients import decode_challenge, decode_settlement, requests_session, sync_client
from rig.constants import GATEWAY_YAML_HEAD, NETWORK
from rig.httpserver import Handler, Server

# $0.004 = 4000 units, $0.003 = 3000, $0.001 = 1000; the endpoint answers 2500 or 1500.
YAML = GATEWAY_YAML_HEAD + """\
routes:
  - match: "POST /v1/chat"
    price:
      rules:
        - { when: { body: model, is: "gpt-4*" }, price: "$0.004" }
        - { when: { query: tier, is: premium }, price: "$0.003" }
      default: "$0.001"
  - match: "POST /v1/quote"
    price:
      endpoint: "${E2E_PRICER_URL}"
      key: [body.size]
      max: "$0.01"
      timeout: 2s
unmatched: deny
"""


class Pricer:
    """The pricing endpoint: {"amount": "2500"} for {"size": "large"}, else "1500"; counts its calls."""

    def __init__(self):
        calls = self.calls = []

        class PricerHandler(Handler):
            def do_POST(self):
                asked = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                calls.append(asked)
                large = asked["key"]["body.size"] == "large"
                self.send_json(200, {"amount": "2500" if large else "1500"})

        self.server = Server(("127.0.0.1", 0), PricerHandler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/price"


@pytest.fixture(scope="module")
def pricer():
    p = Pricer()
    yield p
    p.server.shutdown()


@pytest.fixture(scope="module")
def gw(gateway_factory, pricer):
    return gateway_factory(YAML, name="gateway-dynamic-prices", env={"E2E_PRICER_URL": pricer.url})


def pay_and_check(gw, chain, upstream, buyer, payee, tag, path: str, body: dict, amount: int) -> None:
    url = f"{gw.url}{path}{'&' if '?' in path else '?'}{tag}"
    unpaid = requests.post(url, json=body, timeout=30)
    assert unpaid.status_code == 402, unpaid.text
    offer = decode_challenge(unpaid).accepts[0]
    assert (offer.scheme, offer.network, offer.amount) == ("exact", NETWORK, str(amount))

    before = {a: chain.balance_of(a) for a in (buyer.address, payee)}
    response = requests_session(buyer).post(url, json=body, timeout=60)
    assert response.status_code == 200, response.text
    settlement = decode_settlement(response)
    assert settlement.success and settlement.payer.lower() == buyer.address.lower()
    assert chain.receipt(settlement.transaction)["status"] == 1
    assert {a: chain.balance_of(a) - before[a] for a in before} == {buyer.address: -amount, payee: +amount}
    assert len(upstream.requests(path.split("?")[0], tag)) == 1


@pytest.mark.parametrize(("path", "body", "amount"), [
    ("/v1/chat", {"model": "gpt-4o", "prompt": "hi"}, 4000),
    ("/v1/chat?tier=premium", {"model": "small"}, 3000),
    ("/v1/chat", {"model": "small"}, 1000),
])
def test_rule_priced_route_charges_the_request_price(gw, chain, upstream, buyer, payee, tag, path, body, amount):
    pay_and_check(gw, chain, upstream, buyer, payee, tag, path, body, amount)


def test_endpoint_priced_route_charges_its_answer_once_asked(gw, chain, upstream, buyer, payee, tag, pricer):
    asked = len(pricer.calls)
    pay_and_check(gw, chain, upstream, buyer, payee, tag, "/v1/quote", {"size": "large"}, 2500)
    # The 402 asked the endpoint; the SDK's paid retry found the answer in the gateway's cache.
    assert len(pricer.calls) - asked <= 1
    assert all(call["route"] == "POST /v1/quote" for call in pricer.calls)


def test_cheaper_payment_for_a_dearer_request_is_refused(gw, chain, upstream, buyer, tag):
    """The SDK signs the default price ($0.001) for a cheap body, then the body is swapped for one
    the rules price at $0.004: refused with that request's 402, nothing moves, nothing forwarded."""
    url = f"{gw.url}/v1/chat?{tag}"
    cheap = decode_challenge(requests.post(url, json={"model": "small"}, timeout=30))
    assert cheap.accepts[0].amount == "1000"
    client = sync_client(buyer)
    headers = x402HTTPClientSync(client).encode_payment_signature_header(client.create_payment_payload(cheap))
    before = chain.balance_of(buyer.address)
    refused = requests.post(url, json={"model": "gpt-4-turbo"}, headers=headers, timeout=30)
    assert refused.status_code == 402, refused.text
    challenge = decode_challenge(refused)
    assert challenge.accepts[0].amount == "4000"
    assert "value_mismatch" in (challenge.error or "")
    assert chain.balance_of(buyer.address) == before
    assert upstream.requests("/v1/chat", tag) == []
