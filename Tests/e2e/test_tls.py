"""TLS on the gateway's main listener: a CA and a leaf made by the test with the openssl CLI,
checked by `openssl s_client` and Python's `ssl` (both verifying the chain against that CA only),
and the official SDK clients paying over https on the local chain."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
import requests

import httpx
from x402.http.clients import x402_httpx_transport

from rig.clients import async_client, decode_challenge, decode_settlement, requests_session
from rig.constants import GATEWAY_YAML_HEAD, NETWORK
from rig.pki import make_ca, make_leaf

TLS_ROUTES = """\
routes:
  - match: "GET /weather"
    price: "$0.001"
    description: Current weather
    mimeType: application/json
  - match: "/public/*"
    free: true
unmatched: deny
"""


@pytest.fixture(scope="module")
def pki(run_dir) -> Path:
    folder = run_dir / "pki"
    make_ca(folder)
    make_leaf(folder, "leaf")
    make_leaf(folder, "other")
    return folder


@pytest.fixture(scope="module")
def tls_gateway(gateway_factory, pki):
    gateway = gateway_factory(GATEWAY_YAML_HEAD + f'tls: {{ cert: "{pki}/leaf.pem", key: "{pki}/leaf.key" }}\n' + TLS_ROUTES,
                              name="gateway-tls")
    gateway.origin = "https://localhost"
    gateway.moved_to(gateway.port)
    return gateway


def s_client(port: int, pki: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost", "-CAfile", str(pki / "ca.pem"),
         "-verify_return_error", "-verify_hostname", "localhost", *extra],
        input="", capture_output=True, text=True, timeout=30)


def test_openssl_s_client_verifies_the_chain(tls_gateway, pki):
    done = s_client(tls_gateway.port, pki, "-alpn", "http/1.1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Verify return code: 0 (ok)" in done.stdout, done.stdout
    assert "ALPN protocol: http/1.1" in done.stdout, done.stdout
    assert "New, TLSv1.3" in done.stdout, done.stdout
    assert "subject=CN = localhost" in done.stdout and "issuer=CN = x402-gateway e2e CA" in done.stdout, done.stdout
    # TLS 1.2 is offered too; 1.1 is not.
    tls12 = s_client(tls_gateway.port, pki, "-tls1_2")
    assert tls12.returncode == 0 and "Verify return code: 0 (ok)" in tls12.stdout, tls12.stdout + tls12.stderr
    assert s_client(tls_gateway.port, pki, "-tls1_1").returncode != 0
    # A client that does not know the CA refuses the chain.
    unknown = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{tls_gateway.port}", "-servername", "localhost",
                              "-verify_return_error", "-CApath", "/nonexistent"], input="", capture_output=True, text=True, timeout=30)
    assert unknown.returncode != 0


def test_python_ssl_verifies_the_chain(tls_gateway, pki):
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", tls_gateway.port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            peer = tls.getpeercert()
            assert ("DNS", "localhost") in peer["subjectAltName"]
            tls.sendall(b"GET /weather HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 402"), answer[:200]
    # The system's roots do not know the test CA: verification fails closed.
    with socket.create_connection(("127.0.0.1", tls_gateway.port), timeout=30) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="localhost")


@pytest.mark.parametrize("sdk_client", ["httpx", "requests"])
def test_sdk_client_pays_over_https(sdk_client, tls_gateway, pki, chain, upstream, buyer, payee, tag):
    url = f"{tls_gateway.url}/weather?{tag}"
    ca = str(pki / "ca.pem")
    unpaid = requests.get(url, verify=ca, timeout=30)
    assert unpaid.status_code == 402
    challenge = decode_challenge(unpaid)
    assert challenge.resource.url == url  # the https URL the client asked for
    before = (chain.balance_of(buyer.address), chain.balance_of(payee))

    if sdk_client == "httpx":
        # The SDK's payment transport wraps a transport that trusts the test CA.
        transport = x402_httpx_transport(async_client(buyer), transport=httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=ca)))

        async def pay():
            async with httpx.AsyncClient(transport=transport, timeout=60) as client:
                response = await client.get(url)
                await response.aread()
                return response
        response = asyncio.run(pay())
    else:
        # Per request: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        response = requests_session(buyer).get(url, timeout=60, verify=ca)

    assert response.status_code == 200, response.text
    assert response.json()["path"] == "/weather"
    settlement = decode_settlement(response)
    assert settlement.success and settlement.network == NETWORK
    assert chain.receipt(settlement.transaction)["status"] == 1
    assert (chain.balance_of(buyer.address), chain.balance_of(payee)) == (before[0] - 1000, before[1] + 1000)
    seen = upstream.requests("/weather", tag)
    assert len(seen) == 1 and seen[0]["headers"].get("x-forwarded-proto") == "https"


def test_check_rejects_a_key_that_is_not_the_certificates(pki, run_dir):
    config = run_dir / "tls-mismatch.yaml"
    config.write_text(f'tls: {{ cert: "{pki}/leaf.pem", key: "{pki}/other.key" }}\n'
                      "upstreams: { api: http://127.0.0.1:9 }\nroutes: []\n")
    done = subprocess.run([os.environ["X402_GATEWAY_BIN"], "check", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"{config}:1:" in done.stderr and "tls.key: the private key in" in done.stderr and "does not belong to the certificate" in done.stderr, done.stderr
    config.write_text(f'tls: {{ cert: "{pki}/leaf.pem", key: "{pki}/leaf.key" }}\n'
                      "upstreams: { api: http://127.0.0.1:9 }\nroutes: []\n")
    done = subprocess.run([os.environ["X402_GATEWAY_BIN"], "check", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "TLS CN=localhost; names localhost, 127.0.0.1; valid until" in done.stdout, done.stdout
