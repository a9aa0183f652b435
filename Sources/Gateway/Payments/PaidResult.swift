import NIOCore
import NIOHTTP1

/// What a paid request comes to: an answer of the gateway's own, or the upstream's response
/// (with `PAYMENT-RESPONSE` once settled), its body held back or relayed as it arrives.
package enum PaidResult: Sendable {
    case answer(Answer)
    case upstream(status: HTTPResponseStatus, headers: HTTPHeaders, extra: [(String, String)], body: Body)

    package enum Body: Sendable {
        /// Read to the end before the settlement.
        case buffered(ByteBuffer)
        /// Still with the hop: relayed from where it is.
        case relay
    }

    /// A streamed `upto` answer, its head and most of its body already out (``UpstreamHop/relay``).
    case streamed(StreamEnd)

    package enum StreamEnd: Sendable {
        /// Settled: the held-back tail, then the receipt as a trailer (chunked answers only).
        case release(trailer: (String, String)?)
        /// Not settled: the tail is never sent, the connection closes.
        case abort
    }
}
