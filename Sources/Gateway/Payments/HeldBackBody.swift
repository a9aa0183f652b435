import NIOCore

/// A streamed `upto` answer's body on its way to the client: everything but its last `limit` bytes
/// goes out as it arrives; those wait for the settlement (released once it succeeded, never sent
/// when it did not). `limit` is the route's `upto.holdBack`, what the seller chose to risk.
/// Chunks are kept as they came (no copying); at most one is split.
package struct HeldBackBody {
    package let limit: Int
    private var held = CircularBuffer<ByteBuffer>()
    package private(set) var heldBytes = 0

    package init(limit: Int) { self.limit = limit }

    /// Takes `chunk`; returns what may be relayed now, in order.
    package mutating func append(_ chunk: ByteBuffer) -> [ByteBuffer] {
        guard chunk.readableBytes > 0 else { return [] }
        held.append(chunk)
        heldBytes += chunk.readableBytes
        var out: [ByteBuffer] = []
        while heldBytes > limit, var first = held.first {
            let excess = heldBytes - limit
            if first.readableBytes <= excess {
                out.append(held.removeFirst())
                heldBytes -= first.readableBytes
            } else {
                out.append(first.readSlice(length: excess)!)
                held[held.startIndex] = first
                heldBytes -= excess
            }
        }
        return out
    }

    /// The bytes still held (at most `limit`), handed out once.
    package mutating func drain() -> [ByteBuffer] {
        defer {
            held.removeAll()
            heldBytes = 0
        }
        return Array(held)
    }
}
