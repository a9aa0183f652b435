import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// A final answer (2xx, or any status when the caller asked for it) and its whole body.
struct HTTP1Response: Sendable {
    let status: Int
    let body: ByteBuffer
}

/// A small keep-alive HTTP/1.1 client for the facilitator: one request, one buffered answer.
///
/// Each call runs on one event loop of the group (`any()`: the caller's own loop when it runs on
/// one) and takes an idle connection of that loop for the request's origin, or opens one. A
/// connection goes back to its loop's idle list only after a clean exchange (request written to
/// the end, response read to the end, both sides keep-alive); idle connections are closed after
/// ``Configuration/idleTimeout`` and dropped when the server closes them.
///
/// Failures are ``FacilitatorFailure``s: no answer within ``Configuration/timeout`` (one deadline for
/// the whole call, redirects and retry included) or no connection within
/// ``Configuration/connectTimeout`` → `.timeout`; refused, reset, closed, TLS refused →
/// `.unreachable`; a final status outside 2xx → `.httpStatus` (its body is read and dropped), unless
/// the caller takes every status (`anyStatus`: the answer comes back with its body); a 2xx
/// body over ``Configuration/maxResponseBodyBytes`` → `.malformedResponse`.
///
/// Redirects: 307 and 308 are followed with the same method and body, up to
/// ``Configuration/maxRedirects`` hops (`http` → `https` allowed, `https` → `http` refused); a refused
/// or unfollowable redirect, and every other 3xx, is `.httpStatus`. A hop to another host drops the
/// ``Configuration/credentialHeaders``.
///
/// Retry: a request the caller marks retryable (verify, supported) that fails on a reused idle
/// connection before any response byte arrived (the server had closed it) is sent once more on a
/// fresh connection. A non-retryable request (settle) is never sent twice: idle connections that
/// turn out closed when taken are skipped before anything is written, it reuses only connections
/// idle for less than ``Configuration/nonRetryableReuseWindow`` (well inside any server's keep-alive
/// timeout, so the server closing it in the same instant is unlikely), and if the connection breaks
/// after its bytes were written the call fails `.unreachable`.
final class HTTP1Client: Sendable {
    struct Configuration: Sendable {
        var timeout: TimeAmount
        var connectTimeout: TimeAmount
        var idleTimeout: TimeAmount = .seconds(60)
        /// Idle connections kept per origin and event loop.
        var maxIdlePerOrigin = 32
        var maxResponseBodyBytes = 1 << 20
        var maxRedirects = 3
        var nonRetryableReuseWindow: TimeAmount = .seconds(2)
        /// Trust roots, verification and protocols for `https` origins (SNI and hostname checks use the URL's host).
        var tls: TLSConfiguration
        /// Lowercased names of headers that must not follow a redirect to another host.
        var credentialHeaders: Set<String> = []
    }

    let configuration: Configuration
    /// The host credential headers may be sent to.
    let home: String

    private struct LoopPool: Sendable {
        let loop: any EventLoop
        let pool: NIOLoopBoundBox<HTTP1IdleList>
    }

    private let group: any EventLoopGroup
    private let pools: [ObjectIdentifier: LoopPool]
    private let anyPool: LoopPool
    private let sslContext = Mutex<Result<NIOSSLContext, FacilitatorFailure>?>(nil)
    private let shutDown = Atomic<Bool>(false)

    init(home: HTTPOrigin, configuration: Configuration, eventLoopGroup: any EventLoopGroup) {
        self.home = home.host
        self.configuration = configuration
        self.group = eventLoopGroup
        var pools: [ObjectIdentifier: LoopPool] = [:]
        for loop in eventLoopGroup.makeIterator() {
            pools[ObjectIdentifier(loop)] = LoopPool(
                loop: loop, pool: .makeBoxSendingValue(HTTP1IdleList(configuration), eventLoop: loop))
        }
        let first = eventLoopGroup.any()
        self.anyPool = pools[ObjectIdentifier(first)]
            ?? LoopPool(loop: first, pool: .makeBoxSendingValue(HTTP1IdleList(configuration), eventLoop: first))
        self.pools = pools
        // Load the trust roots now rather than on an event loop at the first connection.
        if home.tls { _ = tlsContext() }
    }

    var isShutDown: Bool { shutDown.load(ordering: .relaxed) }

