import NIOCore

/// Sits before the HTTP/1 request decoder and tells the ``GatewayHandler`` when the first bytes of
/// a request head arrive, which the decoder does not (it passes a head on only once complete):
/// the start of the `limits.headerTimeout` deadline. Armed while the connection waits for a
/// request; the first read after that fires ``HeadStarted`` once, then the handler re-arms it when
/// the connection is idle again. Reads pass through unchanged.
final class RequestHeadWatch: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Bytes arrived while no request was in flight.
    struct HeadStarted {}

    /// Whether the next read starts a request head (set by the connection's handler).
    var armed = true

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if armed {
            armed = false
            context.fireUserInboundEventTriggered(HeadStarted())
        }
        context.fireChannelRead(data)
    }
}
