"""The revenue dashboard in a real headless Chromium, after real payments on the local chain.

The official SDK pays through the gateway on several routes (one with a hostile route id), a buyer
without funds is refused by the facilitator, and an upstream failure leaves a payment unsettled.
Once with the default SQLite ledger and once with PostgreSQL. Then the dashboard (admin listener,
`admin.token` from the environment) is opened in Chromium: the
sign-in form, then the page, whose totals in the DOM must equal the ledger's (`/payments`) and the
payee's balance change on chain; the page refreshes itself after one more payment. Screenshots
(desktop light, desktop dark, phone) land in the run directory, and with E2E_SCREENSHOT_DIR also
there: dashboard.png, dashboard-dark.png, dashboard-phone.png.
"""

from __future__ import annotations

import json
import os
import secrets
import time

import pytest
import requests

from rig.browser import Browser, chromium_binary
from rig.clients import signed_payment
from rig.constants import GATEWAY_YAML_HEAD
from test_instances import fresh_database, postgres_server  # noqa: F401 (a fixture, for the PostgreSQL run)
from test_ledger import admin_port
from test_paywall_browser import csp_problems, save_screenshot

HOSTILE_ROUTE = "<img src=x onerror=alert(1)>"
DASHBOARD_YAML = GATEWAY_YAML_HEAD + """\
admin: { listen: 127.0.0.1:0, token: "${E2E_ADMIN_TOKEN}" }
routes:
  - match: "GET /weather"
    price: "$0.001"
  - match: "GET /dear"
    price: "$0.01"
  - match: "GET /boom"
    price: "$0.001"
  - id: "%s"
    match: "GET /report"
    price: "$0.002"
unmatched: deny
""" % HOSTILE_ROUTE.replace('"', '\\"')


@pytest.fixture(scope="module")
def browser(run_dir):
    binary = chromium_binary()
    if binary is None:
        pytest.fail("no Chromium found (scripts/e2e.sh installs Debian's chromium; or set E2E_CHROMIUM)")
    b = Browser.start(run_dir, binary)
    yield b
    b.stop()


def pay(gw, account, path: str, tag: str) -> requests.Response:
    url = f"{gw.url}{path}?{tag}"
    return requests.get(url, headers=signed_payment(account, url), timeout=60)


def units(atomic: int, decimals: int = 6) -> str:
    """Atomic units in the token's unit, exactly (as the gateway writes them: no trailing zeros)."""
    whole, fraction = divmod(atomic, 10**decimals)
    fraction_text = str(fraction).rjust(decimals, "0").rstrip("0")
    return f"{whole}.{fraction_text}" if fraction_text else str(whole)


def dom(page, expression: str):
    return page.evaluate(f"(() => {{ {expression} }})()")


