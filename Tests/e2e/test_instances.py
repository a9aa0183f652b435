"""Several gateway instances on one PostgreSQL ledger (a real server: Debian's postgresql, started
by scripts/postgres-test-server.sh on a free loopback port and removed afterwards)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import requests

from conftest import GATEWAY_YAML
from rig.clients import decode_challenge, signed_payment
from test_ledger import admin_port, nonce_of, wait_for_state

ROOT = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = ROOT / "scripts" / "postgres-test-server.sh"


def start_server() -> tuple[str, str]:
    out = subprocess.run(["bash", str(SERVER_SCRIPT), "start"], capture_output=True, text=True, timeout=300, check=True).stdout
    values = dict(re.findall(r"export (\w+)='([^']*)'", out))
    return values["X402_TEST_POSTGRES_URL"], values["X402_TEST_POSTGRES_DIR"]


def stop_server(folder: str) -> None:
    subprocess.run(["bash", str(SERVER_SCRIPT), "stop", folder], capture_output=True, timeout=60)


def fresh_database(server_url: str) -> str:
    """A new, empty database on the server; its URL."""
    name = "x402_e2e_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", server_url, "-v", "ON_ERROR_STOP=1", "-qc", f"CREATE DATABASE {name}"], check=True,
                   capture_output=True, timeout=60)
    return server_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="module")
def postgres_server():
    given = os.environ.get("X402_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    url, folder = start_server()
    try:
        yield url
    finally:
        stop_server(folder)


def instance_yaml(database_url: str, instance: str) -> str:
    return GATEWAY_YAML + f'admin: {{ listen: 127.0.0.1:0 }}\nstorage: {{ postgres: "{database_url}", instance: {instance} }}\n'


def test_one_payment_sent_200_times_across_two_instances_is_delivered_and_settled_once(
        postgres_server, gateway_factory, facilitator, chain, upstream, buyer, payee, tag):
    database = fresh_database(postgres_server)
    a = gateway_factory(instance_yaml(database, "gw-a"), name="gateway-pg-a")
    b = gateway_factory(instance_yaml(database, "gw-b"), name="gateway-pg-b")
    headers = signed_payment(buyer, f"{a.url}/weather?{tag}")
    settles_before = facilitator.stats()["settle"]
    payee_before = chain.balance_of(payee)

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            return await asyncio.gather(*(client.get(f"{(a, b)[i % 2].url}/weather?{tag}", headers=headers) for i in range(200)))

    responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [402] * 199, statuses
    for refused in (r for r in responses if r.status_code == 402):
        assert "used" in (decode_challenge(refused).error or "")
    assert len(upstream.requests("/weather", tag)) == 1
    assert facilitator.stats()["settle"] - settles_before == 1
    assert chain.balance_of(payee) - payee_before == 1000
    # Both instances read the one ledger: one row, settled, claimed by whichever won. The winner writes
    # `settled` while its answer goes out, so the other instance may list it a moment as `settling`.
    for gw in (a, b):
        row = wait_for_state(gw, nonce_of(headers), "settled", timeout=10)
        assert row["instance"] in ("gw-a", "gw-b")
    a.stop()
    b.stop()


def test_database_gone_under_load_fails_paid_requests_closed_and_free_routes_keep_serving(
        gateway_factory, chain, upstream, buyer, payee, tag):
    url, folder = start_server()  # its own server: this test stops it
    try:
        gw = gateway_factory(instance_yaml(fresh_database(url), "gw-down"), name="gateway-pg-down")
        paid_url = f"{gw.url}/weather?{tag}"
        headers = signed_payment(buyer, paid_url)
        payee_before = chain.balance_of(payee)
        ready = requests.get(f"http://127.0.0.1:{admin_port(gw)}/readyz", timeout=10)
        assert json.loads(ready.text)["checks"]["storage"].startswith("ok (postgres"), ready.text
    finally:
        stop_server(folder)

    started = time.monotonic()
    paid = requests.get(paid_url, headers=headers, timeout=60)
    assert paid.status_code == 503, paid.text
    assert paid.json()["error"] == "storage_unavailable"
    assert "nothing was charged" in paid.json()["message"]
    assert time.monotonic() - started < 30
    assert requests.get(f"{gw.url}/public/hello?{tag}", timeout=10).status_code == 200
    assert requests.get(f"{gw.url}/weather", timeout=10).status_code == 402  # challenges need no database
    assert upstream.requests("/weather", tag) == []
    assert chain.balance_of(payee) == payee_before
    assert not chain.authorization_used(buyer.address, nonce_of(headers))
    ready = requests.get(f"http://127.0.0.1:{admin_port(gw)}/readyz", timeout=30)
    assert ready.status_code == 503 and "unavailable" in json.loads(ready.text)["checks"]["storage"], ready.text
    gw.stop()
