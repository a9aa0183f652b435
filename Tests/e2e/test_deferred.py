"""Deferred settlement (`settlement: deferred`) on the local chain with the official SDK: payments
served before their settlement, then settled on chain by the gateway's settlement worker; a payer
without funds served within the risk budget and refused after it; kill -9 with settlements still
queued; two instances on one PostgreSQL ledger sharing the queue.
"""

from __future__ import annotations

import collections
import json
import os
import pwd
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from x402 import ERR_SETTLEMENT_PENDING

from conftest import GATEWAY_USER, GATEWAY_YAML_HEAD, gateway_binary
from rig.clients import decode_challenge, decode_settlement, requests_session, signed_payment
from test_instances import fresh_database, postgres_server  # noqa: F401  (a fixture)
from test_ledger import admin_port, ledger_rows, nonce_of, restart

PRICE = 1000  # $0.001 in USDC units

DEFERRED_YAML = GATEWAY_YAML_HEAD + """\
routes:
  - match: "GET /weather"
    price: "$0.001"
    settlement: deferred
    verify: local
    riskBudget: { perPayer: "$0.10", total: "$1.00" }
  - match: "GET /cheap"
    price: "$0.001"
    settlement: deferred
    verify: local
    riskBudget: { perPayer: "$0.003", total: "$1.00" }
  - match: "/public/*"
    free: true
unmatched: deny
deferredSettlement: { concurrency: 4, poll: 200ms, refresh: 500ms, retry: { initial: 500ms, max: 2s } }
admin: { listen: 127.0.0.1:0 }
"""


