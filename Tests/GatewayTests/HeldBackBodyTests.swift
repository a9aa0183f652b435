import Gateway
import NIOCore
import Testing

@Suite("upto: the held-back body")
struct HeldBackBodyTests {
    @Test("everything but the last `limit` bytes goes out, in order, whatever the chunking",
          arguments: [(0, [5, 5]), (3, [1, 1, 1, 1]), (4, [10]), (10, [3, 3, 3]), (2, [1, 7, 1, 0, 4])])
    func holdsTheTail(limit: Int, chunks: [Int]) {
        var held = HeldBackBody(limit: limit)
        var out: [UInt8] = []
        var next: UInt8 = 0
        var sent: [UInt8] = []
        for size in chunks {
            let bytes = (0..<size).map { _ in defer { next &+= 1 }; return next }
            sent += bytes
            for part in held.append(ByteBuffer(bytes: bytes)) { out += part.readableBytesView }
            #expect(out == Array(sent.prefix(max(0, sent.count - limit))))
            #expect(held.heldBytes == min(limit, sent.count))
        }
        for part in held.drain() { out += part.readableBytesView }
        #expect(out == sent)
        #expect(held.heldBytes == 0 && held.drain().isEmpty)
    }
}
