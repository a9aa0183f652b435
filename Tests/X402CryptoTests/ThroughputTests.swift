import Foundation
import Testing
import X402
import X402Crypto

/// A throughput probe, off by default and never asserting on time. Run it in a release build:
///   X402_CRYPTO_BENCH=1 swift test -c release --filter ThroughputTests
@Suite("Throughput probe", .enabled(if: ProcessInfo.processInfo.environment["X402_CRYPTO_BENCH"] != nil))
struct ThroughputTests {
    @Test("Prints digest + recovery operations per second on one core")
    func digestAndRecover() throws {
        let vector = CryptoVectors.shared.authorizations[0]
        let domain = CryptoVectors.shared.domain(vector.domain)
        let signature = bytes(try #require(vector.signature))
        let separator = bytes(domain.separator)
        let iterations = 20_000

        func measure(_ label: String, _ body: () throws -> Void) rethrows {
            let clock = ContinuousClock()
            let elapsed = try clock.measure { for _ in 0..<iterations { try body() } }
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            print("\(label): \(Int(Double(iterations) / seconds)) ops/s (\(String(format: "%.2f", seconds * 1e6 / Double(iterations))) µs each)")
        }

        var matches = 0
        measure("keccak256 of 224 bytes") { _ = Keccak256.hash([UInt8](repeating: 7, count: 224)) }
        try measure("digest, domain computed per call") {
            _ = try EIP3009.digest(vector.authorization, name: domain.name, version: domain.version, chainId: domain.chainId,
                                   verifyingContract: domain.contract)
        }
        measure("recover only") {
            if Secp256k1.shared.recoverAddress(digest: bytes(vector.digest), signature: signature) != nil { matches += 1 }
        }
        try measure("digest (domain computed) + recover") {
            let digest = try EIP3009.digest(vector.authorization, name: domain.name, version: domain.version,
                                            chainId: domain.chainId, verifyingContract: domain.contract)
            if Secp256k1.shared.recoverAddress(digest: digest, signature: signature) != nil { matches += 1 }
        }
        try measure("digest (cached domain) + recover") {
            let digest = try EIP3009.digest(vector.authorization, domainSeparator: separator)
            if Secp256k1.shared.recoverAddress(digest: digest, signature: signature) != nil { matches += 1 }
        }
        #expect(matches == 3 * iterations)
    }
}
