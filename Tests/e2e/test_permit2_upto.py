"""`exact` through Permit2 and `upto`, paid through the gateway by the official Python SDK's client,
verified and settled by the SDK's facilitator (with UptoEvmFacilitatorScheme) on the local chain,
where Permit2 and the x402 proxies sit at their canonical addresses (contracts/x402/README.md).

Every test checks the money on chain: under `upto` the buyer loses what the upstream reported (or
the route's rule decided), never the maximum unless that is the charge; a replay moves nothing.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import time
import urllib.parse

import pytest
import requests
from eth_account import Account

from rig.clients import decode_challenge, decode_settlement, requests_session, signed_payment
from rig.constants import ADDRESSES, GATEWAY_YAML_HEAD, KEYS, NETWORK, TOKEN2_ADDRESS, USDC_ADDRESS
from rig.contracts import PERMIT2, UPTO_PROXY, approve_permit2

MAXIMUM = 10_000  # $0.01, the upto routes' maximum

YAML = GATEWAY_YAML_HEAD + f"""\
routes:
  - match: "GET /p2/exact"
    price: "$0.003"
    assetTransferMethod: permit2
  - match: "GET /p2/token2"
    price: {{ amount: "2500", asset: "{TOKEN2_ADDRESS}", decimals: 6, symbol: TOK }}
    assetTransferMethod: permit2
  - match: "GET /upto/report"
    upto: "$0.01"
  - match: "GET /upto/kib"
    upto: {{ max: "$0.01", perKiB: "$0.001" }}
  - match: "GET /upto/tokens"
    upto: {{ max: "$0.01", perUnit: {{ field: usage.total_tokens, price: "$0.00001" }} }}
  - match: "GET /events/metered"
    upto: {{ max: "$0.01", perUnit: {{ field: usage.total_tokens, price: "$0.00001" }}, holdBack: 64 }}
    mimeType: text/event-stream
  - match: "GET /plain"
    price: "$0.001"
