# pragma version ~=0.4.3
"""
@title USDC-like token for the end-to-end suite
@notice Mirrors what the x402 facilitator relies on in Circle's FiatToken v2.2:
        EIP-712 domain ("USDC", "2"), 6 decimals, EIP-3009 transferWithAuthorization
        (v,r,s form, and the bytes-signature form through __default__), authorizationState,
        ERC-20 Transfer events and FiatToken's revert strings. The runtime code is placed at
        Base Sepolia's USDC address in the test chain's genesis, so there is no constructor:
        initialize() names the minter once.
"""

event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256

event AuthorizationUsed:
    authorizer: indexed(address)
    nonce: indexed(bytes32)

name: public(constant(String[4])) = "USDC"
symbol: public(constant(String[4])) = "USDC"
version: public(constant(String[1])) = "2"
decimals: public(constant(uint8)) = 6

EIP712_DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
TRANSFER_WITH_AUTHORIZATION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
# secp256k1n / 2: signatures with a larger s are malleable and refused, as in FiatToken's ECRecover.
HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782139537452191302581570759080747168
# transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)
TWA_BYTES_SELECTOR: constant(bytes4) = 0xcf092995
# 4-byte selector + 7 head words + length word + 65 signature bytes padded to 96
TWA_BYTES_CALLDATA: constant(uint256) = 356

minter: public(address)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])
_authorization_states: HashMap[address, HashMap[bytes32, bool]]


@external
def initialize(new_minter: address):
    assert self.minter == empty(address), "FiatToken: contract is already initialized"
    assert new_minter != empty(address), "FiatToken: new masterMinter is the zero address"
    self.minter = new_minter


@external
def mint(to: address, amount: uint256) -> bool:
    assert msg.sender == self.minter, "FiatToken: caller is not a minter"
    assert to != empty(address), "FiatToken: mint to the zero address"
    assert amount > 0, "FiatToken: mint amount not greater than 0"
    self.totalSupply += amount
    self.balanceOf[to] += amount
    log Transfer(sender=empty(address), receiver=to, value=amount)
    return True


@view
@internal
def _domain_separator() -> bytes32:
    return keccak256(
        abi_encode(EIP712_DOMAIN_TYPEHASH, keccak256(name), keccak256(version), chain.id, self)
    )


@view
@external
def DOMAIN_SEPARATOR() -> bytes32:
    return self._domain_separator()


@internal
def _transfer(sender: address, receiver: address, amount: uint256):
    assert sender != empty(address), "ERC20: transfer from the zero address"
    assert receiver != empty(address), "ERC20: transfer to the zero address"
    assert amount <= self.balanceOf[sender], "ERC20: transfer amount exceeds balance"
    self.balanceOf[sender] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)


@external
def transfer(receiver: address, amount: uint256) -> bool:
    self._transfer(msg.sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    assert spender != empty(address), "ERC20: approve to the zero address"
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    assert amount <= self.allowance[sender][msg.sender], "ERC20: transfer amount exceeds allowance"
    self.allowance[sender][msg.sender] -= amount
    self._transfer(sender, receiver, amount)
    return True


@view
@external
def authorizationState(authorizer: address, nonce: bytes32) -> bool:
    return self._authorization_states[authorizer][nonce]


@view
@internal
def _recover(digest: bytes32, v: uint8, r: bytes32, s: bytes32) -> address:
    assert convert(s, uint256) <= HALF_N, "ECRecover: invalid signature 's' value"
    assert v == 27 or v == 28, "ECRecover: invalid signature 'v' value"
    signer: address = ecrecover(digest, v, r, s)
    assert signer != empty(address), "ECRecover: invalid signature"
    return signer


@internal
def _transfer_with_authorization(
    sender: address,
    receiver: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    assert block.timestamp > valid_after, "FiatTokenV2: authorization is not yet valid"
    assert block.timestamp < valid_before, "FiatTokenV2: authorization is expired"
    assert not self._authorization_states[sender][nonce], "FiatTokenV2: authorization is used or canceled"
    struct_hash: bytes32 = keccak256(
        abi_encode(
            TRANSFER_WITH_AUTHORIZATION_TYPEHASH, sender, receiver, amount, valid_after, valid_before, nonce
        )
    )
    digest: bytes32 = keccak256(concat(b"\x19\x01", self._domain_separator(), struct_hash))
    assert self._recover(digest, v, r, s) == sender, "FiatTokenV2: invalid signature"
    self._authorization_states[sender][nonce] = True
    log AuthorizationUsed(authorizer=sender, nonce=nonce)
    self._transfer(sender, receiver, amount)


@external
def transferWithAuthorization(
    sender: address,
    receiver: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    self._transfer_with_authorization(sender, receiver, amount, valid_after, valid_before, nonce, v, r, s)


@external
def __default__():
    # Vyper has no overloading: the bytes-signature form of transferWithAuthorization is decoded
    # here. Only 65-byte (EOA) signatures are supported, as FiatToken does for accounts without code.
    assert len(msg.data) >= 4, "USDC: unknown function"
    assert convert(slice(msg.data, 0, 4), bytes4) == TWA_BYTES_SELECTOR, "USDC: unknown function"
    assert len(msg.data) == TWA_BYTES_CALLDATA, "ECRecover: invalid signature length"
    sender: address = empty(address)
    receiver: address = empty(address)
    amount: uint256 = 0
    valid_after: uint256 = 0
    valid_before: uint256 = 0
    nonce: bytes32 = empty(bytes32)
    signature: Bytes[96] = b""
    sender, receiver, amount, valid_after, valid_before, nonce, signature = abi_decode(
        slice(msg.data, 4, TWA_BYTES_CALLDATA - 4),
        (address, address, uint256, uint256, uint256, bytes32, Bytes[96]),
    )
    assert len(signature) == 65, "ECRecover: invalid signature length"
    r: bytes32 = extract32(signature, 0)
    s: bytes32 = extract32(signature, 32)
    v: uint8 = convert(slice(signature, 64, 1), uint8)
    self._transfer_with_authorization(sender, receiver, amount, valid_after, valid_before, nonce, v, r, s)
