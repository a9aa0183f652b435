"""The rig itself: the chain behaves like the parts of geth and Base Sepolia USDC the SDK relies on.

These run first and fail loudly if a trap of eth-tester/py-evm comes back (chain id, stale pending
timestamp, gas charged on eth_call, refused future nonces, non-geth reverts, bare receipts).
"""

import os
import time

import requests
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak
from web3 import Web3

from rig.constants import ADDRESSES, CHAIN_ID, KEYS, TRANSFER_TOPIC, USDC_ADDRESS, USDC_NAME, USDC_VERSION

# Base Sepolia USDC's EIP-712 domain separator (computed from ("USDC", "2", 84532, address)).
BASE_SEPOLIA_USDC_DOMAIN_SEPARATOR = "71f17a3b2ff373b803d70a5a07c046c1a2bc8e89c09ef722fcb047abe94c9818"


def authorization(account, to: str, value: int, valid_after: int, valid_before: int, nonce: bytes | None = None):
    """A signed EIP-3009 TransferWithAuthorization for the local USDC."""
    nonce = nonce or os.urandom(32)
    message = {"from": account.address, "to": to, "value": value, "validAfter": valid_after,
               "validBefore": valid_before, "nonce": nonce}
    signed = account.sign_typed_data(
        domain_data={"name": USDC_NAME, "version": USDC_VERSION, "chainId": CHAIN_ID, "verifyingContract": USDC_ADDRESS},
        message_types={"TransferWithAuthorization": [
            {"name": "from", "type": "address"}, {"name": "to", "type": "address"},
            {"name": "value", "type": "uint256"}, {"name": "validAfter", "type": "uint256"},
            {"name": "validBefore", "type": "uint256"}, {"name": "nonce", "type": "bytes32"}]},
        message_data=message,
    )
    return message, signed


def rpc(chain, method, *params):
    return requests.post(chain.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=30).json()


def test_chain_is_base_sepolia_with_usdc_at_its_address(chain):
    assert chain.w3.eth.chain_id == CHAIN_ID
    token = chain.token.functions
    assert (token.name().call(), token.version().call(), token.decimals().call()) == ("USDC", "2", 6)
    assert token.DOMAIN_SEPARATOR().call().hex().removeprefix("0x") == BASE_SEPOLIA_USDC_DOMAIN_SEPARATOR
    assert chain.w3.eth.get_block("latest")["baseFeePerGas"] == 0


def test_eth_call_charges_no_gas(chain, poor_buyer):
    # An account with no ether at all can simulate a transfer (the facilitator's verify does this).
    assert chain.w3.eth.get_balance(poor_buyer.address) == 0
    assert chain.token.functions.balanceOf(poor_buyer.address).call({"from": poor_buyer.address, "gas": 1_000_000}) == 0


def test_reverts_are_reported_like_geth(chain, buyer):
    call = chain.token.functions.mint(buyer.address, 1)._encode_transaction_data()
    reply = rpc(chain, "eth_call", {"from": buyer.address, "to": USDC_ADDRESS, "data": call}, "latest")
    assert reply["error"]["code"] == 3
    assert reply["error"]["message"] == "execution reverted: FiatToken: caller is not a minter"
    assert reply["error"]["data"].startswith("0x08c379a0")


