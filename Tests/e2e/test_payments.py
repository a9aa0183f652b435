"""Scenarios 1–8 of the end-to-end suite: the official x402 SDK pays through the gateway, the SDK's
facilitator settles on the local chain, and every test checks the money on chain, not only HTTP.

Prices (see conftest.GATEWAY_YAML): /weather, /cheap, /boom $0.001 = 1000 units; /dear $0.01 =
10000; /events $0.002 = 2000 with `settlement: before`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time

import httpx
import pytest
import requests

from rig.clients import decode_challenge, decode_settlement, httpx_session, requests_session, signed_payment
from rig.constants import NETWORK, NETWORK_V1, USDC_ADDRESS


class Ledger:
    """Balances and the chain height before an action, to check exact deltas after it."""

    def __init__(self, chain, *addresses: str):
        self.chain, self.addresses = chain, addresses
        self.block = chain.block_number()
        self.before = {a: chain.balance_of(a) for a in addresses}

    def deltas(self) -> dict[str, int]:
        return {a: self.chain.balance_of(a) - self.before[a] for a in self.addresses}

    def transfers(self, sender: str | None = None) -> list[dict]:
        return self.chain.transfers(self.block, sender=sender)


def payment_nonce(headers: dict[str, str]) -> str:
    value = headers.get("PAYMENT-SIGNATURE") or headers["X-PAYMENT"]
    return json.loads(base64.b64decode(value))["payload"]["authorization"]["nonce"]


def assert_settled_on_chain(chain, settlement, ledger: Ledger, buyer: str, payee: str, amount: int, network: str) -> None:
    assert settlement.success, settlement
    assert settlement.network == network
    assert settlement.payer.lower() == buyer.lower()
    receipt = chain.receipt(settlement.transaction)
    assert receipt["status"] == 1
    assert ledger.deltas() == {buyer: -amount, payee: +amount}
    assert [(t["from"], t["to"], t["value"], t["tx"].lower()) for t in ledger.transfers(sender=buyer)] == [
        (buyer, payee, amount, settlement.transaction.lower())
    ]


async def _httpx_get(account, url: str) -> httpx.Response:
    async with httpx_session(account, timeout=60) as client:
        response = await client.get(url)
        await response.aread()
        return response


# --- 1. unpaid → 402 the SDK decodes; paid → 200, PAYMENT-RESPONSE, money moved exactly ----------------


@pytest.mark.parametrize("sdk_client", ["httpx", "requests"])
def test_1_v2_client_pays_and_money_moves(sdk_client, gateway, chain, upstream, buyer, payee, tag):
    url = f"{gateway.url}/weather?{tag}"
    unpaid = requests.get(url, timeout=30)
    assert unpaid.status_code == 402
    challenge = decode_challenge(unpaid)
    assert challenge.x402_version == 2
    offer = challenge.accepts[0]
    assert (offer.scheme, offer.network, offer.amount) == ("exact", NETWORK, "1000")
    assert (offer.asset.lower(), offer.pay_to.lower()) == (USDC_ADDRESS.lower(), payee.lower())
    assert (offer.extra or {}).get("name") == "USDC" and offer.extra.get("version") == "2"
    assert upstream.requests("/weather", tag) == []

    ledger = Ledger(chain, buyer.address, payee)
    if sdk_client == "httpx":
        response = asyncio.run(_httpx_get(buyer, url))
    else:
        response = requests_session(buyer).get(url, timeout=60)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["path"], body["message"]) == ("/weather", "hello from upstream")
    assert body["payer"].lower() == buyer.address.lower()
    assert_settled_on_chain(chain, decode_settlement(response), ledger, buyer.address, payee, 1000, NETWORK)
    assert len(upstream.requests("/weather", tag)) == 1


# --- 2. v1 client: X-PAYMENT in, X-PAYMENT-RESPONSE out -----------------------------------------------


def test_2_v1_client_pays_with_x_payment(gateway, chain, upstream, buyer, payee, tag):
    url = f"{gateway.url}/weather?{tag}"
    unpaid = requests.get(url, timeout=30)
    assert unpaid.status_code == 402
    challenge = decode_challenge(unpaid, version=1)
    assert challenge.x402_version == 1
    assert (challenge.accepts[0].network, challenge.accepts[0].max_amount_required) == (NETWORK_V1, "1000")

    headers = signed_payment(buyer, url, version=1)
    assert list(headers) == ["X-PAYMENT"]
    ledger = Ledger(chain, buyer.address, payee)
    response = requests.get(url, headers=headers, timeout=60)

    assert response.status_code == 200, response.text
    assert response.json()["path"] == "/weather"
    assert "X-PAYMENT-RESPONSE" in response.headers
    assert "PAYMENT-RESPONSE" not in response.headers
    assert_settled_on_chain(chain, decode_settlement(response), ledger, buyer.address, payee, 1000, NETWORK_V1)
    assert len(upstream.requests("/weather", tag)) == 1


# --- 3. replay: one payment, one delivery, one transfer ---------------------------------------------------


def test_3_replayed_sequentially_delivers_once(gateway, chain, upstream, buyer, payee, tag):
    url = f"{gateway.url}/weather?{tag}"
    headers = signed_payment(buyer, url)
    ledger = Ledger(chain, buyer.address, payee)

    first = requests.get(url, headers=headers, timeout=60)
    assert first.status_code == 200, first.text
    for _ in range(3):
        again = requests.get(url, headers=headers, timeout=60)
        assert again.status_code == 402, again.text
        assert "used" in (decode_challenge(again).error or "")

    assert_settled_on_chain(chain, decode_settlement(first), ledger, buyer.address, payee, 1000, NETWORK)
    assert len(upstream.requests("/weather", tag)) == 1


def test_3_replayed_20x_concurrently_delivers_once(gateway, chain, upstream, buyer, payee, tag):
    url = f"{gateway.url}/weather?{tag}"
    headers = signed_payment(buyer, url)
    ledger = Ledger(chain, buyer.address, payee)

    async def burst(n: int) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            return await asyncio.gather(*(client.get(url, headers=headers) for _ in range(n)))

    responses = asyncio.run(burst(20))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [402] * 19, statuses
    delivered = next(r for r in responses if r.status_code == 200)
    assert_settled_on_chain(chain, decode_settlement(delivered), ledger, buyer.address, payee, 1000, NETWORK)
    assert len(upstream.requests("/weather", tag)) == 1
    assert chain.authorization_used(buyer.address, payment_nonce(headers))


# --- 4. the upstream fails: its 500 is relayed and nothing is charged --------------------------------


def test_4_upstream_500_is_relayed_and_not_charged(gateway, chain, upstream, buyer, payee, tag):
    url = f"{gateway.url}/boom?{tag}"
    headers = signed_payment(buyer, url)
    ledger = Ledger(chain, buyer.address, payee)

    response = requests.get(url, headers=headers, timeout=60)

    assert response.status_code == 500
    assert response.json() == {"error": "upstream exploded"}
    assert "PAYMENT-RESPONSE" not in response.headers
    assert len(upstream.requests("/boom", tag)) == 1
    assert ledger.deltas() == {buyer.address: 0, payee: 0}
    assert ledger.transfers(sender=buyer.address) == []
    assert not chain.authorization_used(buyer.address, payment_nonce(headers))


# --- 5. a buyer without funds: 402 with the facilitator's reason, upstream untouched --------------------


def test_5_buyer_without_funds_is_refused_with_facilitator_reason(gateway, chain, upstream, poor_buyer, payee, tag):
    url = f"{gateway.url}/weather?{tag}"
    assert chain.balance_of(poor_buyer.address) == 0
    ledger = Ledger(chain, poor_buyer.address, payee)

    headers = signed_payment(poor_buyer, url)
    response = requests.get(url, headers=headers, timeout=60)
    assert response.status_code == 402
    assert decode_challenge(response).error == "invalid_exact_evm_insufficient_balance"

    # The SDK's own client gets the same answer (it pays once, then returns the 402).
    sdk_response = requests_session(poor_buyer).get(url, timeout=60)
    assert sdk_response.status_code == 402
    assert decode_challenge(sdk_response).error == "invalid_exact_evm_insufficient_balance"

    assert upstream.requests("/weather", tag) == []
    assert ledger.deltas() == {poor_buyer.address: 0, payee: 0}
    assert ledger.transfers(sender=poor_buyer.address) == []


# --- 6. a payment for a cheaper route does not buy a dearer one --------------------------------------


def test_6_cheaper_routes_payment_is_refused_on_dearer_route(gateway, chain, upstream, buyer, payee, tag):
    cheap, dear = f"{gateway.url}/cheap?{tag}", f"{gateway.url}/dear?{tag}"
    headers = signed_payment(buyer, cheap)  # 1000 units
    ledger = Ledger(chain, buyer.address, payee)

    response = requests.get(dear, headers=headers, timeout=60)  # priced 10000
    assert response.status_code == 402
    challenge = decode_challenge(response)
    assert challenge.accepts[0].amount == "10000"
    assert challenge.error in ("invalid_exact_evm_payload_authorization_value_mismatch", "invalid_payment_requirements")
    assert upstream.requests("/dear", tag) == []
    assert ledger.deltas() == {buyer.address: 0, payee: 0}
    assert ledger.transfers(sender=buyer.address) == []
    assert not chain.authorization_used(buyer.address, payment_nonce(headers))

    # Refused, not burnt: the payment still buys what it was made for.
    response = requests.get(cheap, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    assert_settled_on_chain(chain, decode_settlement(response), ledger, buyer.address, payee, 1000, NETWORK)


# --- 7. facilitator down: fail closed; back up: payments work again --------------------------------------


def test_7_facilitator_down_fails_closed_then_recovers(gateway, facilitator, chain, upstream, buyer, payee, tag):
    url = f"{gateway.url}/weather?{tag}"
    headers = signed_payment(buyer, url)
    ledger = Ledger(chain, buyer.address, payee)

    facilitator.stop()
    try:
        response = requests.get(url, headers=headers, timeout=60)
        assert 500 <= response.status_code < 600, response.text
        assert response.json()["error"].startswith("facilitator_")
        assert response.json()["message"]
        sdk_response = requests_session(buyer).get(url, timeout=60)
        assert 500 <= sdk_response.status_code < 600
        # A fresh, unpaid request still gets its 402: the challenge needs no facilitator.
        assert requests.get(url, timeout=30).status_code == 402
        assert upstream.requests("/weather", tag) == []
        assert ledger.deltas() == {buyer.address: 0, payee: 0}
    finally:
        facilitator.start()

    # Nothing was charged, so the very same payment goes through once the facilitator is back.
    response = requests.get(url, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    assert_settled_on_chain(chain, decode_settlement(response), ledger, buyer.address, payee, 1000, NETWORK)
    # And the SDK client pays normally again.
    again = requests_session(buyer).get(url, timeout=60)
    assert again.status_code == 200, again.text
    assert len(upstream.requests("/weather", tag)) == 2


def _stop_facilitator_mid_settlement(facilitator, url: str, headers: dict) -> requests.Response:
    """Sends a paid request and stops the facilitator while it is settling it (before broadcast)."""
    facilitator.set_settle_delay(5)
    settles_before = len(facilitator.stats()["settle_started"])
    result: dict = {}

    def send():
        result["response"] = requests.get(url, headers=headers, timeout=60)

    sender = threading.Thread(target=send)
    try:
        sender.start()
        deadline = time.monotonic() + 30
        while len(facilitator.stats()["settle_started"]) == settles_before:
            assert time.monotonic() < deadline, "the gateway never asked the facilitator to settle"
            time.sleep(0.05)
        facilitator.stop()
        sender.join(60)
    finally:
        if not facilitator.running:
            facilitator.start()  # a fresh process: no settle delay
    return result["response"]


def test_7_facilitator_stopped_mid_settlement_fails_closed(gateway, facilitator, chain, upstream, buyer, payee, tag):
    url = f"{gateway.url}/weather?{tag}"
    headers = signed_payment(buyer, url)
    ledger = Ledger(chain, buyer.address, payee)

    response = _stop_facilitator_mid_settlement(facilitator, url, headers)

    assert 500 <= response.status_code < 600, response.text
    assert response.json()["error"].startswith("facilitator_")
    assert "hello from upstream" not in response.text  # the upstream answered, but nothing unpaid is delivered
    assert "PAYMENT-RESPONSE" not in response.headers
    assert len(upstream.requests("/weather", tag)) == 1
    assert ledger.deltas() == {buyer.address: 0, payee: 0}
    assert ledger.transfers(sender=buyer.address) == []
    assert not chain.authorization_used(buyer.address, payment_nonce(headers))


@pytest.mark.xfail(strict=True, reason=(
    "gateway bug: when a settle call fails (facilitator gone mid-settlement) the 502 tells the client "
    "'retry later with the same payment', but the replay guard marks the payment spent, so that retry "
    "gets 402 payment_already_used although nothing was transferred on chain"))
def test_7_same_payment_retried_after_unknown_settlement_outcome_is_served(gateway, facilitator, chain, upstream, buyer, payee, tag):
    url = f"{gateway.url}/weather?{tag}"
    headers = signed_payment(buyer, url)
    ledger = Ledger(chain, buyer.address, payee)
    first = _stop_facilitator_mid_settlement(facilitator, url, headers)
    assert "retry later with the same payment" in first.json()["message"]

    retry = requests.get(url, headers=headers, timeout=60)

    assert retry.status_code == 200, retry.text
    assert_settled_on_chain(chain, decode_settlement(retry), ledger, buyer.address, payee, 1000, NETWORK)


# --- 8. settlement: before on an SSE route: settled once, then events stream as produced ---------------


def test_8_sse_settle_before_streams_events_as_produced(gateway, facilitator, chain, upstream, buyer, payee, tag):
    events, interval = 5, 0.6
    url = f"{gateway.url}/events?{tag}&n={events}&interval={interval}"
    ledger = Ledger(chain, buyer.address, payee)
    started = time.time()

    async def consume():
        received = []
        async with httpx_session(buyer, timeout=60) as client:
            async with client.stream("GET", url) as response:
                head = (response.status_code, dict(response.headers))
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        received.append((time.time(), json.loads(line[5:])))
        return head, received

    (status, headers), received = asyncio.run(consume())
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert [data["i"] for _, data in received] == list(range(events))
    # Incremental: each event reaches the client soon after the upstream produced it, well before
    # the next one exists, and the arrivals are spread like the production times.
    lags = [arrived - data["produced"] for arrived, data in received]
    assert max(lags) < interval * 0.75, lags
    assert received[-1][0] - received[0][0] >= (events - 1) * interval * 0.8

    settlement = decode_settlement(httpx.Response(200, headers=headers))
    assert_settled_on_chain(chain, settlement, ledger, buyer.address, payee, 2000, NETWORK)
    # `before`: the settlement had finished when the upstream was asked for the stream.
    [called] = upstream.requests("/events", tag)
    settled = [t for t in facilitator.stats()["settle_finished"] if t >= started]
    assert len(settled) == 1 and settled[0] <= called["time"]
