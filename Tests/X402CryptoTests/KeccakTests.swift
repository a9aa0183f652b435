import Testing
import X402Crypto

@Suite("Keccak-256")
struct KeccakTests {
    @Test("Keccak-256 matches the known answers, on both sides of the 136-byte rate boundary",
          arguments: CryptoVectors.shared.keccak256)
    func knownAnswers(vector: CryptoVectors.KeccakVector) {
        #expect(hex(Keccak256.hash(vector.input)) == vector.hash)
    }

    @Test("Keccak-256 uses Keccak's padding, so the empty digest differs from FIPS SHA3-256's")
    func notSHA3() {
        let empty = hex(Keccak256.hash([UInt8]()))
        #expect(empty == "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
        #expect(empty != CryptoVectors.shared.sha3_256_empty)
    }

    @Test("Hashing a String hashes its UTF-8 bytes", arguments: ["", "abc", "héllo, wörld €", String(repeating: "ü", count: 100)])
    func stringsHashTheirUTF8(text: String) {
        #expect(Keccak256.hash(text) == Keccak256.hash(Array(text.utf8)))
    }

    @Test("Slices and non-contiguous collections hash the same as the equivalent array", arguments: [0, 1, 135, 136, 137, 300])
    func collectionShapesAgree(count: Int) {
        let array = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let expected = Keccak256.hash(array)
        let padded = [0xAA] + array + [0xBB]
        #expect(Keccak256.hash(padded[1..<(count + 1)]) == expected)
        #expect(Keccak256.hash(array.lazy.map { $0 }) == expected)
        #expect(Keccak256.hash(Array(array.reversed()).reversed()) == expected)
    }

    @Test("Every input length up to three blocks gives a 32-byte digest distinct from its neighbours")
    func lengthsAreDistinct() {
        var seen = Set<[UInt8]>()
        for length in 0...(3 * 136 + 1) {
            let digest = Keccak256.hash([UInt8](repeating: 0, count: length))
            #expect(digest.count == 32)
            seen.insert(digest)
        }
        #expect(seen.count == 3 * 136 + 2)
    }
}
