"""Constants shared by the rig's processes and the tests.

Facts taken from the x402 SDK / Base Sepolia: the chain id, the USDC address the SDK uses for
"$" prices on eip155:84532, and the token's EIP-712 domain ("USDC", "2").
"""

from eth_account import Account
from eth_utils import keccak

CHAIN_ID = 84532
NETWORK = "eip155:84532"
NETWORK_V1 = "base-sepolia"
USDC_ADDRESS = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
USDC_NAME = "USDC"
USDC_VERSION = "2"
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
# A second ERC-20 (the same code as the USDC-like token, at an address of its own): priced by
# explicit address through Permit2, the way any ERC-20 without EIP-3009 would be.
TOKEN2_ADDRESS = "0x7e57000000000000000000000000000000000002"

# The chain's gas price for transactions (base fee stays 0, so this is the tip paid to the coinbase).
GAS_PRICE_WEI = 1_000_000_000
ONE_ETH = 10**18


def _key(name: str) -> str:
    """A deterministic private key per role, so runs are reproducible and keys are never real."""
    return "0x" + keccak(text=f"x402-gateway e2e: {name}").hex()


KEYS = {
    name: _key(name)
    for name in ("facilitator", "minter", "buyer", "buyer2", "poor", "payee", "payee-sse", "permit2-buyer", "unapproved-buyer")
}
ADDRESSES = {name: Account.from_key(key).address for name, key in KEYS.items()}

# The head every test's gateway configuration starts with (the rig fills in the ${E2E_*} values).
GATEWAY_YAML_HEAD = """\
listen: 127.0.0.1:0
payTo: "${E2E_PAY_TO}"
network: eip155:84532
facilitator:
  url: ${E2E_FACILITATOR_URL}
  timeout: 20s
upstreams:
  api: { url: "${E2E_UPSTREAM_URL}", timeout: 30s }
"""
