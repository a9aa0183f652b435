#!/usr/bin/env python3
"""Regenerates permit2-vectors.json next to this file with eth-account's EIP-712 encoder.

    .venv-e2e/bin/python Tests/X402CryptoTests/Vectors/generate_permit2_vectors.py

(the end-to-end venv that scripts/e2e.sh builds has eth-account 0.14.0; any eth-account >= 0.13 does).

The types are the official x402 Python SDK 2.25's (`PERMIT2_WITNESS_TYPES` and
`UPTO_PERMIT2_WITNESS_TYPES` in x402/mechanisms/evm/constants.py), the domain is Permit2's own
(name "Permit2", chain id, the canonical Permit2 address; no version). Every digest below comes from
eth-account's `encode_typed_data(full_message=...)`, an implementation independent of the gateway's.
"""
import json
import os

from eth_account import Account
from eth_account._utils.encode_typed_data.encoding_and_hashing import hash_domain, hash_struct
from eth_account.messages import encode_typed_data

PERMIT2 = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
EXACT_PROXY = "0x402085c248EeA27D92E8b30b2C58ed07f9E20001"
UPTO_PROXY = "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002"
UINT256_MAX = 2**256 - 1

KEYS = {
    "hardhat-0": "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "hardhat-1": "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
}
H0 = Account.from_key(KEYS["hardhat-0"]).address
H1 = Account.from_key(KEYS["hardhat-1"]).address
assert H0 == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

DOMAIN_TYPE = [
    {"name": "name", "type": "string"}, {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
COMMON = {
    "PermitWitnessTransferFrom": [
        {"name": "permitted", "type": "TokenPermissions"}, {"name": "spender", "type": "address"},
        {"name": "nonce", "type": "uint256"}, {"name": "deadline", "type": "uint256"},
        {"name": "witness", "type": "Witness"},
    ],
    "TokenPermissions": [{"name": "token", "type": "address"}, {"name": "amount", "type": "uint256"}],
}
WITNESS = {
    "exact": [{"name": "to", "type": "address"}, {"name": "validAfter", "type": "uint256"}],
    "upto": [{"name": "to", "type": "address"}, {"name": "facilitator", "type": "address"},
             {"name": "validAfter", "type": "uint256"}],
}


def hx(b: bytes) -> str:
    return "0x" + b.hex()


def domain(chain_id: int) -> dict:
    return {"name": "Permit2", "chainId": chain_id, "verifyingContract": PERMIT2}


def vector(label: str, witness: str, chain_id: int, auth: dict, signer: str | None = None) -> dict:
    types = {"EIP712Domain": DOMAIN_TYPE, **COMMON, "Witness": WITNESS[witness]}
    w = {"to": auth["witness"]["to"], "validAfter": int(auth["witness"]["validAfter"])}
    if witness == "upto":
        w["facilitator"] = auth["witness"]["facilitator"]
    message = {
        "permitted": {"token": auth["permitted"]["token"], "amount": int(auth["permitted"]["amount"])},
        "spender": auth["spender"], "nonce": int(auth["nonce"]), "deadline": int(auth["deadline"]), "witness": w,
    }
    full = {"types": types, "primaryType": "PermitWitnessTransferFrom", "domain": domain(chain_id), "message": message}
    signable = encode_typed_data(full_message=full)
    out = {
        "label": label, "witness": witness, "chainId": chain_id, "authorization": auth,
        "domainSeparator": hx(hash_domain(domain(chain_id))),
        "structHash": hx(hash_struct("PermitWitnessTransferFrom", types, message)),
    }
    signed = Account.sign_message(signable, KEYS[signer or "hardhat-0"])
    out["digest"] = hx(signed.message_hash)
    if signer is not None:
        assert Account.from_key(KEYS[signer]).address == auth["from"]
        out["signer"] = signer
        out["signature"] = hx(signed.signature)
    return out


def auth(frm, token, amount, spender, nonce, deadline, to, valid_after, facilitator=None) -> dict:
    witness = {"to": to, "validAfter": str(valid_after)}
    if facilitator is not None:
        witness["facilitator"] = facilitator
    return {"from": frm, "permitted": {"token": token, "amount": str(amount)}, "spender": spender,
            "nonce": str(nonce), "deadline": str(deadline), "witness": witness}


USDC_BASE_SEPOLIA = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
PAY_TO = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
FACILITATOR = "0x1Ab4973a48dc892Cd9971ECE8e01DcC7688f8F23"

vectors = [
    vector("exact: Base Sepolia USDC, Hardhat #0", "exact", 84532,
           auth(H0, USDC_BASE_SEPOLIA, 10000, EXACT_PROXY, 123456789, 1767225900, PAY_TO, 0), "hardhat-0"),
    vector("exact: Base, Hardhat #1, large nonce", "exact", 8453,
           auth(H1, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", 1, EXACT_PROXY,
                int.from_bytes(b"x402-gateway permit2 nonce".ljust(32, b"\x00"), "big"), 1767225900, H0, 1767225000), "hardhat-1"),
    vector("upto: Base Sepolia USDC, Hardhat #0", "upto", 84532,
           auth(H0, USDC_BASE_SEPOLIA, 50000, UPTO_PROXY, 987654321, 1767225900, PAY_TO, 0, FACILITATOR), "hardhat-0"),
    vector("upto: spec example (no key)", "upto", 84532,
           auth("0x857b06519E91e3A54538791bDbb0E22373e36b66", USDC_BASE_SEPOLIA, 5000000, UPTO_PROXY,
                int("f3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480", 16), 1740672154, PAY_TO, 1740672089,
                FACILITATOR)),
    vector("upto: MegaETH 18 decimals, Hardhat #1, maximal fields", "upto", 4326,
           auth(H1, "0xFAfDdbb3FC7688494971a79cc65DCa3EF82079E7", UINT256_MAX, UPTO_PROXY, UINT256_MAX, UINT256_MAX, H0,
                UINT256_MAX, H1), "hardhat-1"),
]

out = {
    "comment": "Permit2 PermitWitnessTransferFrom vectors (x402 exact and upto witnesses) from eth-account; "
               "regenerate with generate_permit2_vectors.py in this folder.",
    "typeHashes": {
        "exact": hx(__import__("eth_utils").keccak(text="PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,uint256 validAfter)")),
        "upto": hx(__import__("eth_utils").keccak(text="PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)TokenPermissions(address token,uint256 amount)Witness(address to,address facilitator,uint256 validAfter)")),
    },
    "vectors": vectors,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "permit2-vectors.json")
with open(path, "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
print(f"wrote {len(vectors)} vectors to {path}")
