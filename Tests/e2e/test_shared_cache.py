"""A real shared cache in front of the gateway (nginx `proxy_cache`, rig/shared_cache.py): a buyer
pays through the cache with the official SDK client, then an unpaid client asks for the same URL
through the same cache. The unpaid client must get the 402, never the first buyer's answer.

Two upstream behaviours: it marks the answer `Cache-Control: public, max-age=3600` (with
`Surrogate-Control`), or it says nothing and the cache keeps 200s by default (a CDN caching `.pdf`
by extension). A free route through the same cache shows that the cache does store what it may.
"""

from __future__ import annotations

import json

import pytest
import requests

from conftest import GATEWAY_USER
from rig.clients import decode_challenge, decode_settlement, requests_session
from rig.shared_cache import SharedCache
from rig.constants import GATEWAY_YAML_HEAD

CACHE_YAML = GATEWAY_YAML_HEAD + """\
routes:
  - match: "GET /unique/paid/*"
    price: "$0.001"
  - match: "GET /unique/shared/*"
    price: "$0.001"
    cache: upstream
  - match: "GET /unique/free/*"
    free: true
unmatched: deny
"""

PUBLIC = "h=Cache-Control:+public,+max-age%3D3600&h=Surrogate-Control:+max-age%3D3600"


@pytest.fixture(scope="module")
def cached_gateway(gateway_factory, run_dir):
    gateway = gateway_factory(CACHE_YAML, name="gateway-cached")
    cache = SharedCache.start(run_dir / "nginx", gateway.url, user=GATEWAY_USER)
    yield cache
    cache.stop()


@pytest.mark.parametrize("upstream_says", ["public-max-age", "nothing"])
def test_an_unpaid_request_after_a_paid_one_gets_the_402_not_the_cached_answer(
        cached_gateway, upstream_says, buyer, chain, upstream, tag):
    query = f"{tag}&{PUBLIC}" if upstream_says == "public-max-age" else tag
    url = f"{cached_gateway.url}/unique/paid/report.pdf?{query}"

    paid = requests_session(buyer).get(url, timeout=60)
    assert paid.status_code == 200, paid.text
    settlement = decode_settlement(paid)
    assert settlement.success and chain.receipt(settlement.transaction)["status"] == 1

    unpaid = requests.get(url, timeout=30)
    assert unpaid.status_code == 402, (
        f"the shared cache served the paid answer to an unpaid client (X-Cache-Status: {unpaid.headers.get('X-Cache-Status')}): {unpaid.text}")
    assert unpaid.headers.get("X-Cache-Status") != "HIT"
    assert unpaid.headers["Cache-Control"] == "no-store"
    assert decode_challenge(unpaid).accepts[0].amount == "1000"
    assert paid.headers["Cache-Control"] == "private, no-store"
    assert "Surrogate-Control" not in paid.headers
    assert "PAYMENT-SIGNATURE" in paid.headers["Vary"]
    # The upstream was asked once, by the paid request; the unpaid one stopped at the gateway.
    assert len(upstream.requests("/unique/paid/report.pdf", tag)) == 1


def test_the_cache_stores_what_it_may_free_answers_and_cache_upstream_routes(cached_gateway, buyer, upstream, tag):
    # Free route: the second request is served by the cache.
    url = f"{cached_gateway.url}/unique/free/report.pdf?{tag}&{PUBLIC}"
    first, second = requests.get(url, timeout=30), requests.get(url, timeout=30)
    assert first.headers["X-Cache-Status"] == "MISS" and second.headers["X-Cache-Status"] == "HIT"
    assert json.loads(first.content)["serial"] == json.loads(second.content)["serial"]
    assert second.headers["Cache-Control"] == "public, max-age=3600"

    # cache: upstream: the operator said the paid content may be shared, and it is.
    url = f"{cached_gateway.url}/unique/shared/report.pdf?{tag}&{PUBLIC}"
    paid = requests_session(buyer).get(url, timeout=60)
    assert paid.status_code == 200 and paid.headers["Cache-Control"] == "public, max-age=3600"
    again = requests.get(url, timeout=30)
    assert again.status_code == 200 and again.headers["X-Cache-Status"] == "HIT"
    assert len(upstream.requests("/unique/shared/report.pdf", tag)) == 1
