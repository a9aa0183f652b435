import Foundation
import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import X402

// MARK: - WebSocket tunnels

extension GatewayHandler {
    /// A WebSocket handshake on a free route (``WebSocketTunnel``): sent to the upstream on a
    /// connection of its own; on `101` this connection becomes one end of a tunnel, else the
    /// upstream's answer (or 502/504) is written and the connection closes.
    func startTunnel(
        _ head: HTTPRequestHead, path: CanonicalPath, upstream: Upstream, counters: RouteMetrics, snapshot: GatewaySnapshot,
        requestID: String, remoteAddress: String?, context: ChannelHandlerContext
    ) {
        state.lastRequestOnConnection()
        metrics.requestStarted()
        let forwarding = Routing.forwardingInfo(head, peer: remoteAddress, snapshot: snapshot, requestID: requestID)
        var headers = ReverseProxy.upstreamHeaders(head.headers, upstream: upstream.config, forwarding: forwarding)
        headers.add(name: "Connection", value: "Upgrade")
        headers.add(name: "Upgrade", value: "websocket")
        let request = HTTPRequestHead(version: .http1_1, method: .GET, uri: upstream.config.basePath + path.pathAndQuery, headers: headers)
        let timeout = TimeAmount.milliseconds(upstream.config.timeout.wholeMilliseconds)
        let ended = { (outcome: RequestOutcome) in
            counters.record(outcome)
            self.metrics.requestEnded()
        }
        upstream.connections.connectTunnel(on: context.eventLoop).assumeIsolated().whenComplete { result in
            guard let context = self.context, context.channel.isActive else {
                if case .success(let channel) = result { channel.close(promise: nil) }
                ended(.upstreamError)
                return
            }
            switch result {
            case .failure(let error):
                self.tunnelFailed(error, snapshot: snapshot, requestID: requestID, context: context)
                ended(.upstreamError)
            case .success(let channel):
                self.tunnelUpstream = channel
                let handshake = TunnelHandshake(request: request, timeout: timeout) { answer in
                    guard self.tunnelUpstream === channel, let context = self.context else {
                        channel.close(promise: nil)
                        ended(.upstreamError)
                        return
                    }
                    self.tunnelUpstream = nil
                    switch answer {
                    case .success(.switched(let answerHead)):
                        // On the next tick: the decoder is still delivering the 101's end here, and
                        // must finish before the upstream's pipeline changes.
                        context.eventLoop.assumeIsolated().execute {
                            guard let context = self.context, context.channel.isActive else {
                                channel.close(promise: nil)
                                return
                            }
                            self.switchToTunnel(answerHead, upstream: channel, requestID: requestID, context: context)
                        }
                        ended(.free)
                    case .success(.refused(let answerHead, let body)):
                        channel.close(promise: nil)
                        self.writeRefusal(answerHead, body: body, requestID: requestID, context: context)
                        ended(.free)
                    case .failure(let error):
                        channel.close(promise: nil)
                        self.tunnelFailed(error, snapshot: snapshot, requestID: requestID, context: context)
                        ended(.upstreamError)
                    }
                }
                do {
                    try channel.pipeline.syncOperations.addHandler(handshake)
                } catch {
                    self.tunnelUpstream = nil
                    channel.close(promise: nil)
                    self.tunnelFailed(error, snapshot: snapshot, requestID: requestID, context: context)
                    ended(.upstreamError)
                }
            }
        }
    }

    /// The upstream switched: the `101` goes to the client, then both connections carry bytes
    /// through a pair of ``TunnelGlue``s; this handler, the decoder and the head watch leave the
    /// client's pipeline, the HTTP codecs the upstream's. The connection keeps its place under the
    /// connection limits until the tunnel ends.
    private func switchToTunnel(_ answer: HTTPResponseHead, upstream: any Channel, requestID: String, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 256)
        HTTPWire.writeSwitchingProtocolsHead(upstream: answer.headers, requestID: requestID, into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        let (limiter, metrics, admission) = (connections, self.metrics, admitted)
        admitted = nil  // released when the tunnel ends, not when this handler leaves
        let activity = TunnelActivity(now: context.eventLoop.now) {
            if let admission {
                limiter.release(admission)
                metrics.connectionClosed()
            }
        }
        let clientEnd = TunnelGlue(activity: activity, idleTimeout: idleTimeout)
        let upstreamEnd = TunnelGlue(activity: activity, idleTimeout: nil)
        clientEnd.partner = upstreamEnd
        upstreamEnd.partner = clientEnd
        do {
            let near = context.pipeline.syncOperations
            try near.addHandler(clientEnd, position: .last)
            if let headWatch { near.removeHandler(headWatch, promise: nil) }
            near.removeHandler(try near.handler(type: ByteToMessageHandler<HTTPRequestDecoder>.self), promise: nil)
            let far = upstream.pipeline.syncOperations
            try far.addHandler(upstreamEnd, position: .last)
            far.removeHandler(try far.handler(type: TunnelHandshake.self), promise: nil)
            far.removeHandler(try far.handler(type: HTTPRequestEncoder.self), promise: nil)
            // Bytes the upstream sent right after its 101 are passed on to `upstreamEnd` when the
            // decoder leaves (on the next tick), with no read-complete after them: flushed here.
            let decoderGone = upstream.eventLoop.makePromise(of: Void.self)
            far.removeHandler(try far.handler(type: ByteToMessageHandler<HTTPResponseDecoder>.self), promise: decoderGone)
            let client = context.channel
            decoderGone.futureResult.whenComplete { _ in client.flush() }
            upstream.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in upstream.close(promise: nil) }
        } catch {
            upstream.close(promise: nil)
            context.close(promise: nil)
            activity.end()
            return
        }
        let channel = context.channel
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        channel.read()
    }

    /// The upstream refused the handshake: its answer, framed by length, then the close.
    private func writeRefusal(_ answer: HTTPResponseHead, body: ByteBuffer, requestID: String, context: ChannelHandlerContext) {
        var headers = ReverseProxy.withoutGatewayOwnedResponseFields(answer.headers)
        headers.remove(name: "content-length")
        headers.remove(name: "transfer-encoding")
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        var buffer = context.channel.allocator.buffer(capacity: 256 + body.readableBytes)
        _ = HTTPWire.writeRelayedHead(status: answer.status, upstream: headers, requestID: requestID, isHead: false,
                                      clientIsHTTP10: false, close: true, into: &buffer)
        buffer.writeImmutableBuffer(body)
        context.write(wrapOutboundOut(buffer), promise: nil)
        framing = .none
        endResponse(close: true, context: context)
        answerCompleted()
    }

    /// No handshake answer from the upstream: 504 after its timeout, else 502; then the close.
    private func tunnelFailed(_ error: any Error, snapshot: GatewaySnapshot, requestID: String, context: ChannelHandlerContext) {
        var timedOut = (error as? WebSocketTunnel.Failure) == .timeout
        if case ChannelError.connectTimeout = error { timedOut = true }
        let answer = timedOut
            ? snapshot.responses.error(.gatewayTimeout, code: "upstream_timeout", message: "the upstream did not answer the WebSocket handshake in time")
            : snapshot.responses.error(.badGateway, code: "upstream_unavailable", message: "the upstream could not take the WebSocket handshake")
        write(answer.encoded(), requestID: requestID, close: true, http10: false, context: context)
        answerCompleted()
    }
}
