"""Discovery: GET /.well-known/x402 and the bazaar extension in 402s, checked by the x402
conformance checkers from PyPI (x402-conformance-suite's manifest_discovery and
discovery_resource_listing, x402-conformance's P1-P7 on the 402), by the official SDK's own bazaar
code (the facilitator-side validation and extraction), and by paying through a described route with
the SDK client on the local chain.
"""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
import requests
from x402.extensions.bazaar import extract_discovery_info, validate_discovery_extension, validate_discovery_extension_spec
from x402.extensions.bazaar.types import BodyDiscoveryInfo, QueryDiscoveryInfo
from x402_conformance_suite._engine import X402Auditor, check_discovery_resource_listing, check_manifest

from rig.clients import decode_challenge, decode_settlement, httpx_session, sync_client
from rig.constants import GATEWAY_YAML_HEAD, NETWORK

DISCOVERY_YAML = GATEWAY_YAML_HEAD + """\
routes:
  - match: "GET /weather"
    price: "$0.001"
    description: Current weather
    mimeType: application/json
    input:
      schema: { properties: { city: { type: string, minLength: 1 } }, required: [city] }
      example: { city: Paris }
    output:
      schema: { type: object, properties: { path: { type: string }, message: { type: string } }, required: [path] }
      example: { path: /weather, message: hello from upstream }
  - match: "POST /search"
    price: "$0.002"
    description: Search
    input:
      bodyType: json
      schema: { type: object, properties: { q: { type: string } }, required: [q] }
      example: { q: usdc }
  - match: "GET /items/:id"
    price: "$0.001"
  - match: "GET /archive/*"
    price: "$0.001"
  - match: "GET /hidden"
    price: "$0.001"
    discoverable: false
  - match: "/public/*"
    free: true
unmatched: deny
"""


@pytest.fixture(scope="module")
def discovery_gateway(gateway_factory):
    return gateway_factory(DISCOVERY_YAML, name="gateway-discovery")


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=15)


def bazaar_of(response) -> dict:
    header = response.headers["PAYMENT-REQUIRED"]
    return json.loads(base64.b64decode(header))["extensions"]["bazaar"]


def test_conformance_suite_manifest_and_resource_listing(discovery_gateway):
    """x402-conformance-suite at the gateway's origin: its standard audit there passes
    manifest_discovery (it reads {origin}/.well-known/x402), and discovery_resource_listing passes
    for the paid resources, the URL each 402 names being in the origin's catalog. (The check compares
    URLs literally: a route with a parameter is listed as its template, /items/:id, which it does not
    match with /items/42.)"""
    base = discovery_gateway.url

    async def run():
        async with X402Auditor(timeout=15) as auditor:
            report = await auditor.run_full_audit(base)
        async with _client() as client:
            listings = [await check_discovery_resource_listing(client, f"{base}{path}") for path in ("/weather", "/weather?city=Oslo")]
        return report, listings

    report, listings = asyncio.run(run())
    statuses = {check.check_name: check.status for check in report.checks}
    print("x402-conformance-suite audit of the origin:", json.dumps(statuses))
    manifest = next(check for check in report.checks if check.check_name == "manifest_discovery")
    assert manifest.status == "PASS" and manifest.details["has_accepts"], manifest
    assert statuses["discovery_resource_listing"] == "PASS", report.checks
    for listing in listings:
        assert listing.status == "PASS" and listing.details["applicable"] and listing.details["listed"] is True, listing


def test_hidden_and_free_routes_are_not_listed(discovery_gateway):
    base = discovery_gateway.url
    manifest = requests.get(f"{base}/.well-known/x402", timeout=30).json()
    urls = [(r["method"], r["url"]) for r in manifest["resources"]]
    assert urls == [("GET", f"{base}/weather"), ("POST", f"{base}/search"), ("GET", f"{base}/items/:id"),
                    ("GET", f"{base}/archive/:var1")]
    # The hidden route is still priced, and its 402 carries no bazaar declaration.
    hidden = requests.get(f"{base}/hidden", timeout=30)
    assert hidden.status_code == 402
    assert "extensions" not in json.loads(base64.b64decode(hidden.headers["PAYMENT-REQUIRED"]))

    async def listed(path):
        async with _client() as client:
            return await check_discovery_resource_listing(client, f"{base}{path}")
    result = asyncio.run(listed("/hidden"))
    assert result.status == "FAIL" and result.details["listed"] is False, result


