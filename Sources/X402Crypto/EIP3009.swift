import BigInt
import X402

/// EIP-3009 `TransferWithAuthorization`: the struct an `exact` EVM payment signs.
public enum EIP3009 {
    /// keccak256 of the `TransferWithAuthorization(...)` type string.
    public static let transferWithAuthorizationTypeHash: [UInt8] = Keccak256.hash(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)")

    /// A field of an authorization, as named on the wire.
    public enum Field: String, Sendable, Hashable, CaseIterable {
        case from, to, value, validAfter, validBefore, nonce
    }

    /// Why an authorization could not be hashed.
    public enum AuthorizationError: Error, Sendable, Hashable {
        /// `from` or `to` is not `0x` followed by 40 hex digits.
        case malformedAddress(Field)
        /// A uint256 field is not a plain decimal number (digits only, at least one).
        case notDecimal(Field)
        /// A uint256 field is 2^256 or more.
        case overflow(Field)
        /// `nonce` is not `0x` followed by exactly 64 hex digits.
        case malformedNonce
    }

    /// hashStruct(TransferWithAuthorization) from parsed values. Throws `.overflow` for a
    /// value ≥ 2^256 and `.malformedNonce` unless the nonce is exactly 32 bytes.
    public static func structHash(
        from: EVMAddress, to: EVMAddress, value: BigUInt, validAfter: BigUInt, validBefore: BigUInt, nonce: [UInt8]
    ) throws(AuthorizationError) -> [UInt8] {
        func word(_ number: BigUInt, _ field: Field) throws(AuthorizationError) -> [UInt8] {
            guard let word = ABIWord.uint256(number) else { throw .overflow(field) }
            return word
        }
        guard let nonceWord = ABIWord.bytes32(nonce) else { throw .malformedNonce }
        return EIP712.hashWords([
            transferWithAuthorizationTypeHash,
            ABIWord.address(from),
            ABIWord.address(to),
            try word(value, .value),
            try word(validAfter, .validAfter),
            try word(validBefore, .validBefore),
            nonceWord,
        ])
    }

    /// hashStruct(TransferWithAuthorization) straight from the wire strings.
    public static func structHash(_ authorization: EIP3009Authorization) throws(AuthorizationError) -> [UInt8] {
        func address(_ text: String, _ field: Field) throws(AuthorizationError) -> [UInt8] {
            guard let address = EVMAddress(hex: text) else { throw .malformedAddress(field) }
            return ABIWord.address(address)
        }
        func uint(_ text: String, _ field: Field) throws(AuthorizationError) -> [UInt8] {
            switch ABIWord.parseDecimal(text) {
            case .word(let word): return word
            case .notDecimal: throw .notDecimal(field)
            case .overflow: throw .overflow(field)
            }
        }
        guard authorization.nonce.utf8.count == 66, let nonce = Hex.decode(authorization.nonce, prefixed: true), nonce.count == 32
        else { throw .malformedNonce }
        return EIP712.hashWords([
            transferWithAuthorizationTypeHash,
            try address(authorization.from, .from),
            try address(authorization.to, .to),
            try uint(authorization.value, .value),
            try uint(authorization.validAfter, .validAfter),
            try uint(authorization.validBefore, .validBefore),
            nonce,
        ])
    }

    /// The EIP-712 digest a payer signs for `authorization` on the token contract described by the domain.
    public static func digest(
        _ authorization: EIP3009Authorization, name: String, version: String, chainId: UInt64, verifyingContract: EVMAddress
    ) throws(AuthorizationError) -> [UInt8] {
        let separator = EIP712.domainSeparator(name: name, version: version, chainId: chainId, verifyingContract: verifyingContract)
        return try digest(authorization, domainSeparator: separator)
    }

    /// The same with a precomputed (cacheable) domain separator.
    public static func digest(_ authorization: EIP3009Authorization, domainSeparator: [UInt8]) throws(AuthorizationError) -> [UInt8] {
        EIP712.digest(domainSeparator: domainSeparator, structHash: try structHash(authorization))
    }
}
