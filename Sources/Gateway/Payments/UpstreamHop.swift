import GatewayCore
import NIOCore
import NIOHTTP1

/// The paid request's one request to the upstream. The response body stays with the hop until the
/// flow decides: read it whole (`collect`), or relay it to the client (``PaidResult.Body.relay``),
/// or drop it (the connection handler does that for any other result).
package protocol UpstreamHop: Sendable {
    func send(_ head: HTTPRequestHead, path: CanonicalPath, to upstream: Upstream, forwarding: ReverseProxy.Forwarding,
              body: ByteBuffer?) async throws(ReverseProxy.Failure) -> HTTPResponseHead
    /// The rest of the response body; fails when it is longer than `limit` bytes.
    func collect(upTo limit: Int) async throws(ReverseProxy.Failure) -> ByteBuffer
    /// Streamed `upto`: sends the head (`headers` as given) and relays the body but its last `limit`
    /// bytes; returns what was counted when the upstream's body has ended, the tail still held.
    func relay(status: HTTPResponseStatus, headers: HTTPHeaders, holdingBack limit: Int) async throws(ReverseProxy.Failure)
        -> StreamedBody
}