@pytest.mark.parametrize("ledger", ["sqlite", "postgres"])
def test_dashboard_totals_equal_the_ledger_and_the_chain(ledger, request, gateway_factory, browser, chain, buyer, buyer2, poor_buyer,
                                                         payee, tag, run_dir):
    token = secrets.token_hex(24)
    yaml = DASHBOARD_YAML
    if ledger == "postgres":
        yaml += f'storage: {{ postgres: "{fresh_database(request.getfixturevalue("postgres_server"))}", instance: dashboard }}\n'
    os.environ["E2E_ADMIN_TOKEN"] = token  # read by the gateway's own ${ENV} expansion
    try:
        gw = gateway_factory(yaml, name=f"gateway-dashboard-{ledger}")
    finally:
        del os.environ["E2E_ADMIN_TOKEN"]
    admin = f"http://127.0.0.1:{admin_port(gw)}"
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{admin}/revenue", timeout=10).status_code == 401

    payee_before = chain.balance_of(payee)
    paid = [(buyer, "/weather"), (buyer, "/weather"), (buyer2, "/weather"), (buyer, "/dear"), (buyer2, "/report")]
    for account, path in paid:
        response = pay(gw, account, path, tag)
        assert response.status_code == 200, (path, response.text)
    refused = pay(gw, poor_buyer, "/weather", tag)
    assert refused.status_code == 402
    boom = pay(gw, buyer, "/boom", tag)
    assert boom.status_code == 500

    # The ledger and the chain, read independently of the page.
    rows = requests.get(f"{admin}/payments", params={"limit": 1000}, headers=bearer, timeout=10).json()["payments"]
    settled = [r for r in rows if r["state"] == "settled"]
    assert len(settled) == len(paid)
    ledger_total = sum(int(r["amount"]) for r in settled)
    chain_delta = chain.balance_of(payee) - payee_before
    assert ledger_total == chain_delta == 1000 * 3 + 10000 + 2000
    assert [r["state"] for r in rows if r["route"] == "GET /boom"] == ["released"]
    refused_rows = [r for r in rows if r["state"] == "refused"]
    assert len(refused_rows) == 1 and refused_rows[0]["reason"] == "invalid_exact_evm_insufficient_balance"

    page = browser.new_page(None, width=1280, height=1500)

    def shoot(name: str) -> None:
        if ledger == "sqlite":  # the same page either way: one set of screenshots
            save_screenshot(page, run_dir, name)

    try:
        # Signed out: the form. Signing in sets the session cookie and lands on the dashboard.
        page.navigate(f"{admin}/dashboard?window=1h", ready_js="document.readyState === 'complete' && !!document.getElementById('token')")
        page.evaluate(f"document.getElementById('token').value = {json.dumps(token)}")
        page.click("button[type=submit]")
        page.wait_until("!!document.getElementById('dashboard')", timeout=30)
        assert page.evaluate("location.pathname") == "/dashboard"
        assert page.evaluate("document.cookie") == ""  # HttpOnly
        page.navigate(f"{admin}/dashboard?window=1h", ready_js="!!document.getElementById('dashboard')")

        cards = dom(page, "return [...document.querySelectorAll('.card.total')].map(c => "
                          "({atomic: c.dataset.atomic, payments: +c.dataset.payments, text: c.querySelector('.amount').textContent}))")
        assert cards == [{"atomic": str(ledger_total), "payments": len(paid), "text": f"{units(ledger_total)} USDC"}]
        assert int(cards[0]["atomic"]) == chain_delta
        counts = dom(page, "return Object.fromEntries([...document.querySelectorAll('.card.count')].map(c => [c.dataset.outcome, +c.dataset.payments]))")
        assert counts == {"paid": len(paid), "refused": 1, "upstream_failed": 1, "settlement_failed": 0, "unknown": 0}
        reasons = dom(page, "return [...document.querySelectorAll('tr.reason')].map(r => [r.dataset.outcome, r.dataset.reason])")
        assert ["refused", "invalid_exact_evm_insufficient_balance"] in reasons
        # Per route, the page's totals are the ledger's.
        routes = dom(page, "return Object.fromEntries([...document.querySelectorAll('tr[data-route]')].map(r => [r.dataset.route, r.dataset.atomic]))")
        expected_routes: dict[str, str] = {}
        for r in settled:
            expected_routes[r["route"]] = str(int(expected_routes.get(r["route"], "0")) + int(r["amount"]))
        assert routes == expected_routes
        assert HOSTILE_ROUTE in routes  # shown as text
        assert page.evaluate("document.querySelectorAll('img').length") == 0  # never as markup
        # Recent payments: every row of the window, with its transaction linked to the explorer.
        recent = dom(page, "return [...document.querySelectorAll('tr[data-state]')].map(r => r.dataset.state)")
        assert sorted(recent) == sorted(r["state"] for r in rows)
        links = dom(page, "return [...document.querySelectorAll('a.tx')].map(a => a.getAttribute('href'))")
        assert sorted(links) == sorted(f"https://sepolia.basescan.org/tx/{r['transaction']}" for r in settled)
        assert page.evaluate("document.querySelectorAll('svg.chart rect').length") >= 2
        assert page.evaluate("document.querySelector('.latency').dataset.count") == str(len(paid))
        assert csp_problems(page) == []
        shoot("dashboard.png")

        # It refreshes itself: one more payment appears without a reload.
        generated = page.evaluate("document.getElementById('dashboard').dataset.generated")
        assert pay(gw, buyer2, "/dear", tag).status_code == 200
        page.wait_until(f"document.getElementById('dashboard').dataset.generated !== {json.dumps(generated)} && "
                        f"document.querySelector('.card.total').dataset.atomic === '{ledger_total + 10000}'", timeout=40)
        assert chain.balance_of(payee) - payee_before == ledger_total + 10000
        assert page.evaluate("document.body.classList.contains('stale')") is False
        assert csp_problems(page) == [], "after the refresh: %s" % csp_problems(page)

        page.send("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        time.sleep(0.3)
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(15, 17, 21)"
        shoot("dashboard-dark.png")
        assert csp_problems(page) == [], "dark: %s" % csp_problems(page)

        # A phone: nothing wider than the screen but the tables' own scrolling boxes.
        page.send("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]})
        page.send("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 1600, "deviceScaleFactor": 1, "mobile": True})
        page.navigate(f"{admin}/dashboard?window=1h", ready_js="!!document.getElementById('dashboard')")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shoot("dashboard-phone.png")
        problems = csp_problems(page)
        assert problems == [], problems
    finally:
        browser.close_page(page)

    # The token never reaches the log.
    gw.stop()
    assert token not in gw.proc.log_path.read_text(errors="replace")