    /// Sends `head` (which carries its own `Host` and framing headers) and `body` to `origin`.
    func execute(
        _ head: HTTPRequestHead, body: ByteBuffer?, origin: HTTPOrigin, retryable: Bool, anyStatus: Bool = false
    ) async throws(FacilitatorFailure) -> HTTP1Response {
        guard !isShutDown else { throw .unreachable("the facilitator client is shut down") }
        let loop = group.any()
        let pool = pools[ObjectIdentifier(loop)] ?? anyPool
        let promise = pool.loop.makePromise(of: HTTP1Response.self)
        let exchange = NIOLoopBoundBox.makeBoxSendingValue(
            HTTP1Exchange(client: self, pool: pool.pool, head: head, body: body, origin: origin, retryable: retryable, anyStatus: anyStatus,
                          deadline: .now() + configuration.timeout, promise: promise),
            eventLoop: pool.loop)
        let result: Result<HTTP1Response, any Error> = await withTaskCancellationHandler {
            if pool.loop.inEventLoop {
                exchange.value.start()
            } else {
                pool.loop.execute { exchange.value.start() }
            }
            do { return .success(try await promise.futureResult.get()) } catch { return .failure(error) }
        } onCancel: {
            pool.loop.execute { exchange.value.cancel() }
        }
        switch result {
        case .success(let response): return response
        case .failure(let failure as FacilitatorFailure): throw failure
        case .failure(let error): throw .unreachable(String(describing: error))
        }
    }

    /// Closes every idle connection; connections released later are closed instead of kept.
    func shutdown() async {
        shutDown.store(true, ordering: .relaxed)
        var all = Array(pools.values)
        if pools[ObjectIdentifier(anyPool.loop)] == nil { all.append(anyPool) }
        for entry in all {
            let (pool, loop) = (entry.pool, entry.loop)
            try? await loop.flatSubmit {
                EventLoopFuture.andAllComplete(pool.value.closeAll().compactMap { $0.closeFuture() }, on: loop)
            }.get()
        }
    }

    /// Opens a connection to `origin` on `loop`; the future's channel carries an ``HTTP1Connection``.
    func connect(_ origin: HTTPOrigin, on loop: any EventLoop, timeout: TimeAmount) -> EventLoopFuture<any Channel> {
        var ssl: NIOSSLContext?
        if origin.tls {
            switch tlsContext() {
            case .success(let context): ssl = context
            case .failure(let failure): return loop.makeFailedFuture(failure)
            }
        }
        var encoding = HTTPRequestEncoder.Configuration()
        encoding.automaticallySetFramingHeaders = false
        let encoderConfiguration = encoding
        return HTTP1Connector.connect(to: origin, tls: ssl, on: loop, timeout: timeout) {
            [
                HTTPRequestEncoder(configuration: encoderConfiguration),
                ByteToMessageHandler(HTTPResponseDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop)),
                HTTP1Connection(origin: origin),
            ]
        }
    }

    /// The TLS context, made on first use (loading the trust roots once).
    private func tlsContext() -> Result<NIOSSLContext, FacilitatorFailure> {
        sslContext.withLock { cached in
            if let cached { return cached }
            let made: Result<NIOSSLContext, FacilitatorFailure>
            do {
                made = .success(try NIOSSLContext(configuration: configuration.tls))
            } catch {
                made = .failure(.unreachable("TLS configuration: \(error)"))
            }
            cached = made
            return made
        }
    }

    /// What a failed connect means for the caller.
    static func connectFailure(_ error: any Error) -> FacilitatorFailure {
        if let failure = error as? FacilitatorFailure { return failure }
        if let channelError = error as? ChannelError, case .connectTimeout = channelError { return .timeout }
        return .unreachable(String(describing: error))
    }
}

/// One call: its request, deadline and the response read so far. Lives on its event loop; moves
/// from connection to connection on a redirect or the one retry.
final class HTTP1Exchange {
    private let client: HTTP1Client
    private let poolBox: NIOLoopBoundBox<HTTP1IdleList>
    private var head: HTTPRequestHead
    private let body: ByteBuffer?
    private var origin: HTTPOrigin
    private let retryable: Bool
    /// A final status outside 2xx is an answer too (its body kept), not `.httpStatus`.
    private let anyStatus: Bool
    let deadline: NIODeadline
    private let promise: EventLoopPromise<HTTP1Response>

    private var done = false
    private var hops = 0
    private var retried = false
    private var connection: HTTP1Connection?
    // The current attempt.
    private var reused = false
    private var answered = false
    private var status = 0
    private var keepAlive = false
    private var location: String?
    private var received: ByteBuffer?
    private var receivedBytes = 0

    init(client: HTTP1Client, pool: NIOLoopBoundBox<HTTP1IdleList>, head: HTTPRequestHead, body: ByteBuffer?, origin: HTTPOrigin,
         retryable: Bool, anyStatus: Bool, deadline: NIODeadline, promise: EventLoopPromise<HTTP1Response>) {
        self.client = client
        self.poolBox = pool
        self.head = head
        self.body = body
        self.origin = origin
        self.retryable = retryable
        self.anyStatus = anyStatus
        self.deadline = deadline
        self.promise = promise
    }

    private var loop: any EventLoop { promise.futureResult.eventLoop }

    func start() {
        guard !done else { return }
        attempt(fresh: false)
    }

    /// The task awaiting the call was cancelled.
    func cancel() {
        guard !done else { return }
        connection?.abandon()
        connection = nil
        finish(.failure(.unreachable("the call was cancelled")))
    }

