import Foundation
import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes
import Synchronization
import X402

/// Answers what the gateway writes itself (402 challenges, 400s, 404s, preflights) right in the
/// channel pipeline, on the connection's event loop, without entering Hummingbird's async request
/// path: those answers need no I/O, and most of their cost was that path. Everything else (free
/// and paid requests) is passed on to Hummingbird unchanged.
///
/// Ordering: while a request passed on is unanswered, later requests on the connection are passed
/// on too, so pipelined answers never overtake each other. The handler also owns the connection's
/// idle timeout (Hummingbird's own only sees the requests passed on).
final class FastAnswerHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let box: SnapshotBox
    private let logger: Logger
    private let idleTimeout: TimeAmount
    /// Requests passed on whose answer has not been written to the end.
    private var passedOn = 0
    /// The answer to an intercepted request, written when its (discarded) body has been read.
    private var pending: (answer: Answer, requestID: String, close: Bool)?
    private var lastActive = NIODeadline.now()
    private var idleCheck: Scheduled<Void>?

    init(box: SnapshotBox, logger: Logger, idleTimeout: Duration) {
        self.box = box
        self.logger = logger
        self.idleTimeout = .milliseconds(idleTimeout.wholeMilliseconds)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { scheduleIdleCheck(context, at: .now() + idleTimeout) }
    }

    func channelActive(context: ChannelHandlerContext) {
        scheduleIdleCheck(context, at: .now() + idleTimeout)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleCheck?.cancel()
        idleCheck = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleCheck?.cancel()
        idleCheck = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastActive = .now()
        switch unwrapInboundIn(data) {
        case .head(let head):
            if passedOn == 0 && pending == nil, let answer = answer(head, remoteAddress: context.channel.remoteAddress) {
                pending = answer
                return
            }
            passedOn += 1
            context.fireChannelRead(data)
        case .body:
            if pending == nil { context.fireChannelRead(data) }
        case .end:
            guard let (answer, requestID, close) = pending else {
                context.fireChannelRead(data)
                return
            }
            pending = nil
            write(answer, requestID: requestID, close: close, context: context)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) {
            passedOn -= 1
            lastActive = .now()
        }
        context.write(data, promise: promise)
    }

    /// The gateway's own answer to this head, or nil to pass the request on.
    private func answer(_ head: HTTPRequest, remoteAddress: SocketAddress?) -> (Answer, String, Bool)? {
        let requestID = head.headerFields[.xRequestID].flatMap(RequestID.accept) ?? RequestID.next()
        let decision = GatewayResponder.decide(
            head, remoteAddress: remoteAddress, snapshot: box.snapshot, logger: logger, requestID: requestID)
        guard case .answer(let answer, let counters, let outcome) = decision else { return nil }
        counters.record(outcome)
        let close = head.headerFields[values: .connection].contains { value in
            value.split(separator: ",").contains { $0.trimmingCharacters(in: .whitespaces).lowercased() == "close" }
        }
        return (answer, requestID, close)
    }

    private func write(_ answer: Answer, requestID: String, close: Bool, context: ChannelHandlerContext) {
        var headers = answer.headers
        if headers[.xRequestID] == nil { headers[.xRequestID] = requestID }
        headers[.date] = HTTPDate.now()
        if let body = answer.body, headers[.contentLength] == nil { headers[.contentLength] = String(body.readableBytes) }
        if close { headers[.connection] = "close" }
        context.write(wrapOutboundOut(.head(HTTPResponse(status: answer.status, headerFields: headers))), promise: nil)
        if let body = answer.body { context.write(wrapOutboundOut(.body(body)), promise: nil) }
        if close {
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
        } else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    private func scheduleIdleCheck(_ context: ChannelHandlerContext, at deadline: NIODeadline) {
        guard idleCheck == nil else { return }
        idleCheck = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(deadline: deadline) {
            self.idleCheck = nil
            let due = self.lastActive + self.idleTimeout
            if self.passedOn > 0 || self.pending != nil || due > .now() {
                self.scheduleIdleCheck(context, at: max(due, .now() + .milliseconds(100)))
            } else {
                context.close(promise: nil)
            }
        }
    }
}

/// The `Date` header value, formatted once per second.
enum HTTPDate {
    private static let cache = Mutex<(second: Int, value: String)>((-1, ""))

    static func now() -> String {
        let second = Int(Date().timeIntervalSince1970)
        if let hit = cache.withLock({ $0.second == second ? $0.value : nil }) { return hit }
        var t = time_t(second)
        var parts = tm()
        gmtime_r(&t, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let value = "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
        cache.withLock { $0 = (second, value) }
        return value
    }
}
