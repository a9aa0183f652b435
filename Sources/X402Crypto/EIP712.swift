import BigInt
import X402

/// Static ABI words: every value EIP-712 hashes here is encoded as exactly 32 bytes.
public enum ABIWord {
    /// An address, left-padded with 12 zero bytes.
    public static func address(_ address: EVMAddress) -> [UInt8] {
        [UInt8](repeating: 0, count: 12) + address.bytes
    }

    /// A `uint256` that fits in 64 bits, big-endian.
    static func uint256(_ value: UInt64) -> [UInt8] {
        [UInt8](repeating: 0, count: 24) + withUnsafeBytes(of: value.bigEndian) { Array($0) }
    }

    /// A `uint256`, big-endian; nil when the value needs more than 256 bits.
    public static func uint256(_ value: BigUInt) -> [UInt8]? {
        let minimal = value.serialize()  // big-endian, no leading zero bytes
        guard minimal.count <= 32 else { return nil }
        return [UInt8](repeating: 0, count: 32 - minimal.count) + minimal
    }

    /// A `uint256` from its decimal spelling: ASCII digits only (no sign, no `0x`, no spaces),
    /// at least one digit; leading zeros are allowed. Nil when malformed or ≥ 2^256.
    public static func uint256(decimal text: String) -> [UInt8]? {
        if case .word(let word) = parseDecimal(text) { return word }
        return nil
    }

    /// `bytes32`: the bytes as they are; nil unless there are exactly 32.
    public static func bytes32(_ bytes: [UInt8]) -> [UInt8]? {
        bytes.count == 32 ? bytes : nil
    }

    enum DecimalParse: Equatable {
        case word([UInt8])
        case notDecimal
        case overflow
    }

    /// Parses into four 64-bit limbs without big-integer allocations.
    static func parseDecimal(_ text: String) -> DecimalParse {
        var limb0: UInt64 = 0, limb1: UInt64 = 0, limb2: UInt64 = 0, limb3: UInt64 = 0  // least significant first
        var sawDigit = false
        var overflowed = false
        for c in text.utf8 {
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return .notDecimal }
            sawDigit = true
            if overflowed { continue }
            // limbs = limbs · 10 + digit, carrying upward; a carry out of the top limb is ≥ 2^256.
            var carry = UInt64(c - UInt8(ascii: "0"))
            timesTenPlusCarry(&limb0, &carry)
            timesTenPlusCarry(&limb1, &carry)
            timesTenPlusCarry(&limb2, &carry)
            timesTenPlusCarry(&limb3, &carry)
            if carry != 0 { overflowed = true }
        }
        guard sawDigit else { return .notDecimal }
        if overflowed { return .overflow }
        return .word([UInt8](unsafeUninitializedCapacity: 32) { buffer, count in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            raw.storeBytes(of: limb3.bigEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: limb2.bigEndian, toByteOffset: 8, as: UInt64.self)
            raw.storeBytes(of: limb1.bigEndian, toByteOffset: 16, as: UInt64.self)
            raw.storeBytes(of: limb0.bigEndian, toByteOffset: 24, as: UInt64.self)
            count = 32
        })
    }

    @inline(__always)
    private static func timesTenPlusCarry(_ limb: inout UInt64, _ carry: inout UInt64) {
        let (high, low) = limb.multipliedFullWidth(by: 10)
        let (sum, wrapped) = low.addingReportingOverflow(carry)
        limb = sum
        carry = high &+ (wrapped ? 1 : 0)  // high ≤ 9, so this cannot wrap
    }
}

/// EIP-712 typed structured data hashing, for the one domain shape x402 tokens use.
public enum EIP712 {
    /// keccak256 of `EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)`.
    public static let domainTypeHash: [UInt8] = Keccak256.hash(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")

    /// hashStruct of the domain: keccak(typeHash ‖ keccak(name) ‖ keccak(version) ‖ chainId ‖ verifyingContract).
    public static func domainSeparator(name: String, version: String, chainId: UInt64, verifyingContract: EVMAddress) -> [UInt8] {
        hashWords([
            domainTypeHash,
            Keccak256.hash(name),
            Keccak256.hash(version),
            ABIWord.uint256(chainId),
            ABIWord.address(verifyingContract),
        ])
    }

    /// The signed digest: keccak(0x19 ‖ 0x01 ‖ domainSeparator ‖ structHash). Both inputs must be 32 bytes.
    public static func digest(domainSeparator: [UInt8], structHash: [UInt8]) -> [UInt8] {
        precondition(domainSeparator.count == 32 && structHash.count == 32, "EIP-712 hashes are 32 bytes")
        var message = [UInt8]()
        message.reserveCapacity(66)
        message.append(0x19)
        message.append(0x01)
        message.append(contentsOf: domainSeparator)
        message.append(contentsOf: structHash)
        return Keccak256.hash(message)
    }

    /// keccak of the concatenation of 32-byte words.
    static func hashWords(_ words: [[UInt8]]) -> [UInt8] {
        var encoded = [UInt8]()
        encoded.reserveCapacity(32 * words.count)
        for word in words {
            assert(word.count == 32)
            encoded.append(contentsOf: word)
        }
        return Keccak256.hash(encoded)
    }
}
