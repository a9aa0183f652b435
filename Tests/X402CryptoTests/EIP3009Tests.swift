import Testing
import X402
import X402Crypto

@Suite("EIP-3009 TransferWithAuthorization")
struct EIP3009Tests {
    static let baseSepolia = CryptoVectors.shared.domain("base-sepolia")
    static let notes = CryptoVectors.shared.authorizations[0].authorization

    @Test("The struct hash of each vector authorization matches", arguments: CryptoVectors.shared.authorizations)
    func structHash(vector: CryptoVectors.Authorization) throws {
        #expect(hex(try EIP3009.structHash(vector.authorization)) == vector.structHash)
    }

    @Test("The struct hash from parsed values equals the one from wire strings", arguments: CryptoVectors.shared.authorizations)
    func parsedStructHash(vector: CryptoVectors.Authorization) throws {
        let auth = vector.authorization
        let hash = try EIP3009.structHash(
            from: EVMAddress(hex: auth.from)!, to: EVMAddress(hex: auth.to)!,
            value: Money.atomicUnits(fromInteger: auth.value)!,
            validAfter: Money.atomicUnits(fromInteger: auth.validAfter)!,
            validBefore: Money.atomicUnits(fromInteger: auth.validBefore)!,
            nonce: bytes(auth.nonce))
        #expect(hex(hash) == vector.structHash)
    }

    @Test("The digest for an authorization and its token domain matches", arguments: CryptoVectors.shared.authorizations)
    func digest(vector: CryptoVectors.Authorization) throws {
        let domain = CryptoVectors.shared.domain(vector.domain)
        let digest = try EIP3009.digest(
            vector.authorization, name: domain.name, version: domain.version, chainId: domain.chainId,
            verifyingContract: domain.contract)
        #expect(hex(digest) == vector.digest)
        #expect(try EIP3009.digest(vector.authorization, domainSeparator: bytes(domain.separator)) == digest)
    }

    @Test("The protocol-notes spec example hashes to the published struct hash and digest")
    func specExample() throws {
        let auth = EIP3009Authorization(
            from: "0x857b06519E91e3A54538791bDbb0E22373e36b66", to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
            value: "10000", validAfter: "1740672089", validBefore: "1740672154",
            nonce: "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480")
        #expect(hex(try EIP3009.structHash(auth)) == "0x49ad644555c7bdf3ea4fc022a4940ae5589b230b1dde0065c5504fa19bbe39a4")
        let digest = try EIP3009.digest(
            auth, name: "USDC", version: "2", chainId: 84532,
            verifyingContract: EVMAddress(hex: "0x036CbD53842c5426634e7929541eC2318f3dCF7e")!)
        #expect(hex(digest) == "0xf256992871671abcb27ff92885a7afa46218724e5fc0bac35d050115aa1d22e6")
    }

    @Test("Address case does not change the digest")
    func addressCase() throws {
        var lower = Self.notes
        lower.from = lower.from.lowercased()
        lower.to = "0x" + lower.to.dropFirst(2).uppercased()
        #expect(try EIP3009.structHash(lower) == EIP3009.structHash(Self.notes))
    }

    @Test("Malformed fields are reported by name",
          arguments: [
              (.from, "0x1234", .malformedAddress(.from)),
              (.from, "f39Fd6e51aad88F6F4ce6aB8827279cffFb92266", .malformedAddress(.from)),
              (.to, "0x70997970C51812dc3A010C7d01b50e0d17dc79CZ", .malformedAddress(.to)),
              (.to, "", .malformedAddress(.to)),
              (.value, "", .notDecimal(.value)),
              (.value, "-1", .notDecimal(.value)),
              (.value, "0x2710", .notDecimal(.value)),
              (.value, "1e4", .notDecimal(.value)),
              (.value, "115792089237316195423570985008687907853269984665640564039457584007913129639936", .overflow(.value)),
              (.validAfter, "1767225000.0", .notDecimal(.validAfter)),
              (.validBefore, "123456789012345678901234567890123456789012345678901234567890123456789012345678901",
               .overflow(.validBefore)),
              (.nonce, "0x" + String(repeating: "11", count: 31), .malformedNonce),
              (.nonce, "0x" + String(repeating: "11", count: 33), .malformedNonce),
              (.nonce, String(repeating: "11", count: 32), .malformedNonce),
              (.nonce, "0x" + String(repeating: "1", count: 63) + "g", .malformedNonce),
              (.nonce, "0x" + String(repeating: "1", count: 63), .malformedNonce),
          ] as [(EIP3009.Field, String, EIP3009.AuthorizationError)])
    func malformedFields(field: EIP3009.Field, text: String, expected: EIP3009.AuthorizationError) {
        var auth = Self.notes
        switch field {
        case .from: auth.from = text
        case .to: auth.to = text
        case .value: auth.value = text
        case .validAfter: auth.validAfter = text
        case .validBefore: auth.validBefore = text
        case .nonce: auth.nonce = text
        }
        #expect(throws: expected) { try EIP3009.structHash(auth) }
        #expect(throws: expected) { try EIP3009.digest(auth, domainSeparator: bytes(Self.baseSepolia.separator)) }
    }

    @Test("Parsed values of 2^256 or more and nonces not 32 bytes long are refused")
    func parsedRefusals() {
        let from = EVMAddress(hex: Self.notes.from)!, to = EVMAddress(hex: Self.notes.to)!
        let small = Money.atomicUnits(fromInteger: "1")!
        let huge = Money.atomicUnits(fromInteger: "115792089237316195423570985008687907853269984665640564039457584007913129639936")!
        let nonce = [UInt8](repeating: 0x11, count: 32)
        #expect(throws: EIP3009.AuthorizationError.overflow(.value)) {
            try EIP3009.structHash(from: from, to: to, value: huge, validAfter: small, validBefore: small, nonce: nonce)
        }
        #expect(throws: EIP3009.AuthorizationError.overflow(.validAfter)) {
            try EIP3009.structHash(from: from, to: to, value: small, validAfter: huge, validBefore: small, nonce: nonce)
        }
        #expect(throws: EIP3009.AuthorizationError.overflow(.validBefore)) {
            try EIP3009.structHash(from: from, to: to, value: small, validAfter: small, validBefore: huge, nonce: nonce)
        }
        #expect(throws: EIP3009.AuthorizationError.malformedNonce) {
            try EIP3009.structHash(from: from, to: to, value: small, validAfter: small, validBefore: small, nonce: Array(nonce.dropLast()))
        }
    }
}
