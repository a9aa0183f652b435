import Logging
import NIOCore

/// Sits on the listening channel and logs what NIO reports there: chiefly an accepted connection
/// that could not be set up (a socket option refused, the initializer failing). NIO closes such a
/// connection and fires the error here; without this handler every connection would be reset with
/// nothing in the log.
final class AcceptFailureLogger: ChannelInboundHandler, Sendable {
    typealias InboundIn = any Channel

    let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.error("accepted connection could not be set up; it was closed", metadata: ["error": "\(error)"])
        context.fireErrorCaught(error)
    }
}
