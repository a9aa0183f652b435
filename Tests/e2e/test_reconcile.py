"""Reconciliation against the real local chain: settlements whose outcome the gateway lost are
settled from what the token says (`authorizationState`, `AuthorizationUsed`), both ways.
"""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

from rig.clients import decode_challenge, decode_settlement, signed_payment
from test_ledger import LEDGER_YAML, admin_port, nonce_of, restart, row_for, send_in_background, wait_for_settle_start, wait_for_state

# Stands for an API key in the RPC URL: the rig's chain ignores the path, the gateway must never log it.
SECRET = "e2e-secret-key"


def rpc_url(chain) -> str:
    return f"{chain.url}/v2/{SECRET}?apikey={SECRET}"


def networks_yaml(chain, reconcile: str) -> str:
    return f'networks: {{ "eip155:84532": {{ rpc: "{rpc_url(chain)}", timeout: 5s }} }}\nreconcile: {reconcile}\n'


def iso_ms(text: str) -> int:
    """The ledger's ISO 8601 UTC timestamps (milliseconds) as unix milliseconds."""
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp() * 1000)


def metric(gateway, name: str, label: str, expect: float | None = None, timeout: float = 10) -> float | None:
    """The series' value; with `expect`, waits up to `timeout` for it (a round runs in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        text = requests.get(f"http://127.0.0.1:{admin_port(gateway)}/metrics", timeout=10).text
        value = None
        for line in text.splitlines():
            if line.startswith(name + "{") and label in line:
                value = float(line.rsplit(" ", 1)[1])
        if expect is None or value == expect or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def readiness(gateway) -> dict:
    return requests.get(f"http://127.0.0.1:{admin_port(gateway)}/readyz", timeout=30).json()


def decisions(gateway) -> list[dict]:
    """The reconciliation decisions in the gateway's JSON log."""
    found = []
    for line in gateway.proc.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"reconciliation decision"' in line:
            found.append(json.loads(line))
    return found


def test_kill_9_mid_settle_then_restart_with_an_rpc_reconciles_settled_with_the_chains_transaction(
        gateway_factory, facilitator, chain, upstream, buyer, payee, tag):
    gw = gateway_factory(LEDGER_YAML, name="gateway-reconcile-settled")
    url = f"{gw.url}/weather?{tag}"
    headers = signed_payment(buyer, url)
    nonce = nonce_of(headers)
    since_block = chain.block_number()
    payee_before, buyer_before = chain.balance_of(payee), chain.balance_of(buyer.address)

    # kill -9 while the facilitator is settling; the facilitator goes on and the money moves.
    facilitator.set_settle_delay(3)
    try:
        stats = facilitator.stats()
        started, finished = len(stats["settle_started"]), len(stats["settle_finished"])
        sender, result = send_in_background(url, headers)
        wait_for_settle_start(facilitator, started)
        os.killpg(gw.proc.popen.pid, signal.SIGKILL)
        gw.proc.popen.wait(10)
        sender.join(60)
        assert "error" in result, "a killed gateway cannot have answered"
        deadline = time.monotonic() + 60
        while len(facilitator.stats()["settle_finished"]) == finished:
            assert time.monotonic() < deadline, "the facilitator never finished the settlement"
            time.sleep(0.05)
    finally:
        facilitator.set_settle_delay(0)
    assert chain.authorization_used(buyer.address, nonce)
    [transfer] = chain.transfers(since_block, sender=buyer.address)

    # Restarted without an RPC URL: the row stays unknown, is counted and is named by /readyz.
    restart(gw)
    assert row_for(gw, nonce)["state"] == "unknown"
    storage = readiness(gw)["checks"]["storage"]
    assert "1 payment with an unknown settlement outcome needs reconciliation" in storage, storage
    assert "eip155:84532: 1, no rpc in networks: reconcile by hand" in storage, storage
    assert metric(gw, "x402_payments_unknown", 'network="eip155:84532"', expect=1) == 1
    gw.stop()

    # Restarted with the chain's RPC URL (long interval: this is the round at start).
    config = Path(gw.proc.argv[gw.proc.argv.index("--config") + 1])
    config.write_text(config.read_text() + networks_yaml(chain, "{ interval: 1h }"))
    started_at = time.monotonic()
    restart(gw)
    row = wait_for_state(gw, nonce, "reconciled_settled")
    reconciled_in = time.monotonic() - started_at
    assert row["transaction"] == transfer["tx"].lower()
    assert chain.receipt(row["transaction"])["status"] == 1
    assert "reconciledAt" in row
    assert metric(gw, "x402_reconciliations_total", 'outcome="settled"', expect=1) == 1
    assert metric(gw, "x402_payments_unknown", 'network="eip155:84532"', expect=0) == 0
    assert metric(gw, "x402_settled_amount_total", 'network="eip155:84532"', expect=1000) == 1000
    [decision] = decisions(gw)
    assert decision["level"] == "notice"
    assert (decision["x402.decision"], decision["x402.transaction"]) == ("settled", row["transaction"])
    assert decision["x402.payer"] == buyer.address.lower() and decision["x402.route"] == "GET /weather"
    assert nonce.lower().startswith(decision["x402.nonce"].rstrip("…"))
    assert decision["x402.rpc"] == chain.url.removeprefix("http://")
    assert SECRET not in gw.proc.log_path.read_text(errors="replace")
    assert "unknown settlement outcome" not in readiness(gw)["checks"]["storage"]

    # Spent: the same payment is refused, and the money moved exactly once.
    again = requests.get(f"{gw.url}/weather?{tag}", headers=headers, timeout=60)
    assert again.status_code == 402, again.text
    assert "used" in (decode_challenge(again).error or "")
    assert chain.balance_of(payee) - payee_before == 1000
    assert buyer_before - chain.balance_of(buyer.address) == 1000
    print(f"reconciled at start in {reconciled_in:.2f}s")
    gw.stop()


