"""Paying clients built from the official x402 SDK.

The SDK's transports (httpx, requests) pay on their own; `signed_payment` exposes the step in
between (402 → PaymentPayload → header) so tests can replay, move or hold a payment.
"""

from __future__ import annotations

import json

import requests
from eth_account.signers.local import LocalAccount
from x402 import x402Client, x402ClientSync
from x402.http import x402HTTPClientSync
from x402.http.clients.httpx import x402HttpxClient
from x402.http.clients.requests import x402_requests
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.upto import UptoEvmClientScheme
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentRequired, SettleResponse
from x402.schemas.v1 import PaymentRequiredV1


def sync_client(account: LocalAccount, spend_controls=None) -> x402ClientSync:
    """`exact` (EIP-3009, or Permit2 when the offer says assetTransferMethod: permit2) and `upto`.
    `spend_controls` as the SDK takes them (e.g. to allow a token that is not a default asset)."""
    client = register_exact_evm_client(x402ClientSync(), EthAccountSigner(account))
    if spend_controls is not None:
        client.set_spend_controls(spend_controls)
    client.register("eip155:*", UptoEvmClientScheme(EthAccountSigner(account)))
    return client


def async_client(account: LocalAccount) -> x402Client:
    client = register_exact_evm_client(x402Client(), EthAccountSigner(account))
    client.register("eip155:*", UptoEvmClientScheme(EthAccountSigner(account)))
    return client


def httpx_session(account: LocalAccount, **kwargs) -> x402HttpxClient:
    """The SDK's httpx AsyncClient that pays 402s (x402 v2)."""
    return x402HttpxClient(async_client(account), **kwargs)


def requests_session(account: LocalAccount) -> requests.Session:
    """The SDK's requests Session that pays 402s (x402 v2)."""
    return x402_requests(sync_client(account))


def http_helper(account: LocalAccount | None = None) -> x402HTTPClientSync:
    """Header encoding/decoding as the SDK client does it (an account only if it must sign)."""
    return x402HTTPClientSync(sync_client(account) if account else x402ClientSync())


def decode_challenge(response, version: int = 2) -> PaymentRequired | PaymentRequiredV1:
    """Reads a 402 the way the SDK client does: v2 from PAYMENT-REQUIRED, v1 from the JSON body."""
    helper = http_helper()
    body = json.loads(response.content) if response.content else None
    if version == 1:
        return helper.get_payment_required_response(lambda name: None, body)
    return helper.get_payment_required_response(response.headers.get, body)


def decode_settlement(response) -> SettleResponse:
    """PAYMENT-RESPONSE (v2) or X-PAYMENT-RESPONSE (v1), decoded by the SDK."""
    return http_helper().get_payment_settle_response(response.headers.get)


def signed_payment(account: LocalAccount, url: str, version: int = 2, spend_controls=None) -> dict[str, str]:
    """Asks `url` for its 402 and returns the payment header the SDK client would send back.

    version 2 → {"PAYMENT-SIGNATURE": ...}; version 1 → {"X-PAYMENT": ...} built by the SDK's v1
    scheme from the v1 body of the same 402.
    """
    response = requests.get(url, timeout=30)
    assert response.status_code == 402, f"{url}: expected 402, got {response.status_code}: {response.text}"
    challenge = decode_challenge(response, version)
    client = sync_client(account, spend_controls)
    payload = client.create_payment_payload(challenge)
    assert payload.x402_version == version
    return x402HTTPClientSync(client).encode_payment_signature_header(payload)
