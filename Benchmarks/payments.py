"""Pre-generated x402 v2 payments for the paid-path benchmark.

Each payment is a distinct, valid EIP-3009 TransferWithAuthorization signed by a test key
(Hardhat #0): random 32-byte nonce, validAfter = now - 600, validBefore = now + 3600. The
`accepted` and `resource` objects are copied verbatim from the contender's own 402, so the
payment matches whatever that server offers. Signing uses libsecp256k1 through coincurve and
runs in one process per core. The first payment is cross-checked with eth-account.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import signal
import time

from coincurve import PrivateKey
from Crypto.Hash import keccak

TEST_KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
TEST_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def _typehashes() -> tuple[bytes, bytes]:
    domain = keccak256(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    transfer = keccak256(
        b"TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
        b"uint256 validBefore,bytes32 nonce)"
    )
    return domain, transfer


def _address_word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def _uint_word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def domain_separator(name: str, version: str, chain_id: int, contract: str) -> bytes:
    domain_typehash, _ = _typehashes()
    return keccak256(
        domain_typehash
        + keccak256(name.encode())
        + keccak256(version.encode())
        + _uint_word(chain_id)
        + _address_word(contract)
    )


def _job(args: tuple) -> list[str]:
    accepted, resource, count, valid_after, valid_before = args
    _, transfer_typehash = _typehashes()
    extra = accepted.get("extra") or {}
    chain_id = int(accepted["network"].split(":", 1)[1])
    separator = domain_separator(extra["name"], extra["version"], chain_id, accepted["asset"])
    key = PrivateKey(TEST_KEY)
    to = accepted["payTo"]
    value = int(accepted["amount"])
    static = (
        transfer_typehash
        + _address_word(TEST_ADDRESS)
        + _address_word(to)
        + _uint_word(value)
        + _uint_word(valid_after)
        + _uint_word(valid_before)
    )
    head = {"x402Version": 2}
    if resource is not None:
        head["resource"] = resource
    head["accepted"] = accepted
    prefix = json.dumps(head, separators=(",", ":"))[:-1]
    auth_prefix = json.dumps(
        {
            "from": TEST_ADDRESS,
            "to": to,
            "value": str(value),
            "validAfter": str(valid_after),
            "validBefore": str(valid_before),
        },
        separators=(",", ":"),
    )[:-1]
    out = []
    for _ in range(count):
        nonce = os.urandom(32)
        digest = keccak256(b"\x19\x01" + separator + keccak256(static + nonce))
        sig = key.sign_recoverable(digest, hasher=None)
        signature = sig[:64] + bytes([sig[64] + 27])
        text = (
            prefix
            + ',"payload":{"authorization":'
            + auth_prefix
            + ',"nonce":"0x'
            + nonce.hex()
            + '"},"signature":"0x'
            + signature.hex()
            + '"}}'
        )
        out.append(base64.b64encode(text.encode()).decode())
    return out


def _worker_init() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def generate(accepted: dict, resource: dict | None, count: int, workers: int | None = None) -> list[str]:
    """`count` distinct base64 PAYMENT-SIGNATURE values for `accepted`."""
    now = int(time.time())
    valid_after, valid_before = now - 600, now + 3600
    workers = workers or os.cpu_count() or 1
    chunk = (count + workers - 1) // workers
    jobs = [(accepted, resource, min(chunk, count - i * chunk), valid_after, valid_before) for i in range(workers)]
    jobs = [j for j in jobs if j[2] > 0]
    if len(jobs) == 1:
        return _job(jobs[0])
    pool = multiprocessing.get_context("fork").Pool(len(jobs), initializer=_worker_init)
    try:
        parts = pool.map(_job, jobs)
    finally:
        pool.close()
        pool.join()
    return [p for part in parts for p in part]


def check_with_eth_account(header: str) -> None:
    """Recovers the signer of one payment with eth-account (independent EIP-712 code)."""
    from eth_account import Account
    from eth_account.messages import encode_typed_data

    payload = json.loads(base64.b64decode(header))
    accepted = payload["accepted"]
    auth = payload["payload"]["authorization"]
    typed = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "TransferWithAuthorization": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "validAfter", "type": "uint256"},
                {"name": "validBefore", "type": "uint256"},
                {"name": "nonce", "type": "bytes32"},
            ],
        },
        "primaryType": "TransferWithAuthorization",
        "domain": {
            "name": accepted["extra"]["name"],
            "version": accepted["extra"]["version"],
            "chainId": int(accepted["network"].split(":")[1]),
            "verifyingContract": accepted["asset"],
        },
        "message": {
            "from": auth["from"],
            "to": auth["to"],
            "value": int(auth["value"]),
            "validAfter": int(auth["validAfter"]),
            "validBefore": int(auth["validBefore"]),
            "nonce": bytes.fromhex(auth["nonce"][2:]),
        },
    }
    recovered = Account.recover_message(encode_typed_data(full_message=typed), signature=payload["payload"]["signature"])
    if recovered != TEST_ADDRESS:
        raise SystemExit(f"payment generator is wrong: signature recovers to {recovered}, not {TEST_ADDRESS}")


def write_per_thread(headers: list[str], directory: str, name: str, threads: int) -> list[str]:
    """Splits the payments into one file per wrk thread (each thread reads only its own)."""
    paths = []
    for t in range(threads):
        path = os.path.join(directory, f"{name}.{t + 1}.txt")
        with open(path, "w") as f:
            f.write("\n".join(headers[t::threads]))
            f.write("\n")
        paths.append(path)
    return paths
