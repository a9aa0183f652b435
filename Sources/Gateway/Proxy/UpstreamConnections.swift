import GatewayCore
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization
import X402
import X402Facilitator

/// Keep-alive HTTP/1.1 connections to one upstream, `http` or `https`, for the NIO-level proxy in
/// ``GatewayHandler``. An `https` upstream's connections run TLS 1.2+ (ALPN `http/1.1`) with the
/// certificate chain checked against the system's roots or the upstream's `caFile` and the name
/// checked against the URL's host (sent as SNI unless it is an IP literal); a connection that
/// fails the check fails its exchange (502). Connections live on the event loop of the client connection
/// that opened them (so every callback between the two channels is synchronous) and are kept in
/// an idle list per event loop. A connection goes back to the list only when its exchange ended
/// cleanly (request written to the end, response read to the end, both sides keep-alive); anything
/// else closes it. The idle lists are the client stack's ``IdleConnections``, as for the
/// facilitator: at most ``maxIdlePerLoop`` per event loop (a burst's extra connections close when
/// released), closed after ``idleTimeout`` and when the upstream closes them or sends anything
/// unasked. ``shutdown()`` closes every idle connection and makes later releases close theirs.
package final class UpstreamConnections: Sendable {
    let config: UpstreamConfig
    static let idleTimeout: TimeAmount = .seconds(60)
    /// Idle connections kept per event loop: like nginx's `keepalive` for an upstream block, the
    /// most a quiet upstream is left holding open, far above what a loop reuses between bursts.
    static let maxIdlePerLoop = 256

    typealias IdleList = IdleConnections<UpstreamConnection>

    private let loops = Mutex<[ObjectIdentifier: NIOLoopBound<IdleList>]>([:])
    private let closed = Atomic<Bool>(false)
    /// For `https`: the TLS context (trust roots loaded once, when the snapshot is built, never on
    /// an event loop), or why it could not be made.
    private let tls: Result<NIOSSLContext, TLSSetupFailed>?

    struct TLSSetupFailed: Error, CustomStringConvertible {
        let description: String
    }

    /// Where its connections go (the host and port of ``config``).
    let origin: HTTPOrigin?

    package init(config: UpstreamConfig) {
        self.config = config
        origin = HTTPOrigin(tls: config.tls, authority: Substring(config.hostHeader))
        guard config.tls else {
            tls = nil
            return
        }
        do {
            tls = .success(try NIOSSLContext(configuration: HTTP1Connector.tlsConfiguration(caFile: config.caFile)))
        } catch {
            tls = .failure(TLSSetupFailed(description: "TLS for upstream \(config.name): \(error)"))
        }
    }

    private func idleList(_ loop: any EventLoop) -> IdleList {
        let key = ObjectIdentifier(loop)
        let bound = loops.withLock { loops in
            if let bound = loops[key] { return bound }
            let bound = NIOLoopBound(IdleList(idleTimeout: Self.idleTimeout, maxPerOrigin: Self.maxIdlePerLoop), eventLoop: loop)
            loops[key] = bound
            return bound
        }
        return bound.value
    }

    /// An idle connection on `loop`, or nil. Must be called on `loop`.
    func acquire(on loop: any EventLoop) -> UpstreamConnection? {
        guard !closed.load(ordering: .relaxed), let origin, let connection = idleList(loop).acquire(origin) else { return nil }
        connection.leaveIdle()
        return connection
    }

    /// Puts a connection whose exchange ended cleanly back into its loop's idle list (or closes it).
    func release(_ connection: UpstreamConnection) {
        guard !closed.load(ordering: .relaxed) else {
            connection.close()
            return
        }
        idleList(connection.channel.eventLoop).release(connection)
    }

    /// Removes an idle connection that closed or expired.
    func remove(_ connection: UpstreamConnection) {
        idleList(connection.channel.eventLoop).remove(connection)
    }

    /// Opens a new connection on `loop` (the client connection's loop).
    func connect(on loop: any EventLoop) -> EventLoopFuture<any Channel> {
        let pool = self
        return open(on: loop) { origin in
            [
                HTTPRequestEncoder(),
                // Interim answers (1xx) are forwarded: the exchange relays them or drops them.
                ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .forward)),
                UpstreamConnection(pool: pool, origin: origin),
            ]
        }
    }

    /// Opens a connection of its own (never pooled) for a WebSocket handshake (the caller adds the
    /// ``TunnelHandshake``); once switched, the decoder passes on what followed the `101` when it
    /// is removed.
    func connectTunnel(on loop: any EventLoop) -> EventLoopFuture<any Channel> {
        open(on: loop) { _ in
            [
                HTTPRequestEncoder(),
                ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .forwardBytes, informationalResponseStrategy: .forward)),
            ]
        }
    }

    /// A connection to the upstream on `loop` (``HTTP1Connector``), reading only when asked.
    private func open(on loop: any EventLoop, _ handlers: @escaping @Sendable (HTTPOrigin) -> [any ChannelHandler]) -> EventLoopFuture<any Channel> {
        var ssl: NIOSSLContext?
        switch tls {
        case .success(let context): ssl = context
        case .failure(let failure): return loop.makeFailedFuture(failure)
        case nil: break
        }
        guard let origin else { return loop.makeFailedFuture(TLSSetupFailed(description: "upstream \(config.name): not a host and port")) }
        return HTTP1Connector.connect(to: origin, tls: ssl, on: loop, timeout: .milliseconds(config.connectTimeout.wholeMilliseconds),
                                      autoRead: false, handlers: { handlers(origin) })
    }

    /// Closes every idle connection; connections released later are closed instead of kept.
    func shutdown() {
        closed.store(true, ordering: .relaxed)
        let all = loops.withLock { Array($0.values) }
        for bound in all {
            bound.eventLoop.execute {
                for connection in bound.value.closeAll() { connection.close() }
            }
        }
    }
}
