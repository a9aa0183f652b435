"""payment-identifier (the x402 extension) through the gateway: the official SDK client adds the id
with `x402.extensions.payment_identifier`, the SDK's facilitator settles on the local chain, and
the tests check the chain, the upstream and the facilitator, not only HTTP.

Routes (gateway-payid): /unique (a body no two upstream answers share) offers the extension,
/weather requires it; both $0.001 = 1000 units, `after-success`.
"""

from __future__ import annotations

import json
import threading
import time

import requests
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    append_payment_identifier_to_extensions,
    generate_payment_id,
    is_payment_identifier_required,
)
from x402.http import x402HTTPClientSync

from rig.clients import decode_challenge, decode_settlement, signed_payment, sync_client
from rig.constants import GATEWAY_YAML_HEAD, NETWORK
from test_instances import fresh_database, postgres_server  # noqa: F401 (a fixture)
from test_ledger import restart
from test_payments import Ledger, assert_settled_on_chain, payment_nonce

PAYID_YAML = GATEWAY_YAML_HEAD + """\
paymentIdentifier: optional
routes:
  - match: "GET /unique"
    price: "$0.001"
  - match: "GET /weather"
    price: "$0.001"
    paymentIdentifier: required
unmatched: deny
"""


def identified_payment(account, url: str, payment_id: str) -> dict[str, str]:
    """The PAYMENT-SIGNATURE the SDK client sends for `url`'s 402 with `payment_id` in its extensions."""
    unpaid = requests.get(url, timeout=30)
    assert unpaid.status_code == 402, unpaid.text
    challenge = decode_challenge(unpaid)
    extensions = dict(challenge.extensions or {})
    append_payment_identifier_to_extensions(extensions, payment_id)
    client = sync_client(account)
    payload = client.create_payment_payload(challenge, extensions=extensions)
    assert payload.extensions[PAYMENT_IDENTIFIER]["info"]["id"] == payment_id
    return x402HTTPClientSync(client).encode_payment_signature_header(payload)


def settles(facilitator) -> int:
    return facilitator.stats()["settle"]


def verifies(facilitator) -> int:
    return facilitator.stats()["verify"]


def test_the_402_declares_the_extension_and_a_required_route_refuses_a_payment_without_id(gateway_factory, chain, upstream, facilitator, buyer, payee, tag):
    gw = gateway_factory(PAYID_YAML, name="gateway-payid-required")
    url = f"{gw.url}/weather?{tag}"
    declared = decode_challenge(requests.get(url, timeout=30)).extensions[PAYMENT_IDENTIFIER]
    assert is_payment_identifier_required(declared)
    assert declared["schema"]["properties"]["id"]["pattern"] == "^[a-zA-Z0-9_-]+$"
    optional = decode_challenge(requests.get(f"{gw.url}/unique?{tag}", timeout=30)).extensions[PAYMENT_IDENTIFIER]
    assert not is_payment_identifier_required(optional)

    ledger = Ledger(chain, buyer.address, payee)
    verified = verifies(facilitator)
    missing = requests.get(url, headers=signed_payment(buyer, url), timeout=60)
    assert missing.status_code == 400, missing.text
    assert missing.json()["error"] == "payment_identifier_required"

    headers = identified_payment(buyer, url, generate_payment_id())
    paid = requests.get(url, headers=headers, timeout=60)
    assert paid.status_code == 200, paid.text
    assert_settled_on_chain(chain, decode_settlement(paid), ledger, buyer.address, payee, 1000, NETWORK)
    assert verifies(facilitator) == verified + 1
    assert len(upstream.requests("/weather", tag)) == 1
    gw.stop()


def test_a_retry_with_the_same_id_gets_the_same_answer_and_moves_no_second_transfer(gateway_factory, chain, upstream, facilitator, buyer, payee, tag):
    gw = gateway_factory(PAYID_YAML, name="gateway-payid")
    url = f"{gw.url}/unique?{tag}"
    headers = identified_payment(buyer, url, generate_payment_id())
    ledger = Ledger(chain, buyer.address, payee)

    first = requests.get(url, headers=headers, timeout=60)
    assert first.status_code == 200, first.text
    settlement = decode_settlement(first)
    counts = (verifies(facilitator), settles(facilitator))
    for _ in range(3):
        again = requests.get(url, headers=headers, timeout=60)
        assert again.status_code == 200, again.text
        assert again.content == first.content
        assert again.headers["PAYMENT-RESPONSE"] == first.headers["PAYMENT-RESPONSE"]
        assert again.headers["Content-Type"] == first.headers["Content-Type"]
        assert again.headers["X-Request-Id"] != first.headers["X-Request-Id"]

    assert first.json()["serial"] >= 1
    assert (verifies(facilitator), settles(facilitator)) == counts
    assert len(upstream.requests("/unique", tag)) == 1
    assert_settled_on_chain(chain, settlement, ledger, buyer.address, payee, 1000, NETWORK)
    gw.stop()


