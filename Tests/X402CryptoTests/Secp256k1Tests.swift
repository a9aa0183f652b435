import Testing
import X402
import X402Crypto

@Suite("secp256k1 recovery and signing")
struct Secp256k1Tests {
    static let secp = Secp256k1.shared
    static let vectors = CryptoVectors.shared

    @Test("A private key gives its known address", arguments: CryptoVectors.shared.keys)
    func keyAddresses(key: CryptoVectors.Key) throws {
        let address = try Self.secp.address(ofPrivateKey: bytes(key.privateKey))
        #expect(EIP55.checksummed(address) == key.address)
    }

    @Test("A vector signature recovers to its signer", arguments: CryptoVectors.shared.signedAuthorizations)
    func recoversSigner(vector: CryptoVectors.Authorization) throws {
        let signer = Self.vectors.key(try #require(vector.signer))
        let address = Self.secp.recoverAddress(digest: bytes(vector.digest), signature: bytes(try #require(vector.signature)))
        #expect(address.map(EIP55.checksummed) == signer.address)
        #expect(signer.address == vector.authorization.from)
    }

    @Test("Recovery accepts v written as 0/1 as well as 27/28", arguments: CryptoVectors.shared.signedAuthorizations)
    func acceptsZeroOneV(vector: CryptoVectors.Authorization) throws {
        var signature = bytes(try #require(vector.signature))
        signature[64] -= 27
        let address = Self.secp.recoverAddress(digest: bytes(vector.digest), signature: signature)
        #expect(address.map(EIP55.checksummed) == vector.authorization.from)
    }

    @Test("The vectors cover both recovery ids")
    func bothRecoveryIDs() {
        let vs = Set(Self.vectors.signedAuthorizations.map { bytes($0.signature!)[64] })
        #expect(vs == [27, 28])
    }

    @Test("Signing reproduces the vector signatures byte for byte and round-trips through recovery",
          arguments: CryptoVectors.shared.signedAuthorizations)
    func signMatchesVectors(vector: CryptoVectors.Authorization) throws {
        let key = Self.vectors.key(try #require(vector.signer))
        let signature = try Self.secp.sign(digest: bytes(vector.digest), privateKey: bytes(key.privateKey))
        #expect(hex(signature) == vector.signature)
        #expect(Self.secp.recoverAddress(digest: bytes(vector.digest), signature: signature).map(EIP55.checksummed) == key.address)
    }

    @Test("Signatures over many digests round-trip and are always low-s", arguments: CryptoVectors.shared.keys)
    func signRoundTrips(key: CryptoVectors.Key) throws {
        let privateKey = bytes(key.privateKey)
        let halfOrder = bytes("0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0")
        for i in 0..<64 {
            let digest = Keccak256.hash("digest \(i)")
            let signature = try Self.secp.sign(digest: digest, privateKey: privateKey)
            #expect(signature.count == 65)
            #expect(signature[64] == 27 || signature[64] == 28)
            #expect(!halfOrder.lexicographicallyPrecedes(signature[32..<64]))
            #expect(Self.secp.recoverAddress(digest: digest, signature: signature).map(EIP55.checksummed) == key.address)
        }
    }

    @Test("A flipped bit in the signature never recovers the signer", arguments: [0, 7, 31, 32, 45, 63])
    func flippedBit(byte: Int) throws {
        let vector = Self.vectors.authorizations[0]
        for bit in 0..<8 {
            var signature = bytes(try #require(vector.signature))
            signature[byte] ^= 1 << bit
            let address = Self.secp.recoverAddress(digest: bytes(vector.digest), signature: signature)
            #expect(address.map(EIP55.checksummed) != vector.authorization.from)
        }
    }

    @Test("A different digest recovers a different address")
    func wrongDigest() throws {
        let vector = Self.vectors.authorizations[0]
        var digest = bytes(vector.digest)
        digest[0] ^= 0x80
        let address = Self.secp.recoverAddress(digest: digest, signature: bytes(try #require(vector.signature)))
        #expect(address.map(EIP55.checksummed) != vector.authorization.from)
    }

    @Test("Recovery refuses malleable, out-of-range and misshapen signatures", arguments: CryptoVectors.shared.rejectedSignatures)
    func refusals(vector: CryptoVectors.SignatureCase) {
        #expect(Self.secp.recoverAddress(digest: bytes(vector.digest), signature: bytes(vector.signature)) == nil)
    }

    @Test("s = n/2 is the largest s recovery accepts", arguments: CryptoVectors.shared.acceptedEdgeSignatures)
    func edgeAccepted(vector: CryptoVectors.SignatureCase) {
        let address = Self.secp.recoverAddress(digest: bytes(vector.digest), signature: bytes(vector.signature))
        #expect(address.map(EIP55.checksummed) == vector.address)
    }

    @Test("Signing refuses invalid private keys and digests that are not 32 bytes")
    func signingRefusals() {
        let digest = [UInt8](repeating: 1, count: 32)
        let order = bytes("0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
        for key in [[UInt8](repeating: 0, count: 32), order, [UInt8](repeating: 0xFF, count: 32), [UInt8](repeating: 1, count: 31)] {
            #expect(throws: Secp256k1.SigningError.invalidPrivateKey) { try Self.secp.sign(digest: digest, privateKey: key) }
            #expect(throws: Secp256k1.SigningError.invalidPrivateKey) { try Self.secp.address(ofPrivateKey: key) }
        }
        let key = bytes(Self.vectors.keys[0].privateKey)
        #expect(throws: Secp256k1.SigningError.digestNot32Bytes) { try Self.secp.sign(digest: Array(digest.dropLast()), privateKey: key) }
    }

    @Test("Recovery from many tasks at once agrees with recovery on one")
    func concurrentRecovery() async throws {
        let vector = Self.vectors.authorizations[0]
        let digest = bytes(vector.digest), signature = bytes(try #require(vector.signature))
        let results = await withTaskGroup(of: EVMAddress?.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var last: EVMAddress?
                    for _ in 0..<50 { last = Secp256k1.shared.recoverAddress(digest: digest, signature: signature) }
                    return last
                }
            }
            return await group.reduce(into: [EVMAddress?]()) { $0.append($1) }
        }
        #expect(results.count == 8)
        #expect(results.allSatisfy { $0.map(EIP55.checksummed) == vector.authorization.from })
    }
}
