#!/usr/bin/env python3
"""Regenerates crypto-vectors.json next to this file from independent Python implementations.

    pip install pycryptodome eth-account
    python3 Tests/X402CryptoTests/Vectors/generate_vectors.py

The constants quoted from the protocol notes are asserted against the Python libraries before
anything is written, so a regenerated file can only differ in the vectors this script derives.
"""
import json
import os

from Crypto.Hash import SHA3_256, keccak
from eth_account import Account
from eth_account._utils.encode_typed_data.encoding_and_hashing import hash_domain, hash_struct
from eth_account.messages import encode_typed_data
from eth_keys import keys
from eth_utils import to_checksum_address

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798
UINT256_MAX = 2**256 - 1


def k256(data: bytes) -> str:
    h = keccak.new(digest_bits=256)
    h.update(data)
    return "0x" + h.hexdigest()


def hx(b: bytes) -> str:
    return "0x" + b.hex()


def word(n: int) -> bytes:
    return n.to_bytes(32, "big")


# --- Keccak-256 -------------------------------------------------------------------------------
keccak_vectors = [
    {"label": "empty", "utf8": "", "hash": k256(b"")},
    {"label": "abc", "utf8": "abc", "hash": k256(b"abc")},
]
for n in (135, 136, 137, 200, 271, 272, 273, 1000):
    keccak_vectors.append({"label": f"{n} bytes of 'a'", "utf8": "a" * n, "hash": k256(b"a" * n)})
all_bytes = bytes(range(256))
keccak_vectors.append({"label": "bytes 0x00...0xff", "hex": hx(all_bytes), "hash": k256(all_bytes)})
assert keccak_vectors[0]["hash"] == "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
assert keccak_vectors[1]["hash"] == "0x4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
sha3_empty = "0x" + SHA3_256.new(b"").hexdigest()
assert sha3_empty == "0xa7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"

# --- EIP-55 -----------------------------------------------------------------------------------
eip55_valid = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]
for a in eip55_valid:
    assert a == to_checksum_address(a.lower())
for bad in ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAEd", "0xfb6916095ca1df60bB79Ce92cE3Ea74c37c5d359"):
    assert bad != to_checksum_address(bad.lower())
eip55_bad = [
    # The first vector with one letter's case flipped (e -> E near the end).
    {"input": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAEd", "expected": eip55_valid[0]},
    {"input": "0xfb6916095ca1df60bB79Ce92cE3Ea74c37c5d359", "expected": eip55_valid[1]},
]

# --- EIP-712 type hashes and domains ----------------------------------------------------------
DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
TWA_TYPE = ("TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
            "uint256 validBefore,bytes32 nonce)")
type_hashes = [
    {"type": DOMAIN_TYPE, "hash": k256(DOMAIN_TYPE.encode())},
    {"type": TWA_TYPE, "hash": k256(TWA_TYPE.encode())},
]
assert type_hashes[0]["hash"] == "0x8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f"
assert type_hashes[1]["hash"] == "0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"

DOMAINS = {
    "base-sepolia": ("USDC", "2", 84532, "0x036CbD53842c5426634e7929541eC2318f3dCF7e"),
    "base": ("USD Coin", "2", 8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
    "polygon": ("USD Coin", "2", 137, "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359"),
}
EXPECTED_SEPARATORS = {
    "base-sepolia": "0x71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818",
    "base": "0x02fa7265e7c5d81118673727957699e4d68f74cd74b7db77da710fe8a2c7834f",
    "polygon": "0xcaa2ce1a5703ccbe253a34eb3166df60a705c561b44b192061e28f2a985be2ca",
}


def domain_dict(label):
    name, version, chain_id, contract = DOMAINS[label]
    return {"name": name, "version": version, "chainId": chain_id, "verifyingContract": contract}


domains = []
for label in DOMAINS:
    sep = hx(hash_domain(domain_dict(label)))
    assert sep == EXPECTED_SEPARATORS[label], label
    domains.append({"label": label, **domain_dict(label), "separator": sep})

# --- Keys -------------------------------------------------------------------------------------
KEYS = {
    "hardhat-0": "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "hardhat-1": "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
}
key_vectors = [{"label": l, "privateKey": pk, "address": Account.from_key(pk).address} for l, pk in KEYS.items()]
assert key_vectors[0]["address"] == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
assert key_vectors[1]["address"] == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

# --- Authorizations ---------------------------------------------------------------------------
TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"},
    ],
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"}, {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"}, {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"}, {"name": "nonce", "type": "bytes32"},
    ],
}


def authorization_vector(label, domain_label, auth, signer=None):
    message = {
        "from": auth["from"], "to": auth["to"], "value": int(auth["value"]),
        "validAfter": int(auth["validAfter"]), "validBefore": int(auth["validBefore"]),
        "nonce": bytes.fromhex(auth["nonce"][2:]),
    }
    full = {"types": TYPES, "primaryType": "TransferWithAuthorization",
            "domain": domain_dict(domain_label), "message": message}
    vector = {
        "label": label, "domain": domain_label, "authorization": auth,
        "structHash": hx(hash_struct("TransferWithAuthorization", TYPES, message)),
    }
    signable = encode_typed_data(full_message=full)
    if signer is None:
        # The digest alone (no key for `from`): sign with a throwaway key only to read the hash.
        vector["digest"] = hx(Account.sign_message(signable, KEYS["hardhat-0"]).message_hash)
    else:
        signed = Account.sign_message(signable, KEYS[signer])
        vector["digest"] = hx(signed.message_hash)
        vector["signer"] = signer
        vector["signature"] = hx(signed.signature)
        assert Account.from_key(KEYS[signer]).address == auth["from"]
    return vector


