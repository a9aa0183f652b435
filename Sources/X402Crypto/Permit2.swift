import BigInt
import X402

/// Permit2 `PermitWitnessTransferFrom` with the x402 witness: the EIP-712 message an `exact`
/// Permit2 payment or an `upto` payment signs. The types are those of the official Python SDK 2.25
/// (`PERMIT2_WITNESS_TYPES`, `UPTO_PERMIT2_WITNESS_TYPES` in `x402/mechanisms/evm/constants.py`);
/// the domain is Permit2's own (`name: "Permit2"`, no version).
public enum Permit2 {
    /// Which witness the message carries.
    public enum Witness: Sendable, Hashable {
        /// `Witness(address to,uint256 validAfter)`.
        case exact
        /// `Witness(address to,address facilitator,uint256 validAfter)`.
        case upto
    }

    static let tokenPermissionsType = "TokenPermissions(address token,uint256 amount)"
    static let exactWitnessType = "Witness(address to,uint256 validAfter)"
    static let uptoWitnessType = "Witness(address to,address facilitator,uint256 validAfter)"
    static let primaryType =
        "PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness)"

    /// keccak256 of `EIP712Domain(string name,uint256 chainId,address verifyingContract)`.
    public static let domainTypeHash: [UInt8] = Keccak256.hash("EIP712Domain(string name,uint256 chainId,address verifyingContract)")
    public static let tokenPermissionsTypeHash: [UInt8] = Keccak256.hash(tokenPermissionsType)

    /// keccak256 of the primary type's full encoding (the referenced types follow in name order).
    public static func typeHash(_ witness: Witness) -> [UInt8] {
        switch witness {
        case .exact: exactTypeHash
        case .upto: uptoTypeHash
        }
    }

    private static let exactTypeHash = Keccak256.hash(primaryType + tokenPermissionsType + exactWitnessType)
    private static let uptoTypeHash = Keccak256.hash(primaryType + tokenPermissionsType + uptoWitnessType)
    private static let exactWitnessTypeHash = Keccak256.hash(exactWitnessType)
    private static let uptoWitnessTypeHash = Keccak256.hash(uptoWitnessType)
    private static let nameHash = Keccak256.hash("Permit2")

    /// The canonical Permit2 address, parsed.
    public static let canonical = EVMAddress(hex: Permit2Contracts.permit2)!

    /// hashStruct of Permit2's domain on `chainId`.
    public static func domainSeparator(chainId: UInt64, verifyingContract: EVMAddress = canonical) -> [UInt8] {
        EIP712.hashWords([domainTypeHash, nameHash, ABIWord.uint256(chainId), ABIWord.address(verifyingContract)])
    }

    /// A field of a Permit2 authorization, as named on the wire.
    public enum Field: String, Sendable, Hashable, CaseIterable {
        case from, token, amount, spender, nonce, deadline, to, facilitator, validAfter
    }

    /// Why an authorization could not be hashed.
    public enum AuthorizationError: Error, Sendable, Hashable {
        /// Not `0x` followed by 40 hex digits (or, for `facilitator`, missing from an `upto` witness).
        case malformedAddress(Field)
        /// A uint256 field is not a plain decimal number (digits only, at least one).
        case notDecimal(Field)
        /// A uint256 field is 2^256 or more.
        case overflow(Field)
    }

    /// hashStruct(PermitWitnessTransferFrom) from the wire strings. `witness` says which witness
    /// type is signed; an `upto` witness needs `facilitator`, an `exact` one ignores it.
    public static func structHash(_ auth: Permit2Authorization, witness: Witness) throws(AuthorizationError) -> [UInt8] {
        func address(_ text: String?, _ field: Field) throws(AuthorizationError) -> [UInt8] {
            guard let text, let address = EVMAddress(hex: text) else { throw .malformedAddress(field) }
            return ABIWord.address(address)
        }
        func uint(_ text: String, _ field: Field) throws(AuthorizationError) -> [UInt8] {
            switch ABIWord.parseDecimal(text) {
            case .word(let word): return word
            case .notDecimal: throw .notDecimal(field)
            case .overflow: throw .overflow(field)
            }
        }
        let permitted = EIP712.hashWords([
            tokenPermissionsTypeHash, try address(auth.permitted.token, .token), try uint(auth.permitted.amount, .amount),
        ])
        let witnessHash = switch witness {
        case .exact:
            EIP712.hashWords([exactWitnessTypeHash, try address(auth.witness.to, .to), try uint(auth.witness.validAfter, .validAfter)])
        case .upto:
            EIP712.hashWords([
                uptoWitnessTypeHash, try address(auth.witness.to, .to), try address(auth.witness.facilitator, .facilitator),
                try uint(auth.witness.validAfter, .validAfter),
            ])
        }
        return EIP712.hashWords([
            typeHash(witness), permitted, try address(auth.spender, .spender), try uint(auth.nonce, .nonce),
            try uint(auth.deadline, .deadline), witnessHash,
        ])
    }

    /// The digest the payer signs, with a precomputed (cacheable) Permit2 domain separator.
    public static func digest(_ auth: Permit2Authorization, witness: Witness, domainSeparator: [UInt8]) throws(AuthorizationError)
        -> [UInt8]
    {
        EIP712.digest(domainSeparator: domainSeparator, structHash: try structHash(auth, witness: witness))
    }

    /// The digest the payer signs on `chainId` (Permit2 at its canonical address).
    public static func digest(_ auth: Permit2Authorization, witness: Witness, chainId: UInt64) throws(AuthorizationError) -> [UInt8] {
        try digest(auth, witness: witness, domainSeparator: domainSeparator(chainId: chainId))
    }
}