def test_pending_block_time_follows_the_clock(chain, buyer, payee):
    # After idle time, an authorization that became valid a moment ago must simulate fine.
    time.sleep(2.5)
    # The pending block's time is the wall clock, or one second after the latest block when blocks
    # were mined faster than one a second (earlier tests settle hundreds of payments): it runs ahead.
    now = max(int(time.time()), chain.w3.eth.get_block("latest")["timestamp"] + 1)
    message, signed = authorization(buyer, payee, 1, now - 1, now + 60)
    chain.token.functions.transferWithAuthorization(
        message["from"], message["to"], 1, message["validAfter"], message["validBefore"], message["nonce"],
        signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")).call()


def test_future_nonce_is_queued_until_the_gap_closes(chain):
    minter = Account.from_key(KEYS["minter"])
    w3 = chain.w3
    nonce = w3.eth.get_transaction_count(minter.address)

    def signed(n, amount):
        tx = chain.token.functions.mint(ADDRESSES["payee-sse"], amount).build_transaction(
            {"from": minter.address, "nonce": n, "gas": 200_000, "gasPrice": w3.eth.gas_price})
        return minter.sign_transaction(tx).raw_transaction

    later = w3.eth.send_raw_transaction(signed(nonce + 1, 2))
    assert rpc(chain, "eth_getTransactionReceipt", "0x" + bytes(later).hex())["result"] is None
    first = w3.eth.send_raw_transaction(signed(nonce, 1))
    a = w3.eth.wait_for_transaction_receipt(first, timeout=10)
    b = w3.eth.wait_for_transaction_receipt(later, timeout=10)
    assert (a["status"], b["status"]) == (1, 1)
    assert a["blockNumber"] < b["blockNumber"]


def test_transfer_with_authorization_both_forms_and_fiat_token_reasons(chain, buyer, payee):
    facilitator = Account.from_key(KEYS["facilitator"])
    w3 = chain.w3
    now = int(time.time())
    start_block = chain.block_number()
    before = (chain.balance_of(buyer.address), chain.balance_of(payee))

    def send(data: bytes):
        tx = {"to": USDC_ADDRESS, "data": data, "gas": 300_000, "gasPrice": w3.eth.gas_price, "chainId": CHAIN_ID,
              "nonce": w3.eth.get_transaction_count(facilitator.address), "value": 0}
        tx_hash = w3.eth.send_raw_transaction(facilitator.sign_transaction(tx).raw_transaction)
        return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)

    # v,r,s form
    m1, s1 = authorization(buyer, payee, 7, now - 600, now + 300)
    vrs = chain.token.functions.transferWithAuthorization(
        m1["from"], m1["to"], 7, m1["validAfter"], m1["validBefore"], m1["nonce"],
        s1.v, s1.r.to_bytes(32, "big"), s1.s.to_bytes(32, "big"))
    receipt = send(vrs._encode_transaction_data())
    assert receipt["status"] == 1
    transfer = [log for log in receipt["logs"] if log["topics"][0].hex().removeprefix("0x") == TRANSFER_TOPIC[2:]]
    assert len(transfer) == 1 and int(transfer[0]["data"].hex(), 16) == 7

    # bytes-signature form: transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)
    m2, s2 = authorization(buyer, payee, 5, now - 600, now + 300)
    selector = keccak(text="transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)")[:4]
    args = (m2["from"], m2["to"], 5, m2["validAfter"], m2["validBefore"], m2["nonce"], bytes(s2.signature))
    data = selector + encode(["address", "address", "uint256", "uint256", "uint256", "bytes32", "bytes"], args)
    assert selector.hex() == "cf092995"
    assert send(data)["status"] == 1
    assert chain.authorization_used(buyer.address, "0x" + m2["nonce"].hex())

    assert (chain.balance_of(buyer.address), chain.balance_of(payee)) == (before[0] - 12, before[1] + 12)
    assert len(chain.transfers(start_block, sender=buyer.address)) == 2

    # FiatToken's revert strings, which the facilitator maps to its error codes
    def reason(message, signed):
        call = chain.token.functions.transferWithAuthorization(
            message["from"], message["to"], message["value"], message["validAfter"], message["validBefore"],
            message["nonce"], signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big"))
        reply = rpc(chain, "eth_call", {"to": USDC_ADDRESS, "data": call._encode_transaction_data()}, "latest")
        return reply["error"]["message"]

    assert reason(m1, s1) == "execution reverted: FiatTokenV2: authorization is used or canceled"
    assert reason(*authorization(buyer, payee, 1, now - 600, now - 10)) == "execution reverted: FiatTokenV2: authorization is expired"
    assert reason(*authorization(buyer, payee, 1, now + 600, now + 900)) == "execution reverted: FiatTokenV2: authorization is not yet valid"
    assert reason(*authorization(buyer, payee, 10**18, now - 600, now + 300)) == "execution reverted: ERC20: transfer amount exceeds balance"
    forged_message, forged = authorization(buyer, payee, 1, now - 600, now + 300)
    forged_message["value"] = 2
    assert reason(forged_message, forged) == "execution reverted: FiatTokenV2: invalid signature"