def test_a_settle_that_never_happened_is_reconciled_unsettled_and_the_same_payment_is_then_served_once(
        gateway_factory, facilitator, chain, upstream, buyer, payee, tag):
    gw = gateway_factory(LEDGER_YAML + networks_yaml(chain, "{ interval: 1s, grace: 6s }"), name="gateway-reconcile-unsettled")
    url = f"{gw.url}/weather?{tag}"
    headers = signed_payment(buyer, url)
    nonce = nonce_of(headers)
    since_block = chain.block_number()
    payee_before, buyer_before = chain.balance_of(payee), chain.balance_of(buyer.address)

    # The facilitator is stopped while it waits to settle: nothing is ever broadcast, the gateway
    # loses the answer and records an unknown outcome.
    facilitator.set_settle_delay(5)
    try:
        sender, result = send_in_background(url, headers)
        wait_for_settle_start(facilitator, len(facilitator.stats()["settle_started"]))
        facilitator.stop()
        sender.join(60)
    finally:
        if not facilitator.running:
            facilitator.start()  # a fresh process: no settle delay
    response = result["response"]
    assert 500 <= response.status_code < 600, response.text
    assert not chain.authorization_used(buyer.address, nonce)
    row = row_for(gw, nonce)
    assert row["state"] == "unknown", row
    storage = readiness(gw)["checks"]["storage"]
    assert f"eip155:84532: 1, reconciled against the chain ({chain.url.removeprefix('http://')}) every 1s" in storage, storage

    # Unused on chain and still valid: pending during the grace, then reconciled unsettled.
    row = wait_for_state(gw, nonce, "reconciled_unsettled")
    waited = iso_ms(row["reconciledAt"]) - iso_ms(row["finishedAt"])
    assert 6000 <= waited < 6000 + 3000, f"declared unsettled {waited} ms after the outcome became unknown (grace 6s, rounds every 1s)"
    assert "transaction" not in row
    logged = decisions(gw)
    assert {d["x402.decision"] for d in logged} == {"pending", "unsettled"}, logged
    assert logged[-1]["x402.reason"] == "grace_elapsed"
    assert metric(gw, "x402_reconciliations_total", 'outcome="unsettled"', expect=1) == 1
    assert metric(gw, "x402_reconciliations_total", 'outcome="pending"') >= 1
    assert metric(gw, "x402_payments_unknown", 'network="eip155:84532"', expect=0) == 0
    assert SECRET not in gw.proc.log_path.read_text(errors="replace")

    # Released: the very same payment header is served and settled, once.
    served = requests.get(url, headers=headers, timeout=60)
    assert served.status_code == 200, served.text
    settlement = decode_settlement(served)
    assert chain.receipt(settlement.transaction)["status"] == 1
    row = row_for(gw, nonce)
    assert (row["state"], row["attempt"]) == ("settled", 2), row
    assert row["transaction"].lower() == settlement.transaction.lower()
    spent = requests.get(url, headers=headers, timeout=60)
    assert spent.status_code == 402, spent.text
    assert chain.balance_of(payee) - payee_before == 1000
    assert buyer_before - chain.balance_of(buyer.address) == 1000
    assert len(chain.transfers(since_block, sender=buyer.address)) == 1
    assert len(upstream.requests("/weather", tag)) == 2  # the interrupted request and the served one
    gw.stop()
