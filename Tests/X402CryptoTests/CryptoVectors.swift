import Foundation
import Testing
import X402

/// The checked-in known-answer vectors (Vectors/crypto-vectors.json, made by generate_vectors.py).
struct CryptoVectors: Decodable, Sendable {
    struct KeccakVector: Decodable, Sendable, CustomTestStringConvertible {
        var label: String
        var utf8: String?
        var hex: String?
        var hash: String
        var input: [UInt8] { utf8.map { Array($0.utf8) } ?? bytes(hex!) }
        var testDescription: String { label }
    }

    struct EIP55Vectors: Decodable, Sendable {
        struct Bad: Decodable, Sendable, CustomTestStringConvertible {
            var input: String
            var expected: String
            var testDescription: String { input }
        }
        var valid: [String]
        var badChecksum: [Bad]
    }

    struct TypeHash: Decodable, Sendable {
        var type: String
        var hash: String
    }

    struct Domain: Decodable, Sendable, CustomTestStringConvertible {
        var label: String
        var name: String
        var version: String
        var chainId: UInt64
        var verifyingContract: String
        var separator: String
        var contract: EVMAddress { EVMAddress(hex: verifyingContract)! }
        var testDescription: String { label }
    }

    struct Key: Decodable, Sendable, CustomTestStringConvertible {
        var label: String
        var privateKey: String
        var address: String
        var testDescription: String { label }
    }

    struct Authorization: Decodable, Sendable, CustomTestStringConvertible {
        var label: String
        var domain: String
        var authorization: EIP3009Authorization
        var structHash: String
        var digest: String
        var signer: String?
        var signature: String?
        var testDescription: String { label }
    }

    struct SignatureCase: Decodable, Sendable, CustomTestStringConvertible {
        var label: String
        var digest: String
        var signature: String
        var address: String?
        var testDescription: String { label }
    }

    var keccak256: [KeccakVector]
    var sha3_256_empty: String
    var eip55: EIP55Vectors
    var typeHashes: [TypeHash]
    var domains: [Domain]
    var keys: [Key]
    var authorizations: [Authorization]
    var rejectedSignatures: [SignatureCase]
    var acceptedEdgeSignatures: [SignatureCase]

    static let shared: CryptoVectors = {
        guard let url = Bundle.module.url(forResource: "crypto-vectors", withExtension: "json", subdirectory: "Vectors") else {
            fatalError("Vectors/crypto-vectors.json is missing from the test bundle")
        }
        do {
            return try JSONDecoder().decode(CryptoVectors.self, from: Data(contentsOf: url))
        } catch {
            fatalError("cannot decode crypto-vectors.json: \(error)")
        }
    }()

    func domain(_ label: String) -> Domain { domains.first { $0.label == label }! }
    func key(_ label: String) -> Key { keys.first { $0.label == label }! }
    /// Authorizations that carry a signature by a known key.
    var signedAuthorizations: [Authorization] { authorizations.filter { $0.signature != nil } }
}

/// Decodes `0x`-prefixed hex from the vectors; a malformed vector is a bug in the file.
func bytes(_ hex: String) -> [UInt8] {
    guard let decoded = Hex.decode(hex, prefixed: true) else { fatalError("bad hex in vectors: \(hex)") }
    return decoded
}

func hex(_ bytes: [UInt8]) -> String { "0x" + Hex.encode(bytes) }