def wait_for(what: str, condition, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def rows_by_nonce(gw, nonces) -> dict[str, dict]:
    wanted = {n.lower() for n in nonces}
    return {r["nonce"]: r for r in ledger_rows(gw, limit=1000) if r["nonce"] in wanted}


def all_in(gw, nonces, states) -> bool:
    rows = rows_by_nonce(gw, nonces)
    return len(rows) == len(nonces) and all(r["state"] in states for r in rows.values())


def test_deferred_payments_are_served_before_settlement_then_all_settled_on_chain(
        gateway_factory, facilitator, chain, upstream, buyer, payee, tag):
    gw = gateway_factory(DEFERRED_YAML, name="gateway-deferred")
    url = f"{gw.url}/weather?{tag}"
    buyer_before, payee_before = chain.balance_of(buyer.address), chain.balance_of(payee)
    block_before = chain.block_number()
    settles_finished = len(facilitator.stats()["settle_finished"])
    facilitator.set_settle_delay(2)  # every settlement takes 2 s: the answers must not wait for it
    nonces: list[str] = []
    try:
        session = requests_session(buyer)
        for i in range(8):
            started = time.monotonic()
            response = session.get(url, timeout=60)
            took = time.monotonic() - started
            assert response.status_code == 200, response.text
            settlement = decode_settlement(response)
            # The x402 SDK's own pending status: not a success, not a failure, no transaction yet.
            assert not settlement.success and settlement.error_reason == ERR_SETTLEMENT_PENDING, settlement
            assert settlement.transaction == "" and settlement.payer.lower() == buyer.address.lower()
            assert took < 2, f"answer {i} took {took:.2f} s: it waited for a settlement"
            nonce = [r for r in ledger_rows(gw, limit=1000) if r["nonce"] not in nonces][0]["nonce"]
            nonces.append(nonce)
            if i == 0:
                # Served, and the money has not moved yet.
                assert not chain.authorization_used(buyer.address, nonce)
                assert len(facilitator.stats()["settle_finished"]) == settles_finished
        assert len(upstream.requests("/weather", tag)) == 8
        wait_for("every deferred payment settled", lambda: all_in(gw, nonces, {"settled"}))
    finally:
        facilitator.set_settle_delay(0)

    rows = rows_by_nonce(gw, nonces)
    transfers = chain.transfers(block_before, sender=buyer.address, receiver=payee)
    assert len(transfers) == 8 and all(t["value"] == PRICE for t in transfers)
    assert {r["transaction"].lower() for r in rows.values()} == {t["tx"].lower() for t in transfers}
    assert all(r["deferred"] and r["settleAttempts"] == 1 for r in rows.values())
    assert chain.balance_of(buyer.address) == buyer_before - 8 * PRICE
    assert chain.balance_of(payee) == payee_before + 8 * PRICE
    settle_counts = collections.Counter(facilitator.stats()["settle_nonces"])
    assert all(settle_counts[n] == 1 for n in nonces), settle_counts
    summary = requests.get(f"http://127.0.0.1:{admin_port(gw)}/payments/deferred", timeout=10).json()
    assert summary["pending"] == 0 and summary["failures"] == 0, summary
    gw.stop()


def test_a_payer_without_funds_is_served_within_the_budget_then_refused(
        gateway_factory, facilitator, chain, upstream, poor_buyer, tag):
    gw = gateway_factory(DEFERRED_YAML, name="gateway-deferred-poor")
    url = f"{gw.url}/cheap?{tag}"
    block_before = chain.block_number()
    facilitator.set_settle_delay(1)
    statuses, nonces = [], []
    try:
        for _ in range(5):
            headers = signed_payment(poor_buyer, url)  # the SDK signs whatever the balance
            response = requests.get(url, headers=headers, timeout=60)
            statuses.append(response.status_code)
            nonces.append(nonce_of(headers).lower())
            if response.status_code == 200:
                assert decode_settlement(response).error_reason == ERR_SETTLEMENT_PENDING
            else:
                assert "insufficient" in (decode_challenge(response).error or ""), response.text
    finally:
        facilitator.set_settle_delay(0)
    # $0.003 per payer: three $0.001 answers on credit, then settled first, which the facilitator refuses.
    assert statuses == [200, 200, 200, 402, 402], statuses
    assert len(upstream.requests("/cheap", tag)) == 3
    wait_for("the three deferred settlements to fail", lambda: all_in(gw, nonces[:3], {"settle_failed_after_delivery"}))
    rows = rows_by_nonce(gw, nonces)
    for nonce in nonces[:3]:
        # The facilitator's reason, kept: the SDK broadcasts without simulating, the transfer reverts
        # (x402 Python SDK 2.25, exact EVM settle: a receipt with status 0 is `transaction_failed`).
        assert rows[nonce]["reason"] == "transaction_failed", rows[nonce]
    assert all(rows[n]["state"] == "refused" for n in nonces[3:]), rows
    assert chain.transfers(block_before, sender=poor_buyer.address) == []
    admin = f"http://127.0.0.1:{admin_port(gw)}"
    summary = requests.get(f"{admin}/payments/deferred", timeout=10).json()
    assert summary["failures"] == 3 and summary["pending"] == 0, summary
    assert [p["payer"] for p in summary["failedPayers"]] == [poor_buyer.address.lower()]
    # The seller's command line reads the same from the ledger file while the gateway runs.
    config = gw.proc.argv[gw.proc.argv.index("--config") + 1]
    identity = {}
    if GATEWAY_USER is not None:
        account = pwd.getpwnam(GATEWAY_USER)
        identity = dict(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
    listed = subprocess.run([gateway_binary(), "payments", "--config", config, "--deferred", "--json"],
                            capture_output=True, text=True, timeout=30, env=gw.proc.env, **identity)
    assert listed.returncode == 0, listed.stderr
    cli = json.loads(listed.stdout)
    assert (cli["failures"], cli["pending"], cli["failedPayers"]) == (3, 0, summary["failedPayers"]), cli
    metrics = requests.get(f"{admin}/metrics", timeout=10).text
    assert 'x402_deferred_settlements_total{outcome="failed"} 3' in metrics
    wait_for("the ledger's failures in the metrics",  # read back every refresh (500ms)
             lambda: "x402_deferred_failures 3" in requests.get(f"{admin}/metrics", timeout=10).text, timeout=10)
    gw.stop()


def test_kill_9_with_pending_settlements_then_restart_settles_every_one(
        gateway_factory, facilitator, chain, upstream, buyer, payee, tag):
    count = 100
    config = DEFERRED_YAML.replace("concurrency: 4", "concurrency: 2") + (
        'networks: { "eip155:84532": { rpc: "${E2E_RPC_URL}" } }\nreconcile: { interval: 1s, grace: 30s }\n')
    gw = gateway_factory(config, name="gateway-deferred-kill9", env={"E2E_RPC_URL": chain.url})
    url = f"{gw.url}/weather?{tag}"
    buyer_before, payee_before = chain.balance_of(buyer.address), chain.balance_of(payee)
    payments = [signed_payment(buyer, url) for _ in range(count)]
    nonces = [nonce_of(p).lower() for p in payments]
    facilitator.set_settle_delay(0.3)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            responses = list(pool.map(lambda h: requests.get(url, headers=h, timeout=60), payments))
        assert [r.status_code for r in responses] == [200] * count
        settled_before_kill = len([r for r in rows_by_nonce(gw, nonces).values() if r["state"] == "settled"])
        os.killpg(gw.proc.popen.pid, signal.SIGKILL)
        gw.proc.popen.wait(10)
        assert settled_before_kill < count - 5, f"only {count - settled_before_kill} left pending: the kill proves little"
    finally:
        facilitator.set_settle_delay(0)

    restart(gw)
    # Every queued settlement is made; one a killed worker had in flight is settled or, its retry
    # refused because the first went through, reconciled against the chain.
    done = {"settled", "reconciled_settled", "settle_failed_after_delivery"}
    wait_for("every payment settled or failed", lambda: all_in(gw, nonces, done), timeout=120)
    rows = rows_by_nonce(gw, nonces)
    states = collections.Counter(r["state"] for r in rows.values())
    print(f"kill -9 with {count - settled_before_kill} of {count} deferred settlements pending: after the restart {dict(states)}")
    assert len(rows) == count  # none lost
    assert states["settle_failed_after_delivery"] == 0, states  # the buyer has the funds
    for nonce in nonces:
        assert chain.authorization_used(buyer.address, nonce), nonce
    assert chain.balance_of(buyer.address) == buyer_before - count * PRICE
    assert chain.balance_of(payee) == payee_before + count * PRICE
    assert len(upstream.requests("/weather", tag)) == count
    gw.stop()


def test_two_instances_on_postgresql_share_the_queue_and_settle_each_payment_once(
        postgres_server, gateway_factory, facilitator, chain, upstream, buyer, payee, tag):  # noqa: F811
    count = 30
    database = fresh_database(postgres_server)
    gateways = [gateway_factory(DEFERRED_YAML + f'storage: {{ postgres: "{database}", instance: {name} }}\n', name=f"gateway-deferred-{name}")
                for name in ("gw-da", "gw-db")]
    buyer_before, payee_before = chain.balance_of(buyer.address), chain.balance_of(payee)
    block_before = chain.block_number()
    payments = [(gateways[i % 2], signed_payment(buyer, f"{gateways[i % 2].url}/weather?{tag}")) for i in range(count)]
    nonces = [nonce_of(h).lower() for _, h in payments]
    facilitator.set_settle_delay(0.2)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            responses = list(pool.map(lambda p: requests.get(f"{p[0].url}/weather?{tag}", headers=p[1], timeout=60), payments))
        assert [r.status_code for r in responses] == [200] * count
        assert all(decode_settlement(r).error_reason == ERR_SETTLEMENT_PENDING for r in responses)
        wait_for("every payment settled", lambda: all_in(gateways[0], nonces, {"settled"}))
    finally:
        facilitator.set_settle_delay(0)
    rows = rows_by_nonce(gateways[1], nonces)
    assert {r["instance"] for r in rows.values()} == {"gw-da", "gw-db"}, "both instances' workers took from the one queue"
    settle_counts = collections.Counter(facilitator.stats()["settle_nonces"])
    assert [n for n in nonces if settle_counts[n] != 1] == [], "a payment was sent to /settle more than once"
    assert all(r["settleAttempts"] == 1 for r in rows.values())
    assert len(chain.transfers(block_before, sender=buyer.address, receiver=payee)) == count
    assert chain.balance_of(buyer.address) == buyer_before - count * PRICE
    assert chain.balance_of(payee) == payee_before + count * PRICE
    for gw in gateways:
        gw.stop()
