import Testing
import X402
import X402Crypto

@Suite("EIP-55 checksums")
struct EIP55Tests {
    @Test("Checksumming reproduces the EIP-55 examples from any casing", arguments: CryptoVectors.shared.eip55.valid)
    func checksumsMatch(address: String) {
        for spelling in [address, "0x" + address.dropFirst(2).lowercased(), "0x" + address.dropFirst(2).uppercased()] {
            #expect(EIP55.checksummed(EVMAddress(hex: spelling)!) == address)
            #expect(EIP55.check(spelling) == .valid(address))
        }
    }

    @Test("Mixed case that does not match the checksum is a bad checksum", arguments: CryptoVectors.shared.eip55.badChecksum)
    func badChecksum(vector: CryptoVectors.EIP55Vectors.Bad) {
        #expect(EIP55.check(vector.input) == .badChecksum(expected: vector.expected))
    }

    @Test("Text that is not 0x and 40 hex digits is malformed",
          arguments: ["", "0x", "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",
                      "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAedd", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg"])
    func malformed(text: String) {
        #expect(EIP55.check(text) == .malformed)
    }
}