    private func attempt(fresh: Bool) {
        let pool = poolBox.value
        if !fresh, let idle = pool.acquire(origin, maxIdleAge: retryable ? nil : client.configuration.nonRetryableReuseWindow) {
            send(on: idle, reused: true)
            return
        }
        let remaining = deadline - .now()
        guard remaining > .zero else {
            finish(.failure(.timeout))
            return
        }
        let origin = self.origin
        client.connect(origin, on: loop, timeout: min(client.configuration.connectTimeout, remaining))
            .assumeIsolated().whenComplete { result in
                switch result {
                case .success(let channel):
                    guard !self.done, let connection = try? channel.pipeline.syncOperations.handler(type: HTTP1Connection.self) else {
                        channel.close(promise: nil)
                        return
                    }
                    connection.pool = pool
                    self.send(on: connection, reused: false)
                case .failure(let error):
                    self.finish(.failure(HTTP1Client.connectFailure(error)))
                }
            }
    }

    private func send(on connection: HTTP1Connection, reused: Bool) {
        self.connection = connection
        self.reused = reused
        answered = false
        status = 0
        keepAlive = false
        location = nil
        received = nil
        receivedBytes = 0
        connection.send(head, body: body, for: self)
    }

    // MARK: From the connection

    func responseHead(_ response: HTTPResponseHead) {
        guard !done else { return }
        answered = true
        status = Int(response.status.code)
        keepAlive = response.isKeepAlive
        if status == 307 || status == 308 { location = response.headers.first(name: "location") }
        if let length = response.headers.first(name: "content-length").flatMap({ Int($0) }),
           length > client.configuration.maxResponseBodyBytes
        {
            overflow()
        }
    }

    func responseBody(_ part: ByteBuffer) {
        guard !done else { return }
        receivedBytes += part.readableBytes
        guard receivedBytes <= client.configuration.maxResponseBodyBytes else {
            overflow()
            return
        }
        guard isAnswer else { return }
        if received == nil {
            received = part
        } else {
            var part = part
            received!.writeBuffer(&part)
        }
    }

    func responseEnd() {
        guard let connection else { return }
        self.connection = nil
        connection.exchangeEnded(keepAlive: keepAlive)
        guard !done else { return }
        if let location {
            follow(location)
        } else if isAnswer {
            finish(.success(HTTP1Response(status: status, body: received ?? ByteBuffer())))
        } else {
            finish(.failure(.httpStatus(status)))
        }
    }

    /// The connection closed or failed while this exchange owned it (`error` nil for a plain close).
    func connectionFailed(_ error: (any Error)?) {
        connection = nil
        guard !done else { return }
        if !answered && reused && retryable && !retried {
            retried = true
            attempt(fresh: true)
            return
        }
        let why: String
        if let error {
            why = String(describing: error)
        } else {
            why = answered ? "connection closed before the response was complete" : "connection closed before any response"
        }
        finish(.failure(.unreachable(why)))
    }

    /// The deadline passed while a connection was waiting for the answer (the connection closes itself).
    func deadlinePassed() {
        connection = nil
        finish(.failure(.timeout))
    }

    /// Whether the final status is one the caller takes (else `.httpStatus`).
    private var isAnswer: Bool { anyStatus || (200..<300).contains(status) }

    /// The answer is larger than allowed: the connection cannot be reused.
    private func overflow() {
        connection?.abandon()
        connection = nil
        finish(.failure((200..<300).contains(status) ? .malformedResponse : .httpStatus(status)))
    }

    private func follow(_ location: String) {
        hops += 1
        let here = HTTPURL(origin: origin, target: head.uri)
        guard hops <= client.configuration.maxRedirects, let next = here.resolving(location),
              next.origin.tls || !origin.tls else {
            finish(.failure(.httpStatus(status)))
            return
        }
        head.uri = next.target.isEmpty ? "/" : next.target
        if next.origin != origin { head.headers.replaceOrAdd(name: "Host", value: next.origin.hostHeader) }
        if next.origin.host != client.home {
            for name in client.configuration.credentialHeaders { head.headers.remove(name: name) }
        }
        origin = next.origin
        retried = false
        attempt(fresh: false)
    }

    private func finish(_ result: Result<HTTP1Response, FacilitatorFailure>) {
        guard !done else { return }
        done = true
        switch result {
        case .success(let response): promise.succeed(response)
        case .failure(let failure): promise.fail(failure)
        }
    }
}

/// A facilitator client's idle connections on one event loop.
typealias HTTP1IdleList = IdleConnections<HTTP1Connection>

extension HTTP1IdleList {
    convenience init(_ configuration: HTTP1Client.Configuration) {
        self.init(idleTimeout: configuration.idleTimeout, maxPerOrigin: configuration.maxIdlePerOrigin)
    }
}
