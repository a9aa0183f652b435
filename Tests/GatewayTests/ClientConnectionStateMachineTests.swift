import Gateway
import NIOCore
import NIOHTTP1
import Testing

/// The client connection's rules, event by event, without a channel: time is a value passed in.
@Suite("Client connection state machine")
struct ClientConnectionStateMachineTests {
    typealias Machine = ClientConnectionStateMachine

    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
    static let idle = TimeAmount.seconds(5)

    static func head(_ uri: String, version: HTTPVersion = .http1_1) -> HTTPServerRequestPart {
        .head(HTTPRequestHead(version: version, method: .GET, uri: uri))
    }

    static func body(_ text: String) -> HTTPServerRequestPart { .body(ByteBuffer(string: text)) }

    static func uri(_ action: Machine.ReadAction?) -> String? {
        if case .start(let head) = action { return head.uri }
        return nil
    }

    @Test("pipelined requests start one at a time, in order, after the one in flight is finished")
    func pipeliningOrder() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        #expect(Self.uri(m.channelRead(Self.head("/a"), now: Self.t0)) == "/a")
        #expect(m.channelRead(.end(nil), now: Self.t0) == .end)
        // Read while /a is answered: queued, and reading stops.
        for part in [Self.head("/b"), Self.body("x"), .end(nil), Self.head("/c"), .end(nil)] {
            #expect(m.channelRead(part, now: Self.t0) == .none)
        }
        #expect(m.queuedParts == 5)
        #expect(m.read() == false)
        #expect(m.answerCompleted(now: Self.t0) == .finished)
        #expect(m.requestFinished() == true)
        #expect(Self.uri(m.nextQueuedPart()) == "/b")
        #expect(m.nextQueuedPart() == .body(ByteBuffer(string: "x")))
        #expect(m.nextQueuedPart() == .end)
        // /c waits for /b's answer.
        #expect(m.nextQueuedPart() == nil)
        #expect(m.queueDrained() == .none)
        #expect(m.read() == false, "reads stay held while /c waits")
        // /b is answered inside a drain: no nested drain; the outer one goes on.
        #expect(m.answerCompleted(now: Self.t0) == .finished)
        #expect(m.requestFinished() == true)
        #expect(Self.uri(m.nextQueuedPart()) == "/c")
        #expect(m.nextQueuedPart() == .end)
        #expect(m.answerCompleted(now: Self.t0) == .finished)
        #expect(m.requestFinished() == false, "already draining: no recursion per queued request")
        #expect(m.nextQueuedPart() == nil)
        // The read held since /b was queued is issued now.
        #expect(m.queueDrained() == .read)
        #expect(m.isIdle)
    }

    @Test("a request answered before its body ended drops the rest of the body and finishes at its end")
    func answeredBeforeTheBodyEnded() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = m.channelRead(Self.head("/upload"), now: Self.t0)
        #expect(m.channelRead(Self.body("abc"), now: Self.t0) == .body(ByteBuffer(string: "abc")))
        #expect(m.answerCompleted(now: Self.t0) == .none)
        #expect(m.phase == .discarding)
        #expect(m.channelRead(Self.body("def"), now: Self.t0) == .none)
        #expect(m.channelRead(.end(nil), now: Self.t0) == .endFinished)
        #expect(m.isIdle)
    }

    @Test("a read held while the upstream connects is released when the answer comes first (a 502 before the body ended)")
    func heldReadReleasedByAnEarlyAnswer() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = m.channelRead(Self.head("/upload"), now: Self.t0)
        #expect(m.bodySinkChanged(ready: false) == false)
        #expect(m.read() == false)
        // The connect fails: the gateway answers 502 while the client is still sending its body.
        // Without the released read, the body's rest is never read and the connection hangs.
        #expect(m.answerCompleted(now: Self.t0) == .read)
        #expect(m.read() == true)
    }

    @Test("a read held while the upstream is not writable is released when it is writable again")
    func upstreamBackPressure() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = m.channelRead(Self.head("/upload"), now: Self.t0)
        #expect(m.bodySinkChanged(ready: true) == false)
        #expect(m.read() == true)
        #expect(m.bodySinkChanged(ready: false) == false)
        #expect(m.read() == false)
        #expect(m.read() == false)
        #expect(m.bodySinkChanged(ready: true) == true, "the held read is issued once")
        #expect(m.bodySinkChanged(ready: true) == false)
    }

    @Test("between requests reads stop while the client is not reading its answers; a body is never held for that")
    func clientBackPressure() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        #expect(m.writabilityChanged(isWritable: false, now: Self.t0) == false)
        #expect(m.read() == false)
        #expect(m.writabilityChanged(isWritable: true, now: Self.t0) == true)
        // While a body is read (for the gateway's own answer or a payment), the client's
        // writability does not matter: a client that writes its whole request before reading
        // would wait on the gateway while the gateway waits on it.
        _ = m.channelRead(Self.head("/paid"), now: Self.t0)
        #expect(m.writabilityChanged(isWritable: false, now: Self.t0) == false)
        #expect(m.read() == true)
        // Read to its end, answer pending (waiting on the facilitator): held again.
        #expect(m.channelRead(.end(nil), now: Self.t0) == .end)
        #expect(m.read() == false)
        #expect(m.writabilityChanged(isWritable: true, now: Self.t0) == true)
    }

    @Test("a response is pending: pipelined requests are queued and reading stops until the queue is drained")
    func readHoldsWhileQueued() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = m.channelRead(Self.head("/slow"), now: Self.t0)
        _ = m.channelRead(.end(nil), now: Self.t0)
        #expect(m.read() == true, "nothing queued: reading goes on (to see the next request or the end of input)")
        _ = m.channelRead(Self.head("/next"), now: Self.t0)
        #expect(m.read() == false)
        #expect(m.writabilityChanged(isWritable: true, now: Self.t0) == false, "writability does not release a queue hold")
        #expect(m.bodySinkChanged(ready: true) == false)
        #expect(m.answerCompleted(now: Self.t0) == .finished)
        #expect(m.requestFinished() == true)
        #expect(Self.uri(m.nextQueuedPart()) == "/next")
        #expect(m.nextQueuedPart() == nil)
        #expect(m.queueDrained() == .read)
    }

    @Test("a half-closed idle connection closes at once")
    func halfCloseIdle() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        #expect(m.inputClosed() == true)
        #expect(m.closing)
        #expect(m.read() == false)
    }

    @Test("a half-close while answering: every queued request is still answered, the last with Connection: close")
    func halfCloseAfterPipelining() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = m.channelRead(Self.head("/a"), now: Self.t0)
        _ = m.channelRead(.end(nil), now: Self.t0)
        _ = m.channelRead(Self.head("/b"), now: Self.t0)
        _ = m.channelRead(.end(nil), now: Self.t0)
        #expect(m.inputClosed() == false)
        #expect(m.clientInputClosed)
        #expect(m.closesAfterAnswer(requested: false) == false, "/b is still queued: /a keeps the connection")
        m.responseEnded(close: false, now: Self.t0)
        #expect(m.answerCompleted(now: Self.t0) == .finished)
        #expect(m.requestFinished() == true)
        #expect(Self.uri(m.nextQueuedPart()) == "/b")
        #expect(m.nextQueuedPart() == .end)
        #expect(m.closesAfterAnswer(requested: false) == true, "the last answer says Connection: close")
        m.responseEnded(close: true, now: Self.t0)
        #expect(m.answerCompleted(now: Self.t0) == .finished)
        #expect(m.nextQueuedPart() == nil)
        #expect(m.queueDrained() == .none, "the close is already under way")
        #expect(m.closing)
    }

    @Test("a half-close whose last answer was written without close still closes once nothing is left")
    func halfCloseClosesAfterTheDrain() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = m.channelRead(Self.head("/a"), now: Self.t0)
        _ = m.channelRead(.end(nil), now: Self.t0)
        // The answer's head went out before the end of input was seen (a streamed answer).
        m.responseEnded(close: false, now: Self.t0)
        #expect(m.inputClosed() == false)
        #expect(m.answerCompleted(now: Self.t0) == .finished)
        #expect(m.requestFinished() == true)
        #expect(m.nextQueuedPart() == nil)
        #expect(m.queueDrained() == .close)
    }

    @Test("graceful shutdown closes an idle connection at once and a busy one after its answer")
    func quiescing() {
        var idle = Machine(now: Self.t0, idleTimeout: Self.idle)
        #expect(idle.quiesce() == true)

        var busy = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = busy.channelRead(Self.head("/slow"), now: Self.t0)
        _ = busy.channelRead(.end(nil), now: Self.t0)
        _ = busy.channelRead(Self.head("/queued"), now: Self.t0)
        #expect(busy.quiesce() == false)
        #expect(busy.closesAfterAnswer(requested: false), "the answer in flight says Connection: close")
        busy.responseEnded(close: true, now: Self.t0)
        #expect(busy.queuedParts == 0, "the queued request is never answered")
        #expect(busy.answerCompleted(now: Self.t0) == .finished)
        #expect(busy.requestFinished() == false)
        #expect(busy.read() == false)
    }

    @Test("a quiesce that arrives while the answer streams closes after it, even when that answer was begun keep-alive")
    func quiesceDuringAStreamedAnswer() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = m.channelRead(Self.head("/stream"), now: Self.t0)
        _ = m.channelRead(.end(nil), now: Self.t0)
        #expect(m.quiesce() == false)
        m.responseEnded(close: false, now: Self.t0)
        #expect(m.answerCompleted(now: Self.t0) == .finished)
        #expect(m.requestFinished() == true)
        #expect(m.nextQueuedPart() == nil)
        #expect(m.queueDrained() == .close)
    }

    @Test("the idle timeout ends a client that stops sending in the middle of a request, not one waiting on the upstream")
    func idleTimeoutMidRequest() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = m.channelRead(Self.head("/upload"), now: Self.t0)
        _ = m.channelRead(Self.body("abc"), now: Self.t0 + .seconds(1))
        #expect(m.idleTimerFired(now: Self.t0 + .seconds(5)) == .rearm(Self.t0 + .seconds(6)))
        #expect(m.idleTimerFired(now: Self.t0 + .seconds(6)) == .close)
        #expect(m.closing)

        var waiting = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = waiting.channelRead(Self.head("/slow"), now: Self.t0)
        _ = waiting.channelRead(.end(nil), now: Self.t0)
        #expect(waiting.idleTimerFired(now: Self.t0 + .seconds(60)) == .rearm(Self.t0 + .seconds(60) + .milliseconds(100)))
        #expect(waiting.answerCompleted(now: Self.t0 + .seconds(61)) == .finished)
        #expect(waiting.idleTimerFired(now: Self.t0 + .seconds(62)) == .rearm(Self.t0 + .seconds(66)))
        #expect(waiting.idleTimerFired(now: Self.t0 + .seconds(66)) == .close)
    }

    @Test("a client that takes none of a streamed answer for idleTimeout is closed, though the answer is exempt from the idle timeout")
    func clientStopsReadingAStreamedAnswer() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = m.channelRead(Self.head("/download"), now: Self.t0)
        _ = m.channelRead(.end(nil), now: Self.t0)
        _ = m.writabilityChanged(isWritable: false, now: Self.t0 + .seconds(10))
        // Past its idle deadline but exempt while the answer streams: checked again soon.
        #expect(m.idleTimerFired(now: Self.t0 + .seconds(11)) == .rearm(Self.t0 + .seconds(11) + .milliseconds(100)))
        // It reads a little (writable again), then stops again: the clock starts over.
        _ = m.writabilityChanged(isWritable: true, now: Self.t0 + .seconds(14))
        _ = m.writabilityChanged(isWritable: false, now: Self.t0 + .seconds(14))
        #expect(m.idleTimerFired(now: Self.t0 + .seconds(15)) == .rearm(Self.t0 + .seconds(15) + .milliseconds(100)))
        #expect(m.idleTimerFired(now: Self.t0 + .seconds(19)) == .close)
        #expect(m.closing)

        var reading = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = reading.channelRead(Self.head("/download"), now: Self.t0)
        _ = reading.channelRead(.end(nil), now: Self.t0)
        _ = reading.writabilityChanged(isWritable: false, now: Self.t0 + .seconds(10))
        _ = reading.writabilityChanged(isWritable: true, now: Self.t0 + .seconds(12))
        #expect(reading.idleTimerFired(now: Self.t0 + .seconds(60)) == .rearm(Self.t0 + .seconds(60) + .milliseconds(100)))
    }

    @Test("a request head must be complete headerTimeout after its first bytes: else 408, even on a kept-alive connection")
    func headerTimeout() {
        var m = Machine(now: Self.t0, idleTimeout: .seconds(60), headerTimeout: .seconds(10))
        #expect(m.awaitsHead)
        m.headBytesArrived(now: Self.t0 + .seconds(30))
        #expect(m.headDeadline == Self.t0 + .seconds(40))
        #expect(!m.awaitsHead)
        m.headBytesArrived(now: Self.t0 + .seconds(35))  // more bytes of the same head: the deadline stays
        #expect(m.headDeadline == Self.t0 + .seconds(40))
        #expect(m.idleTimerFired(now: Self.t0 + .seconds(39)) == .rearm(Self.t0 + .seconds(40)))
        #expect(m.idleTimerFired(now: Self.t0 + .seconds(40)) == .headTimeout)
        #expect(m.closing)

        // A head that completes in time clears the deadline; the next request's starts afresh.
        var k = Machine(now: Self.t0, idleTimeout: .seconds(60), headerTimeout: .seconds(10))
        k.headBytesArrived(now: Self.t0)
        _ = k.channelRead(Self.head("/a"), now: Self.t0 + .seconds(9))
        #expect(k.headDeadline == nil)
        // Bytes while the request is in flight (its body, a pipelined head) start no deadline.
        k.headBytesArrived(now: Self.t0 + .seconds(9))
        #expect(k.headDeadline == nil)
        _ = k.channelRead(.end(nil), now: Self.t0 + .seconds(9))
        #expect(k.idleTimerFired(now: Self.t0 + .seconds(30)) == .rearm(Self.t0 + .seconds(69)), "only the idle timeout is due")
        _ = k.answerCompleted(now: Self.t0 + .seconds(10))
        let drain = k.requestFinished()
        let next = k.nextQueuedPart()
        #expect(drain && next == nil)
        _ = k.queueDrained()
        #expect(k.awaitsHead)
        k.headBytesArrived(now: Self.t0 + .seconds(50))
        #expect(k.idleTimerFired(now: Self.t0 + .seconds(55)) == .rearm(Self.t0 + .seconds(60)))
        _ = k.channelRead(Self.head("/b"), now: Self.t0 + .seconds(59))
        #expect(k.idleTimerFired(now: Self.t0 + .seconds(60)) == .rearm(Self.t0 + .seconds(119)),
                "a complete head is answered, not timed out")
    }

    @Test("a close waiting for its last write is ended by the idle timer if that write never completes")
    func idleTimeoutEndsAStuckClose() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = m.channelRead(Self.head("/a", version: .http1_0), now: Self.t0)
        _ = m.channelRead(.end(nil), now: Self.t0)
        m.responseEnded(close: true, now: Self.t0)
        #expect(m.idleTimerFired(now: Self.t0 + .seconds(5)) == .close)
    }

    @Test("once closing, nothing more is read, queued or answered")
    func closingDropsEverything() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = m.channelRead(Self.head("/a"), now: Self.t0)
        _ = m.channelRead(.end(nil), now: Self.t0)
        m.responseEnded(close: true, now: Self.t0)
        #expect(m.channelRead(Self.head("/b"), now: Self.t0) == .none)
        #expect(m.queuedParts == 0)
        #expect(m.read() == false)
        #expect(m.writabilityChanged(isWritable: true, now: Self.t0) == false)
        #expect(m.quiesce() == false)
        #expect(m.inputClosed() == false)
    }

    @Test("the connection closed with a request in flight: its late answer finishes nothing and starts nothing queued")
    func closedWithARequestInFlight() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = m.channelRead(Self.head("/slow"), now: Self.t0)
        _ = m.channelRead(.end(nil), now: Self.t0)
        _ = m.channelRead(Self.head("/queued"), now: Self.t0)
        m.closeNow()  // channelInactive
        #expect(m.answerCompleted(now: Self.t0) == .finished)
        #expect(m.requestFinished() == false)
        #expect(m.nextQueuedPart() == nil)
        #expect(m.read() == false)
    }

    @Test("after the last request of a connection (an upgrade), nothing more is read once it has been read")
    func lastRequest() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = m.channelRead(Self.head("/h2c"), now: Self.t0)
        m.lastRequestOnConnection()
        #expect(m.read() == true, "its own body is read")
        _ = m.channelRead(.end(nil), now: Self.t0)
        #expect(m.read() == false)
    }

    @Test("a request dropped by a decoder failure leaves no request in flight")
    func abandoned() {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        _ = m.channelRead(Self.head("/a"), now: Self.t0)
        m.requestAbandoned()
        #expect(m.isIdle)
    }

    /// Every way a read can be held, and the event that must release it: a held read with no
    /// releasing event is a connection that hangs until the idle timeout (or forever, while
    /// waiting on the server is exempt from it).
    @Test("every read hold has an event that releases it", arguments: HoldCase.allCases)
    func everyHoldIsReleased(_ hold: HoldCase) {
        var m = Machine(now: Self.t0, idleTimeout: Self.idle)
        hold.enter(&m)
        #expect(m.read() == false, "the read is held")
        #expect(hold.release(&m) == true, "the releasing event issues the held read")
        #expect(m.read() == true)
    }

    enum HoldCase: String, CaseIterable, CustomTestStringConvertible {
        case upstreamConnecting, upstreamNotWritable, clientNotWritableBetweenRequests, clientNotWritableWhileAnswering
        case queuedBehindAnAnswer, connectingThenAnsweredEarly, upstreamNotWritableThenAnsweredEarly

        var testDescription: String { rawValue }

        func enter(_ m: inout Machine) {
            let t0 = ClientConnectionStateMachineTests.t0
            switch self {
            case .upstreamConnecting, .connectingThenAnsweredEarly:
                _ = m.channelRead(ClientConnectionStateMachineTests.head("/up"), now: t0)
                _ = m.bodySinkChanged(ready: false)
            case .upstreamNotWritable, .upstreamNotWritableThenAnsweredEarly:
                _ = m.channelRead(ClientConnectionStateMachineTests.head("/up"), now: t0)
                _ = m.bodySinkChanged(ready: true)
                _ = m.bodySinkChanged(ready: false)
            case .clientNotWritableBetweenRequests:
                _ = m.writabilityChanged(isWritable: false, now: t0)
            case .clientNotWritableWhileAnswering:
                _ = m.channelRead(ClientConnectionStateMachineTests.head("/a"), now: t0)
                _ = m.channelRead(.end(nil), now: t0)
                _ = m.writabilityChanged(isWritable: false, now: t0)
            case .queuedBehindAnAnswer:
                _ = m.channelRead(ClientConnectionStateMachineTests.head("/a"), now: t0)
                _ = m.channelRead(.end(nil), now: t0)
                _ = m.channelRead(ClientConnectionStateMachineTests.head("/b"), now: t0)
            }
        }

        func release(_ m: inout Machine) -> Bool {
            let t0 = ClientConnectionStateMachineTests.t0
            switch self {
            case .upstreamConnecting, .upstreamNotWritable:
                return m.bodySinkChanged(ready: true)
            case .connectingThenAnsweredEarly, .upstreamNotWritableThenAnsweredEarly:
                return m.answerCompleted(now: t0) == .read
            case .clientNotWritableBetweenRequests, .clientNotWritableWhileAnswering:
                return m.writabilityChanged(isWritable: true, now: t0)
            case .queuedBehindAnAnswer:
                guard m.answerCompleted(now: t0) == .finished, m.requestFinished() else { return false }
                guard ClientConnectionStateMachineTests.uri(m.nextQueuedPart()) == "/b", m.nextQueuedPart() == nil else { return false }
                // /b is in flight now and still being read: reading resumes for its body.
                return m.queueDrained() == .read
            }
        }
    }
}
