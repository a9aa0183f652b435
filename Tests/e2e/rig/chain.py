"""A local EVM chain: eth-tester's py-evm backend behind a small geth-flavoured JSON-RPC server.

    python -m rig.chain [--port 0]        prints "READY http://127.0.0.1:PORT" once listening

What it does differently from eth-tester's defaults, each for a reason the x402 SDK's facilitator
(web3.py) depends on:

* chain id 84532 (Base Sepolia), and the USDC-like token's runtime code sits in the genesis state at
  Base Sepolia's USDC address, so the SDK's "$" prices and default asset work unchanged;
* the base fee is 0 and eth_call runs with gas price 0, as geth does: a call never needs ether;
* every call and transaction first moves the pending block's timestamp to the wall clock (py-evm
  keeps the timestamp it gave the pending block when the previous one was mined, which after idle
  time makes EIP-3009 validAfter/validBefore checks wrong);
* each transaction is mined into its own block at once; a transaction whose nonce is ahead of the
  sender's is queued until the gap closes (the facilitator reserves consecutive nonces and sends
  concurrently, so nonce n+1 may arrive before n);
* reverts are reported like geth: error code 3, "execution reverted: <reason>", data = revert data;
* receipts carry logs with data and topics (the facilitator checks the Transfer event).
"""

from __future__ import annotations

import json
import sys
import threading
import time

from eth.vm.spoof import SpoofTransaction
from eth_abi import decode as abi_decode
from eth_tester.backends.pyevm.main import PyEVMBackend, get_default_genesis_params
from eth_tester.backends.pyevm.serializers import serialize_log
from eth_tester.exceptions import BlockNotFound, TransactionNotFound
from eth_utils import decode_hex, to_canonical_address, to_checksum_address

from .constants import ADDRESSES, CHAIN_ID, GAS_PRICE_WEI, ONE_ETH, TOKEN2_ADDRESS, USDC_ADDRESS
from .httpserver import Handler as BaseHandler, Server, arguments, serve

ZERO_ADDRESS = b"\x00" * 20
ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
ADDRESS_KEYS = {"from", "to", "address", "coinbase", "contract_address"}


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: str | None = None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.capitalize() for part in rest)


def to_rpc(value, key: str | None = None):
    """eth-tester's Python values → JSON-RPC: quantities as hex, data as 0x-hex, camelCase keys."""
    if isinstance(value, dict):
        out = {_camel(k): to_rpc(v, k) for k, v in value.items()}
        if key == "log" or ("log_index" in value and "topics" in value):
            out.pop("type", None)
            out["removed"] = False
        return out
    if isinstance(value, (list, tuple)):
        return [to_rpc(v, "log" if key == "logs" else None) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value)
        if key in ADDRESS_KEYS:
            return to_checksum_address(value) if len(value) == 20 else None
        return "0x" + value.hex()
    return value


def revert_message(data: bytes) -> str:
    """geth's wording: "execution reverted" plus the Error(string) reason when there is one."""
    if data[:4] == ERROR_STRING_SELECTOR:
        try:
            (reason,) = abi_decode(["string"], data[4:])
            return f"execution reverted: {reason}"
        except Exception:
            pass
    return "execution reverted"


