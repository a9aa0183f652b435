import NIOCore
import NIOHTTP1

/// The rules of one client connection of the main listener, as a value: which request part is
/// handled now and which waits, when reading stops and resumes, when the connection closes, and
/// what the idle timer does. ``GatewayHandler`` feeds it the connection's events and performs the
/// actions it returns; it holds no I/O and no clock of its own (time is passed in), so every rule
/// is unit-tested without a socket (`ClientConnectionStateMachineTests`).
///
/// One request is in flight at a time (``Phase``); parts of requests pipelined behind it are
/// queued, in order, and reading stops while anything is queued. A request is finished when it has
/// been read to its end *and* its answer is complete; then the queue is drained.
///
/// Reads (the outbound `read` event) are held:
/// - while anything is queued, or a close is under way;
/// - while a request body is read for an upstream that cannot take it yet (connecting, or its
///   connection not writable): ``bodySinkChanged(ready:)`` releases them;
/// - between request bodies (no request, or one read to its end), while the client is not reading
///   its answers (``writabilityChanged(isWritable:)``), and after the last request of a connection
///   (an upgrade the decoder stops parsing after).
/// A body is never held back for the client's writability: a client that writes its whole request
/// before reading would wait on the gateway while the gateway waits on it.
///
/// Every held read has a way out: each condition above has an event that lifts it and re-issues
/// the held read, and the idle timer ends a connection that stays quiet (see ``idleTimerFired(now:)``).
package struct ClientConnectionStateMachine {
    /// The request in flight.
    package enum Phase: UInt8, Sendable {
        /// No request in flight: the next head starts one.
        case idle
        /// A request's head has been handled and its body is being read; its answer is not complete.
        case reading
        /// The answer is complete (an early answer: 502, an upstream that answered before the
        /// body ended); the rest of the request's body is read and dropped.
        case discarding
        /// The request has been read to its end; its answer is not complete (the gateway waits on
        /// the upstream, the facilitator or its own writes).
        case answering
    }

    /// What to do with a request part read from the decoder.
    package enum ReadAction: Equatable {
        /// Start the request: route it, answer it or open its exchange.
        case start(HTTPRequestHead)
        /// Pass the body part to the request in flight.
        case body(ByteBuffer)
        /// The request in flight has been read to its end.
        case end
        /// The request in flight has been read to its end and was already answered: it is finished
        /// (call ``requestFinished()``).
        case endFinished
        /// Queued behind the request in flight, or dropped (closing, or a body already answered).
        case none
    }

    /// What to do once the queue has been drained after a finished request.
    package enum ResumeAction: Equatable {
        /// Issue the `read` that was held.
        case read
        /// Close the connection (draining or half-closed, and nothing left to answer).
        case close
        case none
    }

    /// What the idle timer does when it fires.
    package enum IdleAction: Equatable {
        case close
        /// A request head started arriving `headerTimeout` ago and is still not complete: answer
        /// 408 and close (nothing is in flight).
        case headTimeout
        /// Check again at this deadline.
        case rearm(NIODeadline)
    }

    package private(set) var phase = Phase.idle
    /// A close is under way (scheduled after the last write, or done): nothing more is read or answered.
    package private(set) var closing = false
    /// The time of the last read or answer.
    package private(set) var lastActive: NIODeadline
    package let idleTimeout: TimeAmount
    package let headerTimeout: TimeAmount
    /// When the request head whose first bytes arrived while idle must be complete.
    package private(set) var headDeadline: NIODeadline?

    private var queue = CircularBuffer<HTTPServerRequestPart>(initialCapacity: 4)
    /// A `read` arrived while reads were held; it is issued once they may resume.
    private var readHeld = false
    /// Graceful shutdown asked for while busy: close once the request in flight is answered.
    private var quiescing = false
    /// The client closed its sending side (while busy: it is closed after the answers it waits for).
    package private(set) var clientInputClosed = false
    /// `requestFinished` is draining the queue: a request finished by the drain does not start another.
    private var draining = false
    private var clientWritable = true
    /// Since when the client connection has not been writable (the client is not taking its answers).
    private var unwritableSince: NIODeadline?
    /// The request body's destination can take more (false while an upstream connects or is not writable).
    private var bodySinkReady = true
    /// The request in flight is the last on the connection (an upgrade NIO's decoder parses nothing after).
    private var lastRequest = false

    package init(now: NIODeadline, idleTimeout: TimeAmount, headerTimeout: TimeAmount = .seconds(10)) {
        self.lastActive = now
        self.idleTimeout = idleTimeout
        self.headerTimeout = headerTimeout
    }

    /// Nothing is in flight and nothing waits.
    package var isIdle: Bool { phase == .idle && queue.isEmpty }

    /// The number of request parts waiting behind the request in flight.
    package var queuedParts: Int { queue.count }

    // MARK: Reading

    /// A request part from the decoder.
    package mutating func channelRead(_ part: HTTPServerRequestPart, now: NIODeadline) -> ReadAction {
        lastActive = now
        if closing { return .none }
        if !queue.isEmpty {
            queue.append(part)
            return .none
        }
        return route(part)
    }

    /// The first bytes of a read arrived while the connection waited for a request (see
    /// ``RequestHeadWatch``): the head must be complete by ``headDeadline``. Ignored while a request
    /// is in flight (the bytes are its body, or a pipelined head that waits its turn) or closing.
    package mutating func headBytesArrived(now: NIODeadline) {
        guard awaitsHead else { return }
        headDeadline = now + headerTimeout
    }

    /// Whether the connection waits for a new request head (the watch before the decoder is re-armed).
    package var awaitsHead: Bool { isIdle && !closing && headDeadline == nil }

    private mutating func route(_ part: HTTPServerRequestPart) -> ReadAction {
        switch part {
        case .head(let head):
            guard phase == .idle else {
                queue.append(part)
                return .none
            }
            headDeadline = nil
            phase = .reading
            bodySinkReady = true
            return .start(head)
        case .body(let body):
            // A body part outside `.reading` belongs to a request already answered: dropped.
            return phase == .reading ? .body(body) : .none
        case .end:
            switch phase {
            case .reading:
                phase = .answering
                return .end
            case .discarding:
                phase = .idle
                return .endFinished
            case .idle, .answering:
                return .none
            }
        }
    }

    /// The outbound `read` event: whether to pass it on now. When it is held, it is issued later by
    /// the event that lifts the hold.
    package mutating func read() -> Bool {
        if mustHoldReads {
            readHeld = true
            return false
        }
        return true
    }

    private var mustHoldReads: Bool {
        if closing || !queue.isEmpty { return true }
        switch phase {
        case .reading: return !bodySinkReady
        case .discarding: return false
        case .idle, .answering: return lastRequest || !clientWritable
        }
    }

    /// Issues the held read if nothing holds it any more.
    private mutating func resume() -> Bool {
        guard readHeld, !mustHoldReads else { return false }
        readHeld = false
        return true
    }

    /// The client connection's writability changed. Returns whether to issue a held read.
    package mutating func writabilityChanged(isWritable: Bool, now: NIODeadline) -> Bool {
        clientWritable = isWritable
        if isWritable {
            unwritableSince = nil
        } else if unwritableSince == nil {
            unwritableSince = now
        }
        return resume()
    }

    /// The destination of the request body (an upstream connection) became ready or stopped being
    /// ready. Returns whether to issue a held read.
    package mutating func bodySinkChanged(ready: Bool) -> Bool {
        bodySinkReady = ready
        return resume()
    }

    /// The request being started is the last one on the connection: nothing is read after its end.
    package mutating func lastRequestOnConnection() {
        lastRequest = true
    }

    // MARK: Answering

    /// Whether the answer about to be written should end the connection: asked for, draining, or
    /// the last answer a half-closed client waits for (it has sent everything it will: reads are
    /// held only while requests are queued, so its end of input was seen after all it sent).
    package func closesAfterAnswer(requested: Bool) -> Bool {
        requested || quiescing || (clientInputClosed && queue.isEmpty)
    }

    /// A response has been written to its end. With `close` the connection closes after it: nothing
    /// more is read or answered from here.
    package mutating func responseEnded(close: Bool, now: NIODeadline) {
        lastActive = now
        if close { closeNow() }
    }

    /// The connection closes now (or once its last write is out): nothing more is read or answered.
    package mutating func closeNow() {
        closing = true
        queue.removeAll()
    }

    /// What to do once the answer to the request in flight is complete.
    package enum AnswerAction: Equatable {
        /// The request had been read to its end: it is finished, call ``requestFinished()``.
        case finished
        /// The rest of the request's body is read and dropped: issue the `read` that was held (an
        /// upstream that was connecting or not writable no longer holds it).
        case read
        /// The rest of the request's body is read and dropped; reading goes on as it was.
        case none
    }

    /// The answer to the request in flight is complete.
    package mutating func answerCompleted(now: NIODeadline) -> AnswerAction {
        lastActive = now
        switch phase {
        case .reading:
            phase = .discarding
            return resume() ? .read : .none
        case .answering:
            phase = .idle
            return .finished
        case .idle, .discarding:
            return .none
        }
    }

    /// The request in flight was dropped before its end (the decoder failed in its body): no
    /// request is in flight any more.
    package mutating func requestAbandoned() {
        phase = .idle
    }

    /// A request has finished. Returns whether the caller should drain the queue now: take parts
    /// with ``nextQueuedPart()`` (handling each as if just read) until it returns nil, then call
    /// ``queueDrained()``. False while a drain is already running (the running one goes on; no
    /// recursion per queued request) or while closing.
    package mutating func requestFinished() -> Bool {
        if closing || draining { return false }
        draining = true
        return true
    }

    /// The next queued part to handle, or nil when the queue is empty, a queued request must wait
    /// for the one now in flight, or the connection is closing.
    package mutating func nextQueuedPart() -> ReadAction? {
        guard !closing, let part = queue.first else { return nil }
        if case .head = part, phase != .idle { return nil }
        queue.removeFirst()
        return route(part)
    }

    /// The drain is over: issue the held read, close, or nothing.
    package mutating func queueDrained() -> ResumeAction {
        draining = false
        if closing { return .none }
        if (clientInputClosed || quiescing) && isIdle {
            closeNow()
            return .close
        }
        return resume() ? .read : .none
    }

    // MARK: Closing

    /// Graceful shutdown (`ChannelShouldQuiesceEvent`): true when the connection should close now
    /// (nothing in flight or queued); else it closes after the answer in flight.
    package mutating func quiesce() -> Bool {
        guard isIdle, !closing else {
            quiescing = true
            return false
        }
        closeNow()
        return true
    }

    /// The client closed its sending side (`ChannelEvent.inputClosed`): true when the connection
    /// should close now; else it still gets the answers to what it sent, then closes.
    package mutating func inputClosed() -> Bool {
        clientInputClosed = true
        guard isIdle, !closing else { return false }
        closeNow()
        return true
    }

    // MARK: Idle timeout

    /// The idle timer fired: close a connection quiet for `idleTimeout` (a client that stops
    /// sending in the middle of a request included, and a close whose last write never went out).
    /// Waiting on the upstream or the facilitator for a request read to its end is exempt, unless
    /// the client has taken none of its answer for `idleTimeout` (its connection stayed unwritable,
    /// like nginx's `send_timeout`): a client that stops reading a streamed answer would otherwise
    /// hold its connection and the upstream's for ever.
    /// A head that started arriving while idle and is not complete by its ``headDeadline`` gets
    /// ``IdleAction/headTimeout`` (slowloris: a client that trickles a head would otherwise hold
    /// the connection for the whole idle timeout, and could start again after each answer).
    package mutating func idleTimerFired(now: NIODeadline) -> IdleAction {
        if let since = unwritableSince, since + idleTimeout <= now {
            closeNow()
            return .close
        }
        if let deadline = headDeadline, deadline <= now, isIdle, !closing {
            closeNow()
            return .headTimeout
        }
        let due = lastActive + idleTimeout
        if (phase == .answering && !closing) || due > now {
            var next = max(due, now + .milliseconds(100))
            if let since = unwritableSince { next = min(next, max(since + idleTimeout, now + .milliseconds(100))) }
            if let deadline = headDeadline, isIdle { next = min(next, max(deadline, now + .milliseconds(100))) }
            return .rearm(next)
        }
        closeNow()
        return .close
    }
}