def test_manifest_accepts_are_the_402_accepts(discovery_gateway):
    """Each resource's accepts decode (with the SDK) to exactly what its 402 offers."""
    base = discovery_gateway.url
    manifest = requests.get(f"{base}/.well-known/x402", timeout=30).json()
    assert manifest["x402Version"] == 2 and manifest["kind"] == "resource-server"
    for resource in manifest["resources"][:2]:
        path = resource["url"][len(base):]
        challenge = decode_challenge(requests.request(resource["method"], f"{base}{path}", timeout=30))
        assert [a.model_dump(by_alias=True, exclude_none=True) for a in challenge.accepts] == resource["accepts"]
    assert {a["amount"] for a in manifest["accepts"]} == {"1000", "2000"}
    weather = manifest["resources"][0]
    assert weather["input"]["queryParams"]["required"] == ["city"]
    assert weather["output"]["schema"]["required"] == ["path"]


def test_x402_conformance_402_checks_pass_on_a_described_route(discovery_gateway, x402):
    """x402-conformance's P1-P7 (one unpaid GET) on a route carrying the bazaar extension."""
    x402.assert_passed(x402.check_payment_required(f"{discovery_gateway.url}/weather"))


@pytest.mark.parametrize("method, path, info_type, template", [
    ("GET", "/weather", QueryDiscoveryInfo, None),
    ("POST", "/search", BodyDiscoveryInfo, None),
    ("GET", "/items/42", QueryDiscoveryInfo, "/items/:id"),
])
def test_sdk_validates_and_extracts_the_declaration(discovery_gateway, buyer, method, path, info_type, template):
    """What a bazaar-cataloguing facilitator does with the SDK: validate info against schema, then
    extract the resource from the payload the SDK client builds (it echoes the extension)."""
    url = f"{discovery_gateway.url}{path}"
    response = requests.request(method, url, json={"q": "usdc"} if method == "POST" else None, timeout=30)
    assert response.status_code == 402
    declaration = bazaar_of(response)
    assert validate_discovery_extension(declaration).valid, validate_discovery_extension(declaration).errors
    assert validate_discovery_extension_spec(declaration).valid
    assert declaration["info"]["input"]["method"] == method

    challenge = decode_challenge(response)
    payload = sync_client(buyer).create_payment_payload(challenge)
    assert payload.extensions["bazaar"] == declaration
    found = extract_discovery_info(payload, payload.accepted, validate=True)
    assert found is not None
    assert found.method == method
    assert isinstance(found.discovery_info, info_type)
    assert found.route_template == template
    assert found.resource_url == f"{discovery_gateway.url}{template or path}"
    assert found.description == (challenge.resource.description or None)


def test_sdk_client_pays_through_a_described_route(discovery_gateway, chain, upstream, buyer, payee, tag):
    url = f"{discovery_gateway.url}/weather?{tag}"
    unpaid = requests.get(url, timeout=30)
    assert unpaid.status_code == 402 and "bazaar" in json.loads(base64.b64decode(unpaid.headers["PAYMENT-REQUIRED"]))["extensions"]
    before = (chain.balance_of(buyer.address), chain.balance_of(payee))

    async def pay():
        async with httpx_session(buyer, timeout=60) as client:
            response = await client.get(url)
            await response.aread()
            return response

    response = asyncio.run(pay())
    assert response.status_code == 200, response.text
    settlement = decode_settlement(response)
    assert settlement.success and settlement.network == NETWORK
    assert chain.receipt(settlement.transaction)["status"] == 1
    assert (chain.balance_of(buyer.address), chain.balance_of(payee)) == (before[0] - 1000, before[1] + 1000)
    assert len(upstream.requests("/weather", tag)) == 1
