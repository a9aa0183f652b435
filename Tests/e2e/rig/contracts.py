"""Permit2 and the x402 Permit2 proxies on the local chain, at their canonical addresses.

Where the bytecode comes from and how it was checked: contracts/x402/README.md. Permit2 and the
CREATE2 deployer go into the genesis state (chain.py); the two proxies are deployed through the
deployer by a transaction, so their addresses come out of CREATE2 exactly as on a real chain.
"""

from __future__ import annotations

from pathlib import Path

from eth_utils import keccak, to_checksum_address

HERE = Path(__file__).resolve().parent.parent / "contracts" / "x402"

PERMIT2 = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
EXACT_PROXY = "0x402085c248EeA27D92E8b30b2C58ed07f9E20001"
UPTO_PROXY = "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002"
DEPLOYER = "0x4e59b44847b379578588920cA78FbF26c0B4956C"
DEPLOYER_RUNTIME = (
    "0x7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe03601600081602082378035828234f58015156039578182fd5b8082525050506014600cf3"
)
# (address, init code file, CREATE2 salt)
PROXIES = [
    (EXACT_PROXY, "exact-proxy-initcode.hex", "0x0000000000000000000000000000000000000000000000003000000007263b0e"),
    (UPTO_PROXY, "upto-proxy-initcode.hex", "0x000000000000000000000000000000000000000000000000b000000001db633d"),
]
PERMIT2_CODE_HASH = "0xdcde65555316946c298e4c60c6213eb5c3aeab4354d1f3fac5427236bcbb9ebe"
UPTO_PROXY_CODE_HASH = "0x4662dc27323421a3698be49ac95f7b0dba141c238d31ef543248d1a11f8d8eec"

ERC20_APPROVE_ABI = [{
    "type": "function", "name": "approve", "stateMutability": "nonpayable",
    "inputs": [{"name": "spender", "type": "address"}, {"name": "amount", "type": "uint256"}],
    "outputs": [{"type": "bool"}],
}]
MAX_UINT256 = 2**256 - 1


def _hex(name: str) -> bytes:
    return bytes.fromhex((HERE / name).read_text().strip().removeprefix("0x"))


def genesis_code() -> dict[str, bytes]:
    """Runtime code placed at genesis: Permit2 and the CREATE2 deployer."""
    return {PERMIT2: _hex("Permit2.runtime.hex"), DEPLOYER: bytes.fromhex(DEPLOYER_RUNTIME[2:])}


def create2_address(salt: str, init_code: bytes) -> str:
    digest = keccak(b"\xff" + bytes.fromhex(DEPLOYER[2:]) + bytes.fromhex(salt[2:]) + keccak(init_code))
    return to_checksum_address(digest[12:])


def deploy_proxies(w3, key: str) -> None:
    """Sends salt ‖ init code of each proxy to the deployer (from the funded account `key`) and
    checks that each lands at its canonical address with code."""
    from eth_account import Account

    account = Account.from_key(key)
    for address, name, salt in PROXIES:
        init_code = _hex(name)
        assert create2_address(salt, init_code) == address, f"{name}: CREATE2 gives {create2_address(salt, init_code)}, not {address}"
        if w3.eth.get_code(address):
            continue
        tx = {"from": account.address, "to": DEPLOYER, "data": "0x" + salt[2:] + init_code.hex(), "value": 0,
              "nonce": w3.eth.get_transaction_count(account.address), "gas": 5_000_000, "gasPrice": w3.eth.gas_price,
              "chainId": w3.eth.chain_id}
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction), timeout=60)
        assert receipt["status"] == 1, f"deploying {name} failed: {receipt}"
        assert w3.eth.get_code(address), f"{name}: no code at {address} after deployment"


def approve_permit2(w3, token_address: str, key: str, amount: int = MAX_UINT256) -> None:
    """The buyer's one-time `approve(Permit2, amount)` on the token."""
    from eth_account import Account

    account = Account.from_key(key)
    token = w3.eth.contract(address=token_address, abi=ERC20_APPROVE_ABI)
    tx = token.functions.approve(PERMIT2, amount).build_transaction({
        "from": account.address, "nonce": w3.eth.get_transaction_count(account.address), "gas": 100_000, "gasPrice": w3.eth.gas_price})
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction), timeout=60)
    assert receipt["status"] == 1, receipt
