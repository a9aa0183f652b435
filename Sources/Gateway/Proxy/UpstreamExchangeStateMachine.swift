import NIOCore
import NIOHTTP1

/// The rules of one request to an upstream over a pooled connection, as a value: a free request
/// relayed as it comes, or a paid request's hop (``Mode/paidHop``), whose response head goes to the
/// payment flow and whose body is held until the flow decides. ``GatewayHandler`` owns the
/// connection and the bytes and performs the actions returned here; time is passed in, so the
/// rules are unit-tested without sockets (`UpstreamExchangeStateMachineTests`).
///
/// ```
/// request:  streaming ──end──▶ ended ──written──▶ sent          (a hop starts at `ended`)
/// response: awaitingHead ──head──▶ streaming ──end──▶ done
///              │ (connection lost: retry once, if safe)   │
///              └──────────── failed ◀──────────────────────┘
/// ```
package struct UpstreamExchangeStateMachine {
    package enum Mode: UInt8, Sendable {
        /// A free request: the response is relayed to the client as it comes.
        case free
        /// A paid request's hop: the head goes to the payment flow, the body is held until the flow
        /// collects it, relays it (``startRelaying()``) or drops it.
        case paidHop
    }

    package enum RequestState: UInt8, Sendable {
        /// The client is still sending the body.
        case streaming
        /// The client's request has been read to its end; the end is not written upstream yet
        /// (no connection yet).
        case ended
        /// The request's end has been written upstream.
        case sent
    }

    package enum ResponseState: UInt8, Sendable {
        case awaitingHead
        /// The head has been received; the body is being read.
        case streaming
        /// Read to its end.
        case done
        /// The connection failed, timed out, or the upstream misbehaved.
        case failed
    }

    /// Where a part of the request goes.
    package enum RequestPartAction: Equatable {
        /// Write it on the connection.
        case write
        /// Keep it until the connection is attached.
        case buffer
        /// Drop it: the exchange is over (answered early).
        case drop
    }

    /// What to do with a response head from the upstream.
    package enum HeadAction: Equatable {
        /// Relay an interim (1xx) head to the client.
        case relayInterim
        /// Drop an interim head (a paid hop, or a client that speaks HTTP/1.0).
        case dropInterim
        /// The final head: write it to the client (free) or hand it to the flow (paid hop).
        case deliver
        /// `101 Switching Protocols`, never asked for: the exchange fails (502) and the connection closes.
        case failUnexpectedUpgrade
        /// The exchange is over: ignored.
        case ignore
    }

    /// What to do with a part of the response body.
    package enum BodyAction: Equatable {
        /// Write it to the client.
        case relay
        /// Hold it for the payment flow.
        case hold
        case ignore
    }

    /// What to do once the response has been read to its end.
    package enum EndAction: Equatable {
        /// The exchange is over; the connection goes back to the pool when `reuse`, else it closes.
        case finish(reuse: Bool)
        case ignore
    }

    /// What to do when the connection closed or failed.
    package enum FailureAction: Equatable {
        /// A pooled connection the upstream closed as it was reused, before any answer: send the
        /// request again on a fresh connection (buffer its head, and its end when `withEnd`).
        case retry(withEnd: Bool)
        /// No head yet: answer 502 (504 when `timedOut`), or fail the paid flow.
        case failBeforeHead(timedOut: Bool)
        /// The head is out: for a free request the client connection closes (the only honest way
        /// left to say the body is incomplete); a hop's flow learns it when it asks for the body.
        case failAfterHead
        case ignore
    }

    /// What to do when a batch of response reads is complete.
    package enum ReadCompleteAction: Equatable {
        /// Flush what was relayed and read on.
        case flushAndRead
        /// Flush; upstream reads pause until the client connection is writable again.
        case flushAndPause
        /// A hop holding its body: read on.
        case read
        case none
    }

    /// What the response timer does.
    package enum TimerAction: Equatable {
        /// No head within the timeout of the request's end: 504 (or the flow's timeout).
        case timeoutBeforeHead
        /// No upstream data for the timeout while streaming: fail after the head.
        case stalled
        /// Check again then.
        case rearm(NIODeadline)
        /// The exchange is over.
        case none
    }

    package let mode: Mode
    package let timeout: TimeAmount
    package private(set) var request: RequestState
    package private(set) var response = ResponseState.awaitingHead
    /// A connection is attached (written to directly); otherwise parts are buffered.
    package private(set) var connected = false
    /// The response head is due by then.
    package private(set) var headDeadline: NIODeadline
    package private(set) var lastUpstreamActivity: NIODeadline
    /// Upstream reads stopped because the client connection is not writable.
    package private(set) var paused = false
    /// A hop's body is being relayed to the client: from here it works as a free exchange.
    package private(set) var relaying: Bool
    private let safeToRetry: Bool
    private var reusedConnection = false
    private var retried = false
    /// Request body bytes went out (or will with the buffered parts): never sent again.
    private var sentBody: Bool
    private var upstreamKeepAlive = true

    /// - Parameters:
    ///   - method: GET, HEAD and OPTIONS without a body are sent once more after a stale pooled
    ///     connection; nothing else ever is (RFC 9110 §9.2.2: the upstream may have acted on it).
    ///   - requestEnded: the client's request has been read to its end already (a paid hop).
    ///   - hasBody: the request carries body bytes that are already known (a paid hop's body).
    package init(mode: Mode, method: HTTPMethod, requestEnded: Bool, hasBody: Bool, timeout: TimeAmount, now: NIODeadline) {
        self.mode = mode
        self.timeout = timeout
        self.request = requestEnded ? .ended : .streaming
        switch method {
        case .GET, .HEAD, .OPTIONS: self.safeToRetry = true
        default: self.safeToRetry = false
        }
        self.sentBody = hasBody
        self.headDeadline = now + timeout
        self.lastUpstreamActivity = now
        self.relaying = mode == .free
    }

    /// The exchange is over (answered, or failed).
    package var isOver: Bool { response == .done || response == .failed }

    /// The response head has been received (and, for a free request, written to the client).
    package var responseStarted: Bool { response != .awaitingHead }

    /// The client's request has been read to its end.
    package var requestEnded: Bool { request != .streaming }

    // MARK: The request

    /// A connection is attached: write what was buffered. `reused` when it came from the pool.
    /// The request counts as sent when its end was among the buffered parts.
    package mutating func connectionAttached(reused: Bool) {
        connected = true
        reusedConnection = reused
        if request == .ended { request = .sent }
    }

    /// A part of the client's request body.
    package mutating func requestBodyPart() -> RequestPartAction {
        if isOver { return .drop }
        sentBody = true
        return connected ? .write : .buffer
    }

    /// The client's request has been read to its end. The head is due `timeout` from now (not from
    /// when a slow upload began).
    package mutating func requestEnd(now: NIODeadline) -> RequestPartAction {
        guard request == .streaming else { return .drop }
        if isOver {
            request = .ended
            return .drop
        }
        if response == .awaitingHead { headDeadline = now + timeout }
        if connected {
            request = .sent
            return .write
        }
        request = .ended
        return .buffer
    }

    // MARK: The response

    /// A response head. `clientSpeaksHTTP11`: interim answers go only to HTTP/1.1 clients
    /// (RFC 9110 §15.2).
    package mutating func responseHead(status: HTTPResponseStatus, keepAlive: Bool, clientSpeaksHTTP11: Bool, now: NIODeadline) -> HeadAction {
        guard response == .awaitingHead else { return .ignore }
        if status == .switchingProtocols {
            response = .failed
            return .failUnexpectedUpgrade
        }
        lastUpstreamActivity = now
        if status.code < 200 {
            return mode == .free && clientSpeaksHTTP11 ? .relayInterim : .dropInterim
        }
        response = .streaming
        upstreamKeepAlive = keepAlive
        return .deliver
    }

    package mutating func responseBodyPart(now: NIODeadline) -> BodyAction {
        guard response == .streaming else { return .ignore }
        lastUpstreamActivity = now
        return relaying ? .relay : .hold
    }

    /// The response has been read to its end. The connection is reused only after a clean
    /// exchange: the request written to its end and both sides keep-alive.
    package mutating func responseEnd() -> EndAction {
        guard response == .streaming else { return .ignore }
        response = .done
        connected = false
        return .finish(reuse: request == .sent && upstreamKeepAlive)
    }

    /// A batch of reads is over. `clientWritable`: the client connection can take more;
    /// `holdingMore`: a hop should read on (the flow is collecting, or what is held is small).
    package mutating func readComplete(clientWritable: Bool, holdingMore: Bool) -> ReadCompleteAction {
        guard !isOver else { return .none }
        if !relaying { return holdingMore ? .read : .none }
        if clientWritable { return .flushAndRead }
        paused = true
        return .flushAndPause
    }

    /// The client connection became writable: resume upstream reads if they were paused. The
    /// upstream's silence is counted from now: while paused it was not asked for anything, so a
    /// quiet stream (SSE) is not taken for a stalled one at the next tick.
    package mutating func clientWritable(now: NIODeadline = .now()) -> Bool {
        guard paused else { return false }
        paused = false
        lastUpstreamActivity = now
        return !isOver
    }

    /// The paid flow relays the body from here (the head has been written to the client).
    package mutating func startRelaying() {
        relaying = true
    }

    // MARK: Failures

    /// The connection closed or failed (`connectTimedOut`: the connect attempt timed out).
    package mutating func connectionFailed(connectTimedOut: Bool) -> FailureAction {
        switch response {
        case .done, .failed:
            return .ignore
        case .streaming:
            response = .failed
            connected = false
            return .failAfterHead
        case .awaitingHead:
            connected = false
            if reusedConnection, !retried, !sentBody, safeToRetry {
                retried = true
                reusedConnection = false
                let withEnd = request != .streaming
                if withEnd { request = .ended }
                return .retry(withEnd: withEnd)
            }
            response = .failed
            return .failBeforeHead(timedOut: connectTimedOut)
        }
    }

    /// The exchange is abandoned (the client left, the flow dropped the hop): nothing more happens.
    package mutating func abandon() {
        if !isOver { response = .failed }
        connected = false
    }

    // MARK: The response timer

    /// The response timer fired. `decisionPending`: a hop whose flow has not asked for the body yet
    /// (its wait is the facilitator's, not the upstream's).
    package mutating func timerFired(now: NIODeadline, decisionPending: Bool) -> TimerAction {
        switch response {
        case .done, .failed:
            return .none
        case .awaitingHead:
            if request == .streaming {
                // Still uploading (paced by the upstream's reading, or by a slow client, whom the
                // idle timeout ends): the head is due `timeout` after the request's end.
                return .rearm(now + min(timeout, .seconds(1)))
            }
            if headDeadline <= now {
                response = .failed
                return .timeoutBeforeHead
            }
            return .rearm(headDeadline)
        case .streaming:
            let due = lastUpstreamActivity + timeout
            if paused || (decisionPending && !relaying) || due > now {
                return .rearm(max(due, now + .milliseconds(100)))
            }
            return .stalled
        }
    }
}
