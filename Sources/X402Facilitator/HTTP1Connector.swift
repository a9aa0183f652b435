import NIOCore
import NIOPosix
import NIOSSL

/// How every HTTP/1 client connection of the gateway is opened (to a facilitator, a pricing
/// endpoint, a chain's JSON-RPC URL and the upstreams), so that TLS, SNI and name verification are
/// decided in one place.
package enum HTTP1Connector {
    /// TLS 1.2 or later, ALPN `http/1.1`, the certificate chain checked against the system's roots
    /// or the PEM bundle `caFile`, and the name checked against the host connected to (NIOSSL's
    /// default verification).
    package static func tlsConfiguration(caFile: String? = nil) -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.applicationProtocols = ["http/1.1"]
        if let caFile { tls.trustRoots = .file(caFile) }
        return tls
    }

    /// A connection to `origin` on `loop`: TCP without Nagle's delay (requests go out whole), then,
    /// with `tls`, the TLS handshake (SNI and the name checked unless the host is an IP literal),
    /// then `handlers()`. An IP literal is connected to without a resolver.
    package static func connect(
        to origin: HTTPOrigin, tls: NIOSSLContext?, on loop: any EventLoop, timeout: TimeAmount, autoRead: Bool = true,
        handlers: @escaping @Sendable () throws -> [any ChannelHandler]
    ) -> EventLoopFuture<any Channel> {
        let serverName = origin.isIPLiteral ? nil : origin.host
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(.autoRead, value: autoRead)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName))
                    }
                    try channel.pipeline.syncOperations.addHandlers(handlers())
                }
            }
        if origin.isIPLiteral, let address = try? SocketAddress(ipAddress: origin.host, port: origin.port) {
            return bootstrap.connect(to: address)
        }
        return bootstrap.connect(host: origin.host, port: origin.port)
    }
}
