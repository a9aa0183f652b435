"""The durable payment ledger (SQLite, the default), seen from outside: the official SDK pays, the
ledger says what happened, and it still says so after a restart and after kill -9.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import requests

from conftest import GATEWAY_USER, GATEWAY_YAML, gateway_binary
from rig.clients import decode_challenge, decode_settlement, signed_payment


def admin_port(gateway) -> int:
    """The admin listener's port, from the gateway's JSON log (its current run only: after a
    restart the admin line comes a few ms after the one `restart` waits for)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = gateway.proc.log_path.read_text(errors="replace").splitlines()
        for line in lines[::-1]:
            if line.startswith("=== "):
                break  # the start marker of the current run: the line is not there yet
            if line.startswith("{") and '"admin listening"' in line:
                return int(json.loads(line)["port"])
        time.sleep(0.05)
    raise AssertionError("no admin listening line in the log")


def ledger_rows(gateway, **params) -> list[dict]:
    response = requests.get(f"http://127.0.0.1:{admin_port(gateway)}/payments", params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["payments"]


def row_for(gateway, nonce: str) -> dict:
    rows = [r for r in ledger_rows(gateway, limit=1000) if r["nonce"] == nonce.lower()]
    assert len(rows) == 1, rows
    return rows[0]


def wait_for_state(gateway, nonce: str, state: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        row = row_for(gateway, nonce)
        if row["state"] == state:
            return row
        assert time.monotonic() < deadline, f"the row stayed {row['state']}, expected {state}: {row}"
        time.sleep(0.1)


def nonce_of(headers: dict) -> str:
    import base64
    return json.loads(base64.b64decode(headers["PAYMENT-SIGNATURE"]))["payload"]["authorization"]["nonce"]


def restart(gateway):
    """Starts the same process again (same configuration, same ledger); returns its new base URL."""
    gateway.moved_to(gateway.proc.start(timeout=30))
    return gateway


LEDGER_YAML = GATEWAY_YAML + "admin: { listen: 127.0.0.1:0 }\n"


def send_in_background(url: str, headers: dict) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def send():
        try:
            result["response"] = requests.get(url, headers=headers, timeout=60)
        except requests.RequestException as error:
            result["error"] = error

    thread = threading.Thread(target=send)
    thread.start()
    return thread, result


def wait_for_settle_start(facilitator, before: int) -> None:
    deadline = time.monotonic() + 30
    while len(facilitator.stats()["settle_started"]) == before:
        assert time.monotonic() < deadline, "the gateway never asked the facilitator to settle"
        time.sleep(0.02)


def test_ledger_row_for_a_paid_request_survives_restart_and_so_does_replay_protection(gateway_factory, chain, upstream, buyer, payee, tag):
    gw = gateway_factory(LEDGER_YAML, name="gateway-ledger")
    url = f"{gw.url}/weather?{tag}"
    headers = signed_payment(buyer, url)
    paid = requests.get(url, headers=headers, timeout=60)
    assert paid.status_code == 200, paid.text
    settlement = decode_settlement(paid)

    row = row_for(gw, nonce_of(headers))
    assert row["state"] == "settled"
    assert row["transaction"].lower() == settlement.transaction.lower()
    assert (row["amount"], row["route"], row["method"], row["path"]) == ("1000", "GET /weather", "GET", "/weather")
    assert row["payer"] == buyer.address.lower() and row["payTo"].lower() == payee.lower()
    assert row["upstreamStatus"] == 200
    for step in ("claimedAt", "verifiedAt", "forwardedAt", "settlingAt", "finishedAt"):
        assert step in row, step
    assert chain.receipt(settlement.transaction)["status"] == 1

    # The seller's command line reads the same ledger while the gateway runs (as the gateway's user).
    config = gw.proc.argv[gw.proc.argv.index("--config") + 1]
    identity = {}
    if GATEWAY_USER is not None:
        import pwd
        account = pwd.getpwnam(GATEWAY_USER)
        identity = dict(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
    listed = subprocess.run([gateway_binary(), "payments", "--config", config, "--state", "settled", "--json"],
                            capture_output=True, text=True, timeout=30, env=gw.proc.env, **identity)
    assert listed.returncode == 0, listed.stderr
    assert nonce_of(headers).lower() in [r["nonce"] for r in json.loads(listed.stdout)["payments"]]
    revenue = subprocess.run([gateway_binary(), "revenue", "--config", config, "--by", "route", "--json"],
                             capture_output=True, text=True, timeout=30, env=gw.proc.env, **identity)
    assert revenue.returncode == 0, revenue.stderr
    assert json.loads(revenue.stdout)["revenue"] == [{"route": "GET /weather", "network": "eip155:84532", "asset": row["asset"],
                                                      "payments": 1, "total": "1000", "totalInUnits": "0.001 USDC"}]

    gw.stop()
    restart(gw)
    # After the restart: the row is still there, and the spent payment is still refused.
    assert row_for(gw, nonce_of(headers))["state"] == "settled"
    url = f"{gw.url}/weather?{tag}"
    again = requests.get(url, headers=headers, timeout=60)
    assert again.status_code == 402, again.text
    assert "used" in (decode_challenge(again).error or "")
    assert len(upstream.requests("/weather", tag)) == 1
    gw.stop()


def test_kill_9_during_a_slow_settle_leaves_an_unknown_outcome_never_nothing(gateway_factory, facilitator, chain, upstream, buyer, payee, tag):
    gw = gateway_factory(LEDGER_YAML, name="gateway-kill9")
    url = f"{gw.url}/weather?{tag}"
    headers = signed_payment(buyer, url)
    balance_before = chain.balance_of(payee)
    facilitator.set_settle_delay(3)
    stats = facilitator.stats()
    started_before, finished_before = len(stats["settle_started"]), len(stats["settle_finished"])
    sender, result = send_in_background(url, headers)
    try:
        wait_for_settle_start(facilitator, started_before)
        deadline = time.monotonic() + 30
        os.killpg(gw.proc.popen.pid, signal.SIGKILL)  # mid-settlement
        gw.proc.popen.wait(10)
        sender.join(60)
        assert "error" in result, "the client must not get an answer from a killed gateway"
        # The facilitator goes on and settles: the money moved although the gateway never heard.
        while len(facilitator.stats()["settle_finished"]) == finished_before:
            assert time.monotonic() < deadline + 30, "the facilitator never finished the settlement"
            time.sleep(0.05)
    finally:
        facilitator.set_settle_delay(0)
    assert chain.authorization_used(buyer.address, nonce_of(headers))

    restart(gw)
    row = row_for(gw, nonce_of(headers))
    assert row["state"] == "unknown", row  # written as settling before /settle; the restart marks it unknown
    assert row["reason"] == "instance_restarted"
    assert "settlingAt" in row
    # The same payment presented again is a retry after an unknown outcome: never a fresh 402, never a second transfer.
    retry = requests.get(f"{gw.url}/weather?{tag}", headers=headers, timeout=60)
    assert 500 <= retry.status_code < 600, retry.text
    assert chain.balance_of(payee) - balance_before == 1000  # one transfer, not two
    assert row_for(gw, nonce_of(headers))["state"] == "unknown"  # still for reconciliation
    gw.stop()


def test_20_kill_9s_under_paid_load_lose_no_row(gateway_factory, facilitator, chain, upstream, buyer, payee, tag):
    """Paid load, killed with SIGKILL at random moments 20 times: every /settle the facilitator saw
    has its ledger row, and every paid answer a client received is a settled row, or (killed between
    the answer and the `settled` step written behind it) an unknown outcome whose transfer the chain
    shows, left for reconciliation: never missing, never released."""
    import random
    from concurrent.futures import ThreadPoolExecutor

    rng = random.Random(402)
    gw = gateway_factory(LEDGER_YAML, name="gateway-soak")
    seen_before = set(facilitator.stats()["settle_nonces"])
    served: dict[str, str] = {}  # nonce → transaction of every 200 a client received
    sent: set[str] = set()

    def pay(headers: dict) -> None:
        try:
            response = requests.get(f"{gw.url}/weather?{tag}", headers=headers, timeout=30)
        except requests.RequestException:
            return  # the gateway was killed under this request
        if response.status_code == 200:
            served[nonce_of(headers).lower()] = decode_settlement(response).transaction.lower()

    for round_ in range(20):
        if round_:
            restart(gw)
        payments = [signed_payment(buyer, f"{gw.url}/weather?{tag}") for _ in range(8)]
        sent.update(nonce_of(p).lower() for p in payments)
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = [pool.submit(pay, p) for p in payments]
            time.sleep(rng.uniform(0.2, 3.0))
            os.killpg(gw.proc.popen.pid, signal.SIGKILL)
            gw.proc.popen.wait(10)
            for future in futures:
                future.result(timeout=60)

    restart(gw)
    rows = {r["nonce"]: r for r in ledger_rows(gw, limit=1000)}
    settled_calls = set(facilitator.stats()["settle_nonces"]) - seen_before
    states = {}
    for row in rows.values():
        states[row["state"]] = states.get(row["state"], 0) + 1
    served_unknown = sum(1 for nonce in served if rows.get(nonce, {}).get("state") == "unknown")
    print(f"kill -9 soak: {len(sent)} payments sent, {len(served)} paid answers received "
          f"({served_unknown} of them killed before their settled step landed), "
          f"{len(settled_calls)} settle calls, ledger rows by state {states}")
    assert served, "no paid request completed in 20 rounds: the test proves nothing"
    assert settled_calls, "no settlement was started: the test proves nothing"
    missing = sorted(n for n in settled_calls if n not in rows)
    assert missing == [], f"settle calls without a ledger row: {missing}"
    for nonce, tx in served.items():
        if rows[nonce]["state"] == "unknown":
            assert rows[nonce]["reason"] == "instance_restarted" and chain.authorization_used(buyer.address, nonce), rows[nonce]
            continue
        assert rows[nonce]["state"] == "settled", rows[nonce]
        assert rows[nonce]["transaction"].lower() == tx
    assert not [r for r in rows.values() if r["state"] in ("claimed", "verified", "forwarded", "settling")], \
        "the restart must end every claim its killed predecessor left in flight"
    assert set(rows) <= sent
    # Money moved exactly for the settled rows and the unknown ones whose transfer went through.
    for nonce, row in rows.items():
        if row["state"] == "settled":
            assert chain.authorization_used(buyer.address, nonce)
        if row["state"] in ("released", "refused"):
            assert not chain.authorization_used(buyer.address, nonce)
    gw.stop()