def test_a_different_payment_with_the_same_id_gets_409_and_moves_nothing(gateway_factory, chain, upstream, facilitator, buyer, payee, tag):
    gw = gateway_factory(PAYID_YAML, name="gateway-payid-conflict")
    url = f"{gw.url}/unique?{tag}"
    payment_id = generate_payment_id()
    ledger = Ledger(chain, buyer.address, payee)
    first = requests.get(url, headers=identified_payment(buyer, url, payment_id), timeout=60)
    assert first.status_code == 200, first.text
    counts = (verifies(facilitator), settles(facilitator))

    other = identified_payment(buyer, url, payment_id)
    conflict = requests.get(url, headers=other, timeout=60)
    assert conflict.status_code == 409, conflict.text
    assert conflict.json()["error"] == "payment_identifier_conflict"
    assert "PAYMENT-RESPONSE" not in conflict.headers

    assert (verifies(facilitator), settles(facilitator)) == counts
    assert not chain.authorization_used(buyer.address, payment_nonce(other))
    assert len(upstream.requests("/unique", tag)) == 1
    assert_settled_on_chain(chain, decode_settlement(first), ledger, buyer.address, payee, 1000, NETWORK)
    gw.stop()


def test_the_stored_answer_survives_a_gateway_restart(gateway_factory, chain, upstream, facilitator, buyer, payee, tag):
    gw = gateway_factory(PAYID_YAML, name="gateway-payid-restart")  # the default SQLite ledger
    url = f"{gw.url}/unique?{tag}"
    headers = identified_payment(buyer, url, generate_payment_id())
    ledger = Ledger(chain, buyer.address, payee)
    first = requests.get(url, headers=headers, timeout=60)
    assert first.status_code == 200, first.text
    counts = (verifies(facilitator), settles(facilitator))

    gw.stop()
    restart(gw)
    url = f"{gw.url}/unique?{tag}"
    again = requests.get(url, headers=headers, timeout=60)
    assert again.status_code == 200, again.text
    assert again.content == first.content
    assert json.loads(again.content)["serial"] == first.json()["serial"]
    assert again.headers["PAYMENT-RESPONSE"] == first.headers["PAYMENT-RESPONSE"]
    assert (verifies(facilitator), settles(facilitator)) == counts
    assert len(upstream.requests("/unique", tag)) == 1
    assert_settled_on_chain(chain, decode_settlement(first), ledger, buyer.address, payee, 1000, NETWORK)
    gw.stop()


def test_two_instances_on_postgresql_share_the_id_in_flight_409_then_the_replay(postgres_server, gateway_factory, chain, upstream, facilitator, buyer, payee, tag):
    database = fresh_database(postgres_server)
    a = gateway_factory(PAYID_YAML + f'storage: {{ postgres: "{database}", instance: payid-a }}\n', name="gateway-payid-pg-a")
    b = gateway_factory(PAYID_YAML + f'storage: {{ postgres: "{database}", instance: payid-b }}\n', name="gateway-payid-pg-b")
    headers = identified_payment(buyer, f"{a.url}/unique?{tag}", generate_payment_id())
    ledger = Ledger(chain, buyer.address, payee)
    settle_started = len(facilitator.stats()["settle_started"])
    facilitator.set_settle_delay(2)
    result: dict = {}

    def send():
        result["first"] = requests.get(f"{a.url}/unique?{tag}", headers=headers, timeout=60)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        deadline = time.monotonic() + 30
        while len(facilitator.stats()["settle_started"]) == settle_started:
            assert time.monotonic() < deadline, "the first request never reached /settle"
            time.sleep(0.05)
        busy = requests.get(f"{b.url}/unique?{tag}", headers=headers, timeout=60)
        assert busy.status_code == 409, busy.text
        assert busy.json()["error"] == "payment_identifier_in_flight"
        assert int(busy.headers["Retry-After"]) > 0
    finally:
        sender.join(timeout=60)
        facilitator.set_settle_delay(0)
    first = result["first"]
    assert first.status_code == 200, first.text
    counts = (verifies(facilitator), settles(facilitator))

    again = requests.get(f"{b.url}/unique?{tag}", headers=headers, timeout=60)
    assert again.status_code == 200, again.text
    assert again.content == first.content
    assert again.headers["PAYMENT-RESPONSE"] == first.headers["PAYMENT-RESPONSE"]
    assert (verifies(facilitator), settles(facilitator)) == counts
    assert len(upstream.requests("/unique", tag)) == 1
    assert_settled_on_chain(chain, decode_settlement(first), ledger, buyer.address, payee, 1000, NETWORK)
    a.stop()
    b.stop()
