"""Collected only under X402_E2E_VARIANT=tls-facilitators (deselected otherwise): shows that the
variant is in force, so a run of the suite under it proves what it says. Every gateway listens
with TLS, and its first facilitator is down: a payment fails over to the official SDK's facilitator
and is settled there once."""

from __future__ import annotations

import collections
import json

import requests

from conftest import GATEWAY_YAML
from rig.clients import decode_settlement, requests_session
from test_ledger import admin_port


def test_the_variant_is_in_force(gateway_factory, facilitator, chain, buyer, payee, tag):
    gw = gateway_factory(GATEWAY_YAML + "admin: { listen: 127.0.0.1:0 }\n", name="gateway-variant")
    assert gw.url.startswith("https://localhost:")
    # Plain http on the TLS listener is not served.
    try:
        plain = requests.get(f"http://127.0.0.1:{gw.port}/public/x", timeout=10)
        assert plain.status_code >= 400
    except requests.exceptions.ConnectionError:
        pass
    before = (chain.balance_of(buyer.address), chain.balance_of(payee))
    settles_before = collections.Counter(facilitator.stats()["settle_nonces"])
    # The client verifies the chain (REQUESTS_CA_BUNDLE is the run's CA).
    paid = requests_session(buyer).get(f"{gw.url}/weather?{tag}", timeout=60)
    assert paid.status_code == 200, paid.text
    settlement = decode_settlement(paid)
    assert settlement.success and chain.receipt(settlement.transaction)["status"] == 1
    assert (chain.balance_of(buyer.address), chain.balance_of(payee)) == (before[0] - 1000, before[1] + 1000)
    settles = collections.Counter(facilitator.stats()["settle_nonces"]) - settles_before
    assert sorted(settles.values()) == [1], settles  # one payment, settled once, by the official facilitator
    ready = json.loads(requests.get(f"http://127.0.0.1:{admin_port(gw)}/readyz", timeout=30).text)
    members = ready["checks"]["facilitators"].split("; ")
    assert len(members) == 2, ready
    assert "resting after a failure" in members[0] and members[1].endswith("serving"), ready
    assert ready["checks"]["tls"].startswith("ok (serving"), ready