class LocalChain:
    def __init__(self, genesis_state: dict):
        params = get_default_genesis_params()
        params["base_fee_per_gas"] = 0
        self.backend = PyEVMBackend(genesis_parameters=params, genesis_state=genesis_state)
        # eth-tester builds its chain class with a fixed chain id; every VM reads it from the class.
        type(self.backend.chain).chain_id = CHAIN_ID
        self.lock = threading.RLock()
        self.queued: dict[bytes, dict[int, object]] = {}

    @property
    def chain(self):
        return self.backend.chain

    # --- block bookkeeping -------------------------------------------------------------------

    def _refresh_pending(self) -> None:
        """Give the (empty) pending block the current time, never going back before its parent."""
        header = self.chain.header
        if header.gas_used:
            return
        parent = self.chain.get_canonical_head()
        ts = max(int(time.time()), parent.timestamp + 1)
        if header.timestamp != ts:
            self.chain.header = header.copy(timestamp=ts)

    def head_number(self) -> int:
        return self.chain.get_canonical_head().block_number

    def _block_id(self, ident) -> int | str:
        """JSON-RPC block tag → a number or "pending"."""
        if ident in (None, "latest", "safe", "finalized"):
            return self.head_number()
        if ident == "pending":
            return "pending"
        if ident == "earliest":
            return 0
        if isinstance(ident, str):
            return int(ident, 16)
        return int(ident)

    def _mine(self, tx) -> None:
        self._refresh_pending()
        self.chain.apply_transaction(tx)
        self.backend.mine_blocks()

    # --- calls -------------------------------------------------------------------------------

    def _execute(self, params: dict, ident):
        self._refresh_pending()
        number = self._block_id(ident)
        if number == "pending" or number == self.head_number():
            header = self.chain.header  # empty pending block on top of the latest state, timestamp = now
        else:
            header = self.chain.get_canonical_block_header_by_number(number)
        vm = self.chain.get_vm(header)
        state = vm.state
        sender = to_canonical_address(params["from"]) if params.get("from") else ZERO_ADDRESS
        to = to_canonical_address(params["to"]) if params.get("to") else b""
        data = decode_hex(params.get("data") or params.get("input") or "0x")
        gas = int(params["gas"], 16) if params.get("gas") else header.gas_limit
        value = int(params["value"], 16) if params.get("value") else 0
        unsigned = vm.create_unsigned_transaction(
            nonce=state.get_nonce(sender), gas_price=0, gas=gas, to=to, value=value, data=data
        )
        snapshot = state.snapshot()
        try:
            computation = state.apply_transaction(SpoofTransaction(unsigned, from_=sender))
        finally:
            state.revert(snapshot)
        if computation.is_error:
            error = computation.error
            if type(error).__name__ == "Revert":
                revert = error.args[0] if error.args and isinstance(error.args[0], bytes) else computation.output
                raise RpcError(3, revert_message(revert), "0x" + revert.hex())
            raise RpcError(-32000, str(error) or type(error).__name__)
        return computation

    def call(self, params: dict, ident="latest") -> str:
        with self.lock:
            return "0x" + self._execute(params, ident).output.hex()

    def estimate_gas(self, params: dict, ident="latest") -> str:
        with self.lock:
            used = self._execute(params, ident).get_gas_used()
            return hex(max(21000, used * 13 // 10))

    # --- transactions ------------------------------------------------------------------------

    def send_raw_transaction(self, raw_hex: str) -> str:
        raw = decode_hex(raw_hex)
        with self.lock:
            vm = self.chain.get_vm()
            try:
                tx = vm.get_transaction_builder().decode(raw)
                tx.validate()
                sender = tx.sender
            except Exception as e:
                raise RpcError(-32000, f"invalid transaction: {e}") from None
            if tx.chain_id is not None and tx.chain_id != CHAIN_ID:
                raise RpcError(-32000, f"invalid chain id {tx.chain_id}, want {CHAIN_ID}")
            expected = vm.state.get_nonce(sender)
            if tx.nonce < expected:
                if self._known(tx.hash):
                    return "0x" + tx.hash.hex()
                raise RpcError(-32000, f"nonce too low: address {to_checksum_address(sender)}, tx: {tx.nonce} state: {expected}")
            if tx.nonce > expected:
                self.queued.setdefault(sender, {})[tx.nonce] = tx
                return "0x" + tx.hash.hex()
            try:
                self._mine(tx)
            except Exception as e:
                raise RpcError(-32000, f"transaction rejected: {e}") from None
            self._drain(sender)
            return "0x" + tx.hash.hex()

    def _drain(self, sender: bytes) -> None:
        queue = self.queued.get(sender)
        while queue:
            nonce = self.chain.get_vm().state.get_nonce(sender)
            tx = queue.pop(nonce, None)
            if tx is None:
                return
            try:
                self._mine(tx)
            except Exception as e:  # the gap it leaves keeps later ones queued, as in a real pool
                print(f"chain: dropped queued tx {tx.hash.hex()}: {e}", file=sys.stderr, flush=True)

    def _known(self, tx_hash: bytes) -> bool:
        try:
            self.backend.get_transaction_by_hash(tx_hash)
            return True
        except TransactionNotFound:
            return False

    def receipt(self, tx_hash_hex: str):
        with self.lock:
            try:
                receipt = self.backend.get_transaction_receipt(decode_hex(tx_hash_hex))
            except TransactionNotFound:
                return None
            if receipt["block_number"] is None:
                return None
            return to_rpc(receipt)

    def transaction(self, tx_hash_hex: str):
        with self.lock:
            try:
                tx = self.backend.get_transaction_by_hash(decode_hex(tx_hash_hex))
            except TransactionNotFound:
                return None
            out = to_rpc(tx)
            out["input"] = out.get("data")
            return out

    # --- state and blocks ----------------------------------------------------------------------

    def account(self, what: str, address: str, ident="latest", slot: str | None = None):
        with self.lock:
            number = self._block_id(ident)
            addr = to_canonical_address(address)
            if what == "balance":
                return hex(self.backend.get_balance(addr, number))
            if what == "nonce":
                return hex(self.backend.get_nonce(addr, number))
            if what == "code":
                return "0x" + self.backend.get_code(addr, number).hex()
            value = self.backend.get_storage(addr, int(slot, 16), number)
            return "0x" + bytes(value).rjust(32, b"\0").hex() if isinstance(value, bytes) else "0x%064x" % value

    def block(self, ident, full: bool, by_hash: bool = False):
        with self.lock:
            try:
                if by_hash:
                    block = self.backend.get_block_by_hash(decode_hex(ident), full)
                else:
                    block = self.backend.get_block_by_number(self._block_id(ident), full)
            except BlockNotFound:
                return None
            out = to_rpc(block)
            for tx in out.get("transactions", []):
                if isinstance(tx, dict):
                    tx["input"] = tx.get("data")
            return out

    def logs(self, flt: dict) -> list:
        with self.lock:
            if flt.get("blockHash"):
                numbers = [self.chain.get_block_by_hash(decode_hex(flt["blockHash"])).number]
            else:
                first = self._block_id(flt.get("fromBlock", "latest"))
                last = self._block_id(flt.get("toBlock", "latest"))
                numbers = range(first, min(last, self.head_number()) + 1)
            addresses = flt.get("address")
            if isinstance(addresses, str):
                addresses = [addresses]
            wanted_addresses = {a.lower() for a in addresses} if addresses else None
            wanted_topics = flt.get("topics") or []
            found = []
            for number in numbers:
                block = self.chain.get_canonical_block_by_number(number)
                receipts = block.get_receipts(self.chain.chaindb)
                for index, (tx, receipt) in enumerate(zip(block.transactions, receipts)):
                    for log_index, log in enumerate(receipt.logs):
                        entry = to_rpc(serialize_log(block, tx, index, log, log_index, False), "log")
                        if wanted_addresses and entry["address"].lower() not in wanted_addresses:
                            continue
                        if not _topics_match(entry["topics"], wanted_topics):
                            continue
                        found.append(entry)
            return found


def _topics_match(topics: list[str], wanted: list) -> bool:
    for position, choice in enumerate(wanted):
        if choice is None:
            continue
        options = {c.lower() for c in (choice if isinstance(choice, list) else [choice])}
        if position >= len(topics) or topics[position].lower() not in options:
            return False
    return True


def genesis_state(token_runtime_hex: str) -> dict:
    from .contracts import genesis_code

    def account(balance=0, code=b""):
        return {"balance": balance, "nonce": 0, "code": code, "storage": {}}

    state = {
        to_canonical_address(ADDRESSES["facilitator"]): account(1000 * ONE_ETH),
        to_canonical_address(ADDRESSES["minter"]): account(1000 * ONE_ETH),
        # Gas for its one-time approve(Permit2); other buyers hold no ether (gasless payments).
        to_canonical_address(ADDRESSES["permit2-buyer"]): account(ONE_ETH),
        to_canonical_address(USDC_ADDRESS): account(code=decode_hex(token_runtime_hex)),
        # A second token with the same code: an ERC-20 priced by explicit address (Permit2 tests).
        to_canonical_address(TOKEN2_ADDRESS): account(code=decode_hex(token_runtime_hex)),
    }
    # Permit2 and the CREATE2 deployer (contracts/x402/README.md); the proxies are deployed by conftest.
    for address, code in genesis_code().items():
        state[to_canonical_address(address)] = account(code=code)
    return state


class Dispatcher:
    def __init__(self, chain: LocalChain):
        self.chain = chain
        c = chain
        self.methods = {
            "web3_clientVersion": lambda: "x402-e2e-chain/py-evm",
            "net_version": lambda: str(CHAIN_ID),
            "net_listening": lambda: True,
            "eth_chainId": lambda: hex(CHAIN_ID),
            "eth_syncing": lambda: False,
            "eth_accounts": lambda: [],
            "eth_blockNumber": lambda: hex(c.head_number()),
            "eth_gasPrice": lambda: hex(GAS_PRICE_WEI),
            "eth_maxPriorityFeePerGas": lambda: hex(GAS_PRICE_WEI),
            "eth_getBalance": lambda a, b="latest": c.account("balance", a, b),
            "eth_getTransactionCount": lambda a, b="latest": c.account("nonce", a, b),
            "eth_getCode": lambda a, b="latest": c.account("code", a, b),
            "eth_getStorageAt": lambda a, s, b="latest": c.account("storage", a, b, slot=s),
            "eth_call": lambda tx, b="latest", *_: c.call(tx, b),
            "eth_estimateGas": lambda tx, b="latest", *_: c.estimate_gas(tx, b),
            "eth_sendRawTransaction": c.send_raw_transaction,
            "eth_getTransactionReceipt": c.receipt,
            "eth_getTransactionByHash": c.transaction,
            "eth_getBlockByNumber": lambda b, full=False: c.block(b, full),
            "eth_getBlockByHash": lambda h, full=False: c.block(h, full, by_hash=True),
            "eth_getLogs": c.logs,
        }

    def handle(self, request: dict) -> dict:
        rid = request.get("id")
        method = self.methods.get(request.get("method"))
        if method is None:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"the method {request.get('method')} does not exist/is not available"}}
        try:
            return {"jsonrpc": "2.0", "id": rid, "result": method(*(request.get("params") or []))}
        except RpcError as e:
            error = {"code": e.code, "message": e.message}
            if e.data is not None:
                error["data"] = e.data
            return {"jsonrpc": "2.0", "id": rid, "error": error}
        except Exception as e:  # a bug here must be visible, not a hang
            print(f"chain: {request.get('method')} failed: {e!r}", file=sys.stderr, flush=True)
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32603, "message": f"internal error: {e}"}}


def make_server(host: str, port: int, dispatcher: Dispatcher) -> Server:
    class Handler(BaseHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                request = json.loads(body)
            except ValueError:
                reply = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
            else:
                if isinstance(request, list):
                    reply = [dispatcher.handle(r) for r in request]
                else:
                    reply = dispatcher.handle(request)
            self.send_json(200, reply)

    return Server((host, port), Handler)


def main() -> None:
    args = arguments(__doc__)

    from .token import compiled_token

    chain = LocalChain(genesis_state(compiled_token()["runtime"]))
    serve(make_server(args.host, args.port, Dispatcher(chain)), args.host)


if __name__ == "__main__":
    main()
