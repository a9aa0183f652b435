import Testing
import X402
import X402Crypto

@Suite("EIP-712 encoding")
struct EIP712Tests {
    @Test("The type hashes are keccak of the canonical type strings")
    func typeHashes() throws {
        let vectors = CryptoVectors.shared.typeHashes
        for vector in vectors {
            #expect(hex(Keccak256.hash(vector.type)) == vector.hash)
        }
        let domain = try #require(vectors.first { $0.type.hasPrefix("EIP712Domain(") })
        let transfer = try #require(vectors.first { $0.type.hasPrefix("TransferWithAuthorization(") })
        #expect(hex(EIP712.domainTypeHash) == domain.hash)
        #expect(hex(EIP3009.transferWithAuthorizationTypeHash) == transfer.hash)
        #expect(domain.hash == "0x8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f")
        #expect(transfer.hash == "0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267")
    }

    @Test("Domain separators match the USDC deployments", arguments: CryptoVectors.shared.domains)
    func domainSeparators(domain: CryptoVectors.Domain) {
        let separator = EIP712.domainSeparator(
            name: domain.name, version: domain.version, chainId: domain.chainId, verifyingContract: domain.contract)
        #expect(hex(separator) == domain.separator)
    }

    @Test("The digest is keccak of 0x1901, the domain separator and the struct hash", arguments: CryptoVectors.shared.authorizations)
    func digest(vector: CryptoVectors.Authorization) {
        let domain = CryptoVectors.shared.domain(vector.domain)
        let digest = EIP712.digest(domainSeparator: bytes(domain.separator), structHash: bytes(vector.structHash))
        #expect(hex(digest) == vector.digest)
        #expect(digest == Keccak256.hash([0x19, 0x01] + bytes(domain.separator) + bytes(vector.structHash)))
    }

    @Test("An address word is the address left-padded with twelve zero bytes")
    func addressWord() {
        let address = EVMAddress(hex: "0x036CbD53842c5426634e7929541eC2318f3dCF7e")!
        let word = ABIWord.address(address)
        #expect(word.count == 32)
        #expect(word[0..<12].allSatisfy { $0 == 0 })
        #expect(Array(word[12...]) == address.bytes)
    }

    @Test("Decimal uint256 words are 32 bytes big-endian",
          arguments: [
              ("0", "0x" + String(repeating: "0", count: 64)),
              ("1", "0x" + String(repeating: "0", count: 63) + "1"),
              ("10000", "0x" + String(repeating: "0", count: 60) + "2710"),
              ("000255", "0x" + String(repeating: "0", count: 62) + "ff"),
              ("18446744073709551616", "0x" + String(repeating: "0", count: 47) + "1" + String(repeating: "0", count: 16)),
              ("115792089237316195423570985008687907853269984665640564039457584007913129639935",
               "0x" + String(repeating: "f", count: 64)),
          ])
    func decimalWords(text: String, expected: String) {
        #expect(ABIWord.uint256(decimal: text).map(hex) == expected)
        // The BigUInt path agrees (Money refuses leading zeros, so "000255" only takes the decimal path).
        if let value = Money.atomicUnits(fromInteger: text) {
            #expect(ABIWord.uint256(value).map(hex) == expected)
        }
    }

    @Test("Decimal uint256 refuses anything but digits, and values of 2^256 or more",
          arguments: ["", "-1", "+1", " 1", "1 ", "0x10", "1.0", "1e3", "1_000", "١", "１",
                      "115792089237316195423570985008687907853269984665640564039457584007913129639936",
                      "999999999999999999999999999999999999999999999999999999999999999999999999999999999"])
    func decimalRefusals(text: String) {
        #expect(ABIWord.uint256(decimal: text) == nil)
    }

    @Test("A BigUInt of 2^256 or more has no uint256 word")
    func bigUIntOverflow() {
        let twoTo256 = Money.atomicUnits(fromInteger: "115792089237316195423570985008687907853269984665640564039457584007913129639936")!
        #expect(ABIWord.uint256(twoTo256) == nil)
    }

    @Test("bytes32 takes exactly 32 bytes", arguments: [0, 31, 32, 33])
    func bytes32(count: Int) {
        let input = [UInt8](repeating: 0x11, count: count)
        #expect(ABIWord.bytes32(input) == (count == 32 ? input : nil))
    }
}