unmatched: deny
"""


@pytest.fixture(scope="module")
def gw(gateway_factory):
    return gateway_factory(YAML, name="gateway-permit2-upto")


@pytest.fixture(scope="module")
def permit2_buyer(chain):
    """A buyer who approved Permit2 once on both tokens (the one on-chain step Permit2 needs)."""
    for token in (USDC_ADDRESS, TOKEN2_ADDRESS):
        approve_permit2(chain.w3, token, KEYS["permit2-buyer"])
    return Account.from_key(KEYS["permit2-buyer"])


def report(amount) -> str:
    """The query part that makes the upstream send `Settlement-Overrides: {"amount": ...}` (or any JSON)."""
    value = amount if isinstance(amount, str) and amount.startswith("{") else json.dumps({"amount": amount})
    return "h=" + urllib.parse.quote(f"Settlement-Overrides: {value}")


def balances(chain, *addresses, token=None) -> dict[str, int]:
    return {a: chain.balance_of(a, token) for a in addresses}


def ledger_query(run_dir, sql: str, *args) -> list[sqlite3.Row]:
    """Rows of the gateway's own ledger (read-only, from its SQLite file)."""
    db = sqlite3.connect(f"file:{run_dir}/gateway-permit2-upto-state/ledger.db?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def ledger_row(run_dir, nonce: str) -> dict:
    """A payment's ledger row once it has left `settling`: the `settled` step is written while the
    answer goes out, so a reader in another process may come a few milliseconds early."""
    deadline = time.monotonic() + 10
    while True:
        rows = ledger_query(run_dir, "SELECT * FROM x402_payments WHERE nonce = ?", nonce)
        assert len(rows) == 1, rows
        if rows[0]["state"] != "settling" or time.monotonic() > deadline:
            return dict(rows[0])
        time.sleep(0.05)


def permit2_nonce(headers: dict[str, str]) -> str:
    return json.loads(base64.b64decode(headers["PAYMENT-SIGNATURE"]))["payload"]["permit2Authorization"]["nonce"]


# --- exact through Permit2 ---------------------------------------------------------------------------


@pytest.mark.parametrize("path, token_name, amount", [("/p2/exact", "usdc", 3000), ("/p2/token2", "token2", 2500)])
def test_exact_through_permit2_moves_the_price(path, token_name, amount, gw, chain, permit2_buyer, payee, run_dir, tag):
    token = chain.token if token_name == "usdc" else chain.token2
    url = f"{gw.url}{path}?{tag}"
    offer = decode_challenge(requests.get(url, timeout=30)).accepts[0]
    assert (offer.scheme, offer.network, offer.amount) == ("exact", NETWORK, str(amount))
    assert offer.asset.lower() == token.address.lower()
    assert offer.extra["assetTransferMethod"] == "permit2"

    before = balances(chain, permit2_buyer.address, payee, token=token)
    # Any ERC-20: the SDK client pays a token that is not a network's default only when allowed to.
    allowed = {"allowed_assets": [{"network": NETWORK, "asset": token.address}]}
    headers = signed_payment(permit2_buyer, url, spend_controls=allowed)
    payload = json.loads(base64.b64decode(headers["PAYMENT-SIGNATURE"]))["payload"]
    assert payload["permit2Authorization"]["spender"] == "0x402085c248EeA27D92E8b30b2C58ed07f9E20001"
    paid = requests.get(url, headers=headers, timeout=60)
    assert paid.status_code == 200, paid.text
    settlement = decode_settlement(paid)
    assert settlement.success and settlement.transaction and chain.receipt(settlement.transaction)["status"] == 1
    after = balances(chain, permit2_buyer.address, payee, token=token)
    assert after[permit2_buyer.address] - before[permit2_buyer.address] == -amount
    assert after[payee] - before[payee] == amount

    # The same payment again: refused before the facilitator, nothing moves.
    replay = requests.get(url, headers=headers, timeout=60)
    assert replay.status_code == 402
    assert decode_challenge(replay).error == "payment_already_used"
    assert balances(chain, permit2_buyer.address, payee, token=token) == after

    row = ledger_row(run_dir, permit2_nonce(headers))
    assert (row["state"], row["scheme"], row["transfer_method"], row["amount"], row["charged_amount"]) == (
        "settled", "exact", "permit2", str(amount), str(amount))


def test_a_buyer_without_permit2_allowance_is_told_to_approve(gw, chain, payee, tag):
    buyer = Account.from_key(KEYS["unapproved-buyer"])
    url = f"{gw.url}/p2/exact?{tag}"
    before = balances(chain, buyer.address, payee)
    answer = requests.get(url, headers=signed_payment(buyer, url), timeout=60)
    assert answer.status_code == 412, answer.text
    body = answer.json()
    assert body["error"] == "PERMIT2_ALLOWANCE_REQUIRED"
    assert PERMIT2 in body["message"]
    # The offer is still there, to pay again once approved.
    assert decode_challenge(answer).accepts[0].extra["assetTransferMethod"] == "permit2"
    assert balances(chain, buyer.address, payee) == before


# --- upto --------------------------------------------------------------------------------------------


def pay_upto(gw, chain, buyer, payee, path: str):
    """Pays `path` with the SDK client; returns (response, buyer's loss, payee's gain)."""
    before = balances(chain, buyer.address, payee)
    with requests_session(buyer) as session:
        response = session.get(f"{gw.url}{path}", timeout=60)
    after = balances(chain, buyer.address, payee)
    return response, before[buyer.address] - after[buyer.address], after[payee] - before[payee]


def test_upto_offer_binds_the_facilitator_and_the_upto_proxy(gw, permit2_buyer, tag):
    url = f"{gw.url}/upto/report?{tag}"
    offer = decode_challenge(requests.get(url, timeout=30)).accepts[0]
    assert (offer.scheme, offer.amount) == ("upto", str(MAXIMUM))
    assert offer.extra["assetTransferMethod"] == "permit2"
    assert offer.extra["facilitatorAddress"] == ADDRESSES["facilitator"]  # from the facilitator's /supported
    payload = json.loads(base64.b64decode(signed_payment(permit2_buyer, url)["PAYMENT-SIGNATURE"]))["payload"]
    authorization = payload["permit2Authorization"]
    assert authorization["spender"] == UPTO_PROXY
    assert authorization["witness"]["facilitator"] == ADDRESSES["facilitator"]
    assert authorization["permitted"]["amount"] == str(MAXIMUM)


@pytest.mark.parametrize("reported, charged", [
    ("4000", 4000),      # atomic units
    ("25%", 2500),       # of the maximum
    ("$0.0035", 3500),   # dollars
    (7000, 7000),        # a JSON number, as the SDK's str(amount) reads it
])
def test_upto_charges_what_the_upstream_reported(reported, charged, gw, chain, permit2_buyer, payee, run_dir, tag):
    response, lost, gained = pay_upto(gw, chain, permit2_buyer, payee, f"/upto/report?{tag}&{report(reported)}")
    assert response.status_code == 200, response.text
    assert "settlement-overrides" not in {name.lower() for name in response.headers}
    settlement = decode_settlement(response)
    assert settlement.success and settlement.amount == str(charged)
    assert (lost, gained) == (charged, charged)
    receipt = chain.receipt(settlement.transaction)
    assert receipt["status"] == 1
    row = ledger_row(run_dir, _ledger_nonce(run_dir, settlement.transaction))
    assert (row["scheme"], row["amount"], row["charged_amount"], row["charge_basis"]) == ("upto", str(MAXIMUM), str(charged), "report")


def _ledger_nonce(run_dir, transaction: str) -> str:
    """The nonce of the row the transaction settled (written while the answer went out: waited for)."""
    deadline = time.monotonic() + 10
    while not (rows := ledger_query(run_dir, "SELECT nonce FROM x402_payments WHERE transaction_hash = ?", transaction)):
        assert time.monotonic() < deadline, f"no ledger row has the transaction {transaction}"
        time.sleep(0.05)
    return rows[0]["nonce"]


def test_upto_report_above_the_maximum_is_capped_and_logged(gw, chain, permit2_buyer, payee, tag):
    response, lost, gained = pay_upto(gw, chain, permit2_buyer, payee, f"/upto/report?{tag}&{report('999999')}")
    assert response.status_code == 200
    assert decode_settlement(response).amount == str(MAXIMUM)
    assert (lost, gained) == (MAXIMUM, MAXIMUM)
    assert re.search(r"upstream usage report not used as sent.*more than the maximum", gw.proc.log_path.read_text(errors="replace"), re.S)


def test_upto_zero_moves_nothing_and_has_no_transaction(gw, chain, permit2_buyer, payee, upstream, tag):
    block = chain.block_number()
    response, lost, gained = pay_upto(gw, chain, permit2_buyer, payee, f"/upto/report?{tag}&{report('0')}")
    assert response.status_code == 200
    assert response.json()["path"] == "/upto/report"
    settlement = decode_settlement(response)
    assert settlement.success and settlement.transaction == "" and settlement.amount == "0"
    assert (lost, gained) == (0, 0)
    assert chain.transfers(block, sender=permit2_buyer.address) == []


def test_upto_replay_moves_nothing(gw, chain, permit2_buyer, payee, upstream, tag):
    url = f"{gw.url}/upto/report?{tag}&{report('1500')}"
    headers = signed_payment(permit2_buyer, url)
    before = balances(chain, permit2_buyer.address, payee)
    first = requests.get(url, headers=headers, timeout=60)
    assert first.status_code == 200 and decode_settlement(first).amount == "1500"
    middle = balances(chain, permit2_buyer.address, payee)
    assert middle[permit2_buyer.address] - before[permit2_buyer.address] == -1500
    replay = requests.get(url, headers=headers, timeout=60)
    assert replay.status_code == 402 and decode_challenge(replay).error == "payment_already_used"
    assert balances(chain, permit2_buyer.address, payee) == middle
    assert len(upstream.requests("/upto/report", tag)) == 1


@pytest.mark.parametrize("size, charged", [(2048, 2000), (1536, 1500), (100, 97), (20 * 1024, MAXIMUM)])
def test_upto_per_kib_rule(size, charged, gw, chain, permit2_buyer, payee, tag):
    # $0.001 (1000 units) per KiB of body, pro rata, rounded down; capped at the maximum.
    response, lost, gained = pay_upto(gw, chain, permit2_buyer, payee, f"/upto/kib?{tag}&size={size}")
    assert response.status_code == 200
    assert (lost, gained) == (charged, charged)


def test_upto_per_unit_rule_reads_the_json_answer(gw, chain, permit2_buyer, payee, tag):
    # $0.00001 (10 units) per token of usage.total_tokens.
    response, lost, gained = pay_upto(gw, chain, permit2_buyer, payee, f"/upto/tokens?{tag}&tokens=321")
    assert response.status_code == 200 and response.json()["usage"]["total_tokens"] == 321
    assert (lost, gained) == (3210, 3210)


def test_an_override_on_an_exact_route_is_stripped_and_ignored(gw, chain, buyer, payee, tag):
    response, lost, gained = pay_upto(gw, chain, buyer, payee, f"/plain?{tag}&{report('1')}")
    assert response.status_code == 200
    assert "settlement-overrides" not in {name.lower() for name in response.headers}
    assert (lost, gained) == (1000, 1000)


def test_upto_stream_is_relayed_as_it_comes_and_charged_at_its_end(gw, chain, permit2_buyer, payee, tag):
    """Server-sent events on an upto route with a hold-back: the events arrive as the upstream
    produces them (all but the last 64 bytes: about one event, the final usage event), the settlement happens at the
    end of the stream, and the buyer pays the usage the last event reports (250 tokens × 10 units)."""
    url = f"{gw.url}/events/metered?{tag}&n=5&interval=0.4&usage=250"
    headers = signed_payment(permit2_buyer, url)
    before = balances(chain, permit2_buyer.address, payee)
    arrivals = []
    with requests.get(url, headers=headers, stream=True, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert "settlement-overrides" not in {name.lower() for name in response.headers}
        for line in response.iter_lines():
            if line.startswith(b"data:"):
                arrivals.append((time.monotonic(), json.loads(line[5:])))
    assert [event.get("i") for _, event in arrivals[:5]] == [0, 1, 2, 3, 4]
    assert arrivals[-1][1] == {"usage": {"total_tokens": 250}}
    # Streamed, not held: each event is out once the next one pushes it past the hold-back.
    assert arrivals[4][0] - arrivals[0][0] >= 1.2
    after = balances(chain, permit2_buyer.address, payee)
    assert after[permit2_buyer.address] - before[permit2_buyer.address] == -2500
    assert after[payee] - before[payee] == 2500
