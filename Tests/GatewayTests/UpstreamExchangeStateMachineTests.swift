import Gateway
import NIOCore
import NIOHTTP1
import Testing

/// One request to an upstream, event by event, without sockets: time is a value passed in.
@Suite("Upstream exchange state machine")
struct UpstreamExchangeStateMachineTests {
    typealias Machine = UpstreamExchangeStateMachine

    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)
    static let timeout = TimeAmount.seconds(2)

    static func free(_ method: HTTPMethod = .GET) -> Machine {
        Machine(mode: .free, method: method, requestEnded: false, hasBody: false, timeout: timeout, now: t0)
    }

    static func hop(hasBody: Bool = false) -> Machine {
        Machine(mode: .paidHop, method: .GET, requestEnded: true, hasBody: hasBody, timeout: timeout, now: t0)
    }

    @Test("a free GET: buffered until connected, sent, head relayed, body relayed, connection reused")
    func happyPath() {
        var m = Self.free()
        #expect(m.requestEnd(now: Self.t0) == .buffer)
        m.connectionAttached(reused: false)
        #expect(m.request == .sent)
        #expect(m.responseHead(status: .ok, keepAlive: true, clientSpeaksHTTP11: true, now: Self.t0) == .deliver)
        #expect(m.responseBodyPart(now: Self.t0) == .relay)
        #expect(m.readComplete(clientWritable: true, holdingMore: false) == .flushAndRead)
        #expect(m.responseEnd() == .finish(reuse: true))
        #expect(m.isOver)
    }

    @Test("an upload streams once connected and its parts are buffered before")
    func upload() {
        var m = Self.free(.POST)
        #expect(m.requestBodyPart() == .buffer)
        m.connectionAttached(reused: false)
        #expect(m.request == .streaming)
        #expect(m.requestBodyPart() == .write)
        #expect(m.requestEnd(now: Self.t0) == .write)
        #expect(m.request == .sent)
    }

    @Test("the upstream dies before its head: 502 (504 when the connect timed out), no retry on a fresh connection")
    func diesBeforeHead() {
        var m = Self.free()
        _ = m.requestEnd(now: Self.t0)
        m.connectionAttached(reused: false)
        #expect(m.connectionFailed(connectTimedOut: false) == .failBeforeHead(timedOut: false))
        #expect(m.response == .failed)
        #expect(m.connectionFailed(connectTimedOut: false) == .ignore, "reported once")

        var timedOut = Self.free()
        #expect(timedOut.connectionFailed(connectTimedOut: true) == .failBeforeHead(timedOut: true))
    }

    @Test("the upstream dies after its head: the client connection must close (the body is incomplete)")
    func diesAfterHead() {
        var m = Self.free()
        _ = m.requestEnd(now: Self.t0)
        m.connectionAttached(reused: true)
        _ = m.responseHead(status: .ok, keepAlive: true, clientSpeaksHTTP11: true, now: Self.t0)
        #expect(m.connectionFailed(connectTimedOut: false) == .failAfterHead, "never retried once the head is in")
        #expect(m.responseEnd() == .ignore)
    }

    @Test("a stale pooled connection: GET is sent once more on a fresh one, and only once")
    func staleRetryForGET() {
        var m = Self.free()
        _ = m.requestEnd(now: Self.t0)
        m.connectionAttached(reused: true)
        #expect(m.connectionFailed(connectTimedOut: false) == .retry(withEnd: true))
        #expect(m.request == .ended, "the end goes out again with the fresh connection")
        #expect(m.connected == false)
        m.connectionAttached(reused: false)
        #expect(m.connectionFailed(connectTimedOut: false) == .failBeforeHead(timedOut: false))
    }

    @Test("a retried GET whose fresh connection is pooled again is not retried twice")
    func retriedOnce() {
        var m = Self.free(.HEAD)
        _ = m.requestEnd(now: Self.t0)
        m.connectionAttached(reused: true)
        #expect(m.connectionFailed(connectTimedOut: false) == .retry(withEnd: true))
        m.connectionAttached(reused: true)
        #expect(m.connectionFailed(connectTimedOut: false) == .failBeforeHead(timedOut: false))
    }

    @Test("a stale pooled connection never replays POST, nor a request whose body went out", arguments: [
        (HTTPMethod.POST, false), (.PUT, false), (.DELETE, false), (.PATCH, false), (.GET, true),
    ])
    func noRetryForUnsafeRequests(_ method: HTTPMethod, withBody: Bool) {
        var m = Self.free(method)
        m.connectionAttached(reused: true)
        if withBody { #expect(m.requestBodyPart() == .write) }
        _ = m.requestEnd(now: Self.t0)
        #expect(m.connectionFailed(connectTimedOut: false) == .failBeforeHead(timedOut: false))
    }

    @Test("a paid hop's known body is never sent twice")
    func hopWithBodyNotRetried() {
        var m = Self.hop(hasBody: true)
        m.connectionAttached(reused: true)
        #expect(m.connectionFailed(connectTimedOut: false) == .failBeforeHead(timedOut: false))
        var bodiless = Self.hop()
        bodiless.connectionAttached(reused: true)
        #expect(bodiless.connectionFailed(connectTimedOut: false) == .retry(withEnd: true))
    }

    @Test("the upstream answers before the request body ends: the rest is dropped and the connection is not reused")
    func answersBeforeTheBodyEnds() {
        var m = Self.free(.POST)
        m.connectionAttached(reused: false)
        #expect(m.requestBodyPart() == .write)
        #expect(m.responseHead(status: .payloadTooLarge, keepAlive: true, clientSpeaksHTTP11: true, now: Self.t0) == .deliver)
        #expect(m.responseEnd() == .finish(reuse: false), "half a request went out: the connection cannot carry another")
        #expect(m.requestBodyPart() == .drop)
        #expect(m.requestEnd(now: Self.t0) == .drop)
    }

    @Test("interim answers: relayed to HTTP/1.1 clients on free requests, dropped for HTTP/1.0 and on paid hops; 101 fails")
    func interim() {
        var m = Self.free()
        _ = m.requestEnd(now: Self.t0)
        m.connectionAttached(reused: false)
        #expect(m.responseHead(status: .continue, keepAlive: true, clientSpeaksHTTP11: true, now: Self.t0) == .relayInterim)
        #expect(m.responseHead(status: .init(statusCode: 103), keepAlive: true, clientSpeaksHTTP11: true, now: Self.t0) == .relayInterim)
        #expect(m.responseStarted == false, "a 1xx is not the answer")
        #expect(m.responseHead(status: .init(statusCode: 103), keepAlive: true, clientSpeaksHTTP11: false, now: Self.t0) == .dropInterim)
        #expect(m.responseHead(status: .ok, keepAlive: true, clientSpeaksHTTP11: true, now: Self.t0) == .deliver)

        var hop = Self.hop()
        hop.connectionAttached(reused: false)
        #expect(hop.responseHead(status: .init(statusCode: 103), keepAlive: true, clientSpeaksHTTP11: true, now: Self.t0) == .dropInterim)

        var upgraded = Self.free()
        #expect(upgraded.responseHead(status: .switchingProtocols, keepAlive: true, clientSpeaksHTTP11: true, now: Self.t0)
                == .failUnexpectedUpgrade)
        #expect(upgraded.isOver)
    }

    @Test("a paid hop holds its body until the flow relays it; then it works as a free exchange")
    func hopHoldsThenRelays() {
        var m = Self.hop()
        m.connectionAttached(reused: false)
        #expect(m.responseHead(status: .ok, keepAlive: true, clientSpeaksHTTP11: true, now: Self.t0) == .deliver)
        #expect(m.responseBodyPart(now: Self.t0) == .hold)
        #expect(m.readComplete(clientWritable: true, holdingMore: true) == .read)
        #expect(m.readComplete(clientWritable: true, holdingMore: false) == .none, "over the hold limit: reads wait for the flow")
        m.startRelaying()
        #expect(m.responseBodyPart(now: Self.t0) == .relay)
        #expect(m.readComplete(clientWritable: true, holdingMore: false) == .flushAndRead)
    }

    @Test("upstream reads pause while the client is not writable and resume when it is")
    func clientBackPressure() {
        var m = Self.free()
        _ = m.requestEnd(now: Self.t0)
        m.connectionAttached(reused: false)
        _ = m.responseHead(status: .ok, keepAlive: true, clientSpeaksHTTP11: true, now: Self.t0)
        #expect(m.readComplete(clientWritable: false, holdingMore: false) == .flushAndPause)
        #expect(m.paused)
        #expect(m.clientWritable() == true)
        #expect(m.clientWritable() == false, "resumed once")
    }

    @Test("no head within the timeout of the request's end: 504; an upload in progress is not timed")
    func headTimeout() {
        var m = Self.free(.POST)
        m.connectionAttached(reused: false)
        #expect(m.timerFired(now: Self.t0 + .seconds(3), decisionPending: false) == .rearm(Self.t0 + .seconds(4)))
        _ = m.requestEnd(now: Self.t0 + .seconds(3))
        #expect(m.timerFired(now: Self.t0 + .seconds(4), decisionPending: false) == .rearm(Self.t0 + .seconds(5)))
        #expect(m.timerFired(now: Self.t0 + .seconds(5), decisionPending: false) == .timeoutBeforeHead)
        #expect(m.response == .failed)
        #expect(m.timerFired(now: Self.t0 + .seconds(6), decisionPending: false) == .none)
    }

    @Test("a stalled stream fails after the timeout, unless the client is the slow one or the flow has not decided")
    func stalledStream() {
        var m = Self.free()
        _ = m.requestEnd(now: Self.t0)
        m.connectionAttached(reused: false)
        _ = m.responseHead(status: .ok, keepAlive: true, clientSpeaksHTTP11: true, now: Self.t0)
        _ = m.responseBodyPart(now: Self.t0 + .seconds(1))
        #expect(m.timerFired(now: Self.t0 + .seconds(2), decisionPending: false) == .rearm(Self.t0 + .seconds(3)))
        #expect(m.timerFired(now: Self.t0 + .seconds(3), decisionPending: false) == .stalled)

        var paused = m
        _ = paused.readComplete(clientWritable: false, holdingMore: false)
        #expect(paused.timerFired(now: Self.t0 + .seconds(9), decisionPending: false) == .rearm(Self.t0 + .seconds(9) + .milliseconds(100)))

        var hop = Self.hop()
        hop.connectionAttached(reused: false)
        _ = hop.responseHead(status: .ok, keepAlive: true, clientSpeaksHTTP11: true, now: Self.t0)
        #expect(hop.timerFired(now: Self.t0 + .seconds(9), decisionPending: true) == .rearm(Self.t0 + .seconds(9) + .milliseconds(100)))
        #expect(hop.timerFired(now: Self.t0 + .seconds(9), decisionPending: false) == .stalled)
    }

    @Test("an upstream that closes without keep-alive, or a request not sent to its end, never goes back to the pool")
    func reuseRules() {
        var closing = Self.free()
        _ = closing.requestEnd(now: Self.t0)
        closing.connectionAttached(reused: false)
        _ = closing.responseHead(status: .ok, keepAlive: false, clientSpeaksHTTP11: true, now: Self.t0)
        #expect(closing.responseEnd() == .finish(reuse: false))
    }

    @Test("an abandoned exchange ignores everything that still arrives")
    func abandoned() {
        var m = Self.free()
        m.connectionAttached(reused: false)
        m.abandon()
        #expect(m.responseHead(status: .ok, keepAlive: true, clientSpeaksHTTP11: true, now: Self.t0) == .ignore)
        #expect(m.responseBodyPart(now: Self.t0) == .ignore)
        #expect(m.responseEnd() == .ignore)
        #expect(m.connectionFailed(connectTimedOut: false) == .ignore)
        #expect(m.requestBodyPart() == .drop)
    }
}
