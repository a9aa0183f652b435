import Foundation
import Testing
import X402
import X402Crypto

/// Vectors/permit2-vectors.json, made with eth-account by generate_permit2_vectors.py:
/// `.venv-e2e/bin/python Tests/X402CryptoTests/Vectors/generate_permit2_vectors.py`.
struct Permit2Vectors: Decodable, Sendable {
    struct Vector: Decodable, Sendable, CustomTestStringConvertible {
        var label: String
        var witness: String
        var chainId: UInt64
        var authorization: Permit2Authorization
        var domainSeparator: String
        var structHash: String
        var digest: String
        var signer: String?
        var signature: String?
        var kind: Permit2.Witness { witness == "upto" ? .upto : .exact }
        var testDescription: String { label }
    }

    var typeHashes: [String: String]
    var vectors: [Vector]

    static let shared: Permit2Vectors = {
        guard let url = Bundle.module.url(forResource: "permit2-vectors", withExtension: "json", subdirectory: "Vectors") else {
            fatalError("Vectors/permit2-vectors.json is missing from the test bundle")
        }
        do {
            return try JSONDecoder().decode(Permit2Vectors.self, from: Data(contentsOf: url))
        } catch {
            fatalError("cannot decode permit2-vectors.json: \(error)")
        }
    }()

    static var signed: [Vector] { shared.vectors.filter { $0.signature != nil } }
}

@Suite("Permit2 PermitWitnessTransferFrom (x402 witnesses)")
struct Permit2Tests {
    @Test("The type hashes of the exact and upto messages are eth-account's")
    func typeHashes() {
        #expect(hex(Permit2.typeHash(.exact)) == Permit2Vectors.shared.typeHashes["exact"])
        #expect(hex(Permit2.typeHash(.upto)) == Permit2Vectors.shared.typeHashes["upto"])
    }

    @Test("Permit2's domain separator on each chain matches (name, chain id, canonical address; no version)",
          arguments: Permit2Vectors.shared.vectors)
    func domainSeparator(vector: Permit2Vectors.Vector) {
        #expect(hex(Permit2.domainSeparator(chainId: vector.chainId)) == vector.domainSeparator)
    }

    @Test("The struct hash and digest of each vector match", arguments: Permit2Vectors.shared.vectors)
    func digest(vector: Permit2Vectors.Vector) throws {
        #expect(hex(try Permit2.structHash(vector.authorization, witness: vector.kind)) == vector.structHash)
        #expect(hex(try Permit2.digest(vector.authorization, witness: vector.kind, chainId: vector.chainId)) == vector.digest)
        #expect(hex(try Permit2.digest(vector.authorization, witness: vector.kind, domainSeparator: bytes(vector.domainSeparator)))
            == vector.digest)
    }

    @Test("Each signed vector's signature recovers to its signer", arguments: Permit2Vectors.signed)
    func recovery(vector: Permit2Vectors.Vector) throws {
        let digest = try Permit2.digest(vector.authorization, witness: vector.kind, chainId: vector.chainId)
        let recovered = Secp256k1.shared.recoverAddress(digest: digest, signature: bytes(vector.signature!))
        #expect(recovered == EVMAddress(hex: vector.authorization.from))
    }

    @Test("The witness type is part of the digest: an upto message hashed as exact differs")
    func witnessMatters() throws {
        let upto = Permit2Vectors.shared.vectors.first { $0.witness == "upto" }!
        #expect(try Permit2.digest(upto.authorization, witness: .exact, chainId: upto.chainId) != bytes(upto.digest))
    }

    @Test("Changing any signed field changes the digest", arguments: Permit2.Field.allCases)
    func everyFieldIsSigned(field: Permit2.Field) throws {
        let vector = Permit2Vectors.shared.vectors.first { $0.witness == "upto" && $0.signature != nil }!
        var auth = vector.authorization
        let other = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        switch field {
        case .from: return  // not part of the message: it is what the signature recovers to
        case .token: auth.permitted.token = other
        case .amount: auth.permitted.amount += "0"
        case .spender: auth.spender = other
        case .nonce: auth.nonce += "1"
        case .deadline: auth.deadline += "1"
        case .to: auth.witness.to = other
        case .facilitator: auth.witness.facilitator = other
        case .validAfter: auth.witness.validAfter = "1"
        }
        #expect(try Permit2.digest(auth, witness: .upto, chainId: vector.chainId) != bytes(vector.digest))
    }

    @Test("Malformed fields are reported by name",
          arguments: [
              (.token, "0x1234", .malformedAddress(.token)),
              (.spender, "", .malformedAddress(.spender)),
              (.to, "209693Bc6afc0C5328bA36FaF03C514EF312287C", .malformedAddress(.to)),
              (.amount, "-1", .notDecimal(.amount)),
              (.amount, "0x10", .notDecimal(.amount)),
              (.nonce, "", .notDecimal(.nonce)),
              (.deadline, "1e9", .notDecimal(.deadline)),
              (.validAfter, "115792089237316195423570985008687907853269984665640564039457584007913129639936", .overflow(.validAfter)),
              (.facilitator, "0xnothex", .malformedAddress(.facilitator)),
          ] as [(Permit2.Field, String, Permit2.AuthorizationError)])
    func malformed(field: Permit2.Field, text: String, expected: Permit2.AuthorizationError) {
        var auth = Permit2Vectors.shared.vectors.first { $0.witness == "upto" }!.authorization
        switch field {
        case .from: auth.from = text
        case .token: auth.permitted.token = text
        case .amount: auth.permitted.amount = text
        case .spender: auth.spender = text
        case .nonce: auth.nonce = text
        case .deadline: auth.deadline = text
        case .to: auth.witness.to = text
        case .facilitator: auth.witness.facilitator = text
        case .validAfter: auth.witness.validAfter = text
        }
        #expect(throws: expected) { try Permit2.structHash(auth, witness: .upto) }
    }

    @Test("An upto witness without a facilitator cannot be hashed; an exact one ignores it")
    func facilitatorPresence() throws {
        var auth = Permit2Vectors.shared.vectors.first { $0.witness == "upto" }!.authorization
        auth.witness.facilitator = nil
        #expect(throws: Permit2.AuthorizationError.malformedAddress(.facilitator)) { try Permit2.structHash(auth, witness: .upto) }
        let exact = Permit2Vectors.shared.vectors.first { $0.witness == "exact" }!
        var withFacilitator = exact.authorization
        withFacilitator.witness.facilitator = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        #expect(hex(try Permit2.structHash(withFacilitator, witness: .exact)) == exact.structHash)
    }
}