H0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
H1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
notes_auth = {"from": H0, "to": H1, "value": "10000", "validAfter": "1767225000",
              "validBefore": "1767225900", "nonce": "0x" + "11" * 32}
authorizations = [
    authorization_vector("notes: Base Sepolia, Hardhat #0", "base-sepolia", notes_auth, "hardhat-0"),
    authorization_vector("notes: Base, Hardhat #0", "base", notes_auth, "hardhat-0"),
    authorization_vector("spec example: Base Sepolia", "base-sepolia", {
        "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66", "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "value": "10000", "validAfter": "1740672089", "validBefore": "1740672154",
        "nonce": "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"}),
    authorization_vector("derived: Polygon, Hardhat #1, maximal uint256 fields", "polygon", {
        "from": H1, "to": H0, "value": str(UINT256_MAX), "validAfter": "0",
        "validBefore": str(UINT256_MAX), "nonce": k256(b"x402-gateway vector polygon")}, "hardhat-1"),
]
# A derived vector whose signature has v = 28, so both recovery ids are covered.
for i in range(64):
    candidate = authorization_vector(f"derived: Base Sepolia, Hardhat #1, v = 28 (nonce seed {i})", "base-sepolia", {
        "from": H1, "to": H0, "value": "1", "validAfter": "1767225000", "validBefore": "1767228600",
        "nonce": k256(f"x402-gateway vector v28 {i}".encode())}, "hardhat-1")
    if candidate["signature"].endswith("1c"):
        authorizations.append(candidate)
        break
else:
    raise SystemExit("no v = 28 candidate found")

assert authorizations[0]["digest"] == "0xca61f5c0a52f0fc6d62b5c9d78db561d7398ebbc46378e26503c454b3b5051ee"
assert authorizations[0]["signature"] == (
    "0x99aef02d768b161ca091fa9c3166d45cc308fa303391cd20098ef71863af842704202fd731146a1a854ef724b8123d51108f206ec60390781a3eda60357f82371b")
assert authorizations[1]["digest"] == "0x4207e1ce841635be247934cf1352e93efc5d91e7770be4f8a939ed47731d0552"
assert authorizations[1]["signature"] == (
    "0xae28da6b4bd8eac4f182654976bb3e24d28a5bbe69beea27dfa00c8a3a39f77c0e8827287aa18d2853935dfa504a92aca75808d670e91cce5b5f6ab776e23af31c")
assert authorizations[2]["structHash"] == "0x49ad644555c7bdf3ea4fc022a4940ae5589b230b1dde0065c5504fa19bbe39a4"
assert authorizations[2]["digest"] == "0xf256992871671abcb27ff92885a7afa46218724e5fc0bac35d050115aa1d22e6"

# --- Signatures that recovery must refuse, and edge cases it must accept --------------------
base = authorizations[0]
digest = base["digest"]
sig = bytes.fromhex(base["signature"][2:])
r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
half = N // 2
rejected = [
    {"label": "high-s twin (s' = n - s, v flipped)", "digest": digest,
     "signature": hx(r + word(N - s) + bytes([55 - v]))},
    {"label": "v = 29", "digest": digest, "signature": hx(sig[:64] + bytes([29]))},
    {"label": "v = 26", "digest": digest, "signature": hx(sig[:64] + bytes([26]))},
    {"label": "v = 2", "digest": digest, "signature": hx(sig[:64] + bytes([2]))},
    {"label": "r = 0", "digest": digest, "signature": hx(word(0) + sig[32:])},
    {"label": "s = 0", "digest": digest, "signature": hx(r + word(0) + bytes([v]))},
    {"label": "r = n", "digest": digest, "signature": hx(word(N) + sig[32:])},
    {"label": "r = 2^256 - 1", "digest": digest, "signature": hx(word(UINT256_MAX) + sig[32:])},
    {"label": "s = n", "digest": digest, "signature": hx(r + word(N) + bytes([v]))},
    {"label": "s = n/2 + 1", "digest": digest, "signature": hx(word(GX) + word(half + 1) + bytes([27]))},
    {"label": "64 bytes (no v)", "digest": digest, "signature": hx(sig[:64])},
    {"label": "66 bytes", "digest": digest, "signature": hx(sig + b"\x00")},
    {"label": "empty", "digest": digest, "signature": "0x"},
    {"label": "31-byte digest", "digest": digest[:-2], "signature": base["signature"]},
]
# s = n/2 exactly is the largest low-s value; with r = Gx (a valid x coordinate) it recovers to some key.
edge_sig = word(GX) + word(half) + bytes([27])
edge_address = keys.Signature(vrs=(0, GX, half)).recover_public_key_from_msg_hash(
    bytes.fromhex(digest[2:])).to_checksum_address()
accepted_edges = [
    {"label": "s = n/2 exactly, r = Gx", "digest": digest, "signature": hx(edge_sig), "address": edge_address},
]

out = {
    "comment": "Known-answer vectors for X402Crypto; regenerate with generate_vectors.py in this folder.",
    "keccak256": keccak_vectors,
    "sha3_256_empty": sha3_empty,
    "eip55": {"valid": eip55_valid, "badChecksum": eip55_bad},
    "typeHashes": type_hashes,
    "domains": domains,
    "keys": key_vectors,
    "authorizations": authorizations,
    "rejectedSignatures": rejected,
    "acceptedEdgeSignatures": accepted_edges,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crypto-vectors.json")
with open(path, "w") as f:
    json.dump(out, f, indent=2)
    f.write("\n")
print("wrote", path)
