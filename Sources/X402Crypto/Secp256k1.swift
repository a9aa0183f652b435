import CSecp256k1
import X402

/// Ethereum-style ECDSA over secp256k1 through libsecp256k1.
///
/// `shared` holds one verification context for the life of the process. libsecp256k1 documents
/// that a context used only through `const` pointers (parsing, recovery, serialisation) may be
/// shared between threads, and nothing here mutates it after creation, hence `@unchecked Sendable`.
public final class Secp256k1: @unchecked Sendable {
    public static let shared = Secp256k1()

    private let context: OpaquePointer

    private init() {
        guard let context = secp256k1_context_create(UInt32(SECP256K1_CONTEXT_VERIFY)) else {
            fatalError("secp256k1_context_create failed")
        }
        self.context = context
    }

    deinit {
        secp256k1_context_destroy(context)
    }

    /// The group order n, big-endian.
    static let order: [UInt8] = [
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE,
        0xBA, 0xAE, 0xDC, 0xE6, 0xAF, 0x48, 0xA0, 0x3B, 0xBF, 0xD2, 0x5E, 0x8C, 0xD0, 0x36, 0x41, 0x41,
    ]
    /// ⌊n / 2⌋, big-endian: the largest `s` EIP-2 allows.
    static let halfOrder: [UInt8] = [
        0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        0x5D, 0x57, 0x6E, 0x73, 0x57, 0xA4, 0x50, 0x1D, 0xDF, 0xE9, 0x2F, 0x46, 0x68, 0x1B, 0x20, 0xA0,
    ]

    /// The address whose key produced `signature` (r ‖ s ‖ v, 65 bytes) over the 32-byte `digest`, or nil.
    ///
    /// Accepts v ∈ {27, 28} and {0, 1}. Refuses, without calling into the library, any other v or
    /// length, r outside [1, n − 1], and s outside [1, n/2] (EIP-2: high-s twins are malleable copies).
    public func recoverAddress(digest: [UInt8], signature: [UInt8]) -> EVMAddress? {
        guard digest.count == 32, signature.count == 65 else { return nil }
        let recoveryID: Int32
        switch signature[64] {
        case 27, 28: recoveryID = Int32(signature[64] - 27)
        case 0, 1: recoveryID = Int32(signature[64])
        default: return nil
        }
        let r = signature[0..<32], s = signature[32..<64]
        guard !Self.isZero(r), r.lexicographicallyPrecedes(Self.order),
              !Self.isZero(s), !Self.halfOrder.lexicographicallyPrecedes(s)
        else { return nil }

        var parsed = secp256k1_ecdsa_recoverable_signature()
        let parsedOK = signature.withUnsafeBufferPointer {
            secp256k1_ecdsa_recoverable_signature_parse_compact(context, &parsed, $0.baseAddress!, recoveryID)
        }
        guard parsedOK == 1 else { return nil }
        var publicKey = secp256k1_pubkey()
        let recovered = digest.withUnsafeBufferPointer {
            secp256k1_ecdsa_recover(context, &publicKey, &parsed, $0.baseAddress!)
        }
        guard recovered == 1 else { return nil }
        return address(of: &publicKey)
    }

    // MARK: - Signing (tests and tooling)

    public enum SigningError: Error, Sendable, Hashable {
        case digestNot32Bytes
        /// Not 32 bytes, zero, or not below the group order.
        case invalidPrivateKey
    }

    /// Signs `digest` (32 bytes) and returns r ‖ s ‖ v with v ∈ {27, 28}. Nonces follow RFC 6979,
    /// so the output is deterministic, and libsecp256k1 always produces low-s signatures.
    public func sign(digest: [UInt8], privateKey: [UInt8]) throws(SigningError) -> [UInt8] {
        guard digest.count == 32 else { throw .digestNot32Bytes }
        try checkPrivateKey(privateKey)
        let signer = SigningContext.shared.context
        var signature = secp256k1_ecdsa_recoverable_signature()
        let signed = digest.withUnsafeBufferPointer { digestBytes in
            privateKey.withUnsafeBufferPointer { keyBytes in
                secp256k1_ecdsa_sign_recoverable(signer, &signature, digestBytes.baseAddress!, keyBytes.baseAddress!, nil, nil)
            }
        }
        guard signed == 1 else { throw .invalidPrivateKey }
        var recoveryID: Int32 = 0
        var compact = [UInt8](repeating: 0, count: 65)
        _ = compact.withUnsafeMutableBufferPointer {
            secp256k1_ecdsa_recoverable_signature_serialize_compact(context, $0.baseAddress!, &recoveryID, &signature)
        }
        compact[64] = 27 + UInt8(recoveryID)
        return compact
    }

    /// The address of a 32-byte private key.
    public func address(ofPrivateKey privateKey: [UInt8]) throws(SigningError) -> EVMAddress {
        try checkPrivateKey(privateKey)
        var publicKey = secp256k1_pubkey()
        let created = privateKey.withUnsafeBufferPointer {
            secp256k1_ec_pubkey_create(SigningContext.shared.context, &publicKey, $0.baseAddress!)
        }
        guard created == 1 else { throw .invalidPrivateKey }
        return address(of: &publicKey)
    }

    // MARK: - Helpers

    private func checkPrivateKey(_ privateKey: [UInt8]) throws(SigningError) {
        guard privateKey.count == 32,
              privateKey.withUnsafeBufferPointer({ secp256k1_ec_seckey_verify(context, $0.baseAddress!) }) == 1
        else { throw .invalidPrivateKey }
    }

    /// Last 20 bytes of keccak(X ‖ Y) of the uncompressed public key.
    private func address(of publicKey: inout secp256k1_pubkey) -> EVMAddress {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 65) { buffer in
            var length = 65
            _ = secp256k1_ec_pubkey_serialize(context, buffer.baseAddress!, &length, &publicKey, UInt32(SECP256K1_EC_UNCOMPRESSED))
            let hash = Keccak256.hash(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buffer)[1..<65]))
            return EVMAddress(bytes: Array(hash[12..<32]))!
        }
    }

    private static func isZero(_ bytes: ArraySlice<UInt8>) -> Bool {
        bytes.allSatisfy { $0 == 0 }
    }

    /// A separate signing context, made on first use (the gateway itself never signs) and
    /// randomised once against side channels before anyone can share it.
    private final class SigningContext: @unchecked Sendable {
        static let shared = SigningContext()
        let context: OpaquePointer

        private init() {
            guard let context = secp256k1_context_create(UInt32(SECP256K1_CONTEXT_SIGN)) else {
                fatalError("secp256k1_context_create failed")
            }
            var generator = SystemRandomNumberGenerator()
            let seed = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            _ = seed.withUnsafeBufferPointer { secp256k1_context_randomize(context, $0.baseAddress!) }
            self.context = context
        }

        deinit {
            secp256k1_context_destroy(context)
        }
    }
}
