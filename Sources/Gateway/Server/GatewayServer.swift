import Foundation
import GatewayCore
import GatewayStorage
import Hummingbird
import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import NIOSSL
import ServiceLifecycle
import Synchronization
import X402
import X402Facilitator

/// Where the configuration came from, so that it can be read again on reload.
public struct ConfigSource: Sendable {
    public var path: String
    public var environment: [String: String]

    public init(path: String, environment: [String: String]) {
        self.path = path
        self.environment = environment
    }
}

/// The gateway as a `Service`: the HTTP listener, the admin listener, the config watcher, the
/// reconciler and the upstream/facilitator clients.
public final class GatewayServer: Service {
    let box: SnapshotBox
    let clients: ClientPool
    /// Replaces the configured facilitator (tests).
    let facilitatorOverride: (any Facilitator)?
    let paid: PaidRequestHandler
    /// The main listener's open connections, against `limits.maxConnections*`.
    let connections = ConnectionLimiter()
    /// The main listener's client connections open now.
    public var openConnections: Int { connections.open }
    public let store: any PaymentStore
    /// The routes' rate limits and free allowances (kept across reloads).
    let limiter: RequestLimiter
    public let metrics: GatewayMetrics
    let reconciler: Reconciler
    /// Settles the payments of `settlement: deferred` routes after delivery.
    let settlements: SettlementWorker
    let logger: Logger
    let source: ConfigSource?
    let onListening: @Sendable (Int) async -> Void
    let onAdminListening: @Sendable (Int) async -> Void
    /// The file text last read by a reload (changed text triggers the watcher) and the last failure.
    /// Held only for a moment: the watcher reads it on an event loop.
    private let reloadState = Mutex(ReloadState())
    /// Held by the reload in progress, on the thread pool (and by a snapshot swap for new `upto` addresses).
    private let reloading = Mutex(())
    /// The main listener's certificate, once it listens with `tls`.
    let serverTLS = Mutex<ServerTLS?>(nil)
    /// The facilitator's `upto` addresses learnt from `/supported` (see ``UptoFacilitatorAddresses``).
    private let uptoAddresses = Mutex<[String: String]>([:])

    private struct ReloadState {
        var text: String?
        var lastError: String?
    }

    /// - Parameters:
    ///   - facilitator: defaults to an HTTP client for `config.facilitator`, or a
    ///     ``FacilitatorGroup`` of clients when `config.facilitators` lists several.
    ///   - store: where payment claims and the ledger live (in memory by default; the executable
    ///     opens the configured database).
    ///   - counters: where free allowances (and, shared, rate limits) are counted: the same
    ///     database (nil: in this process's memory).
    ///   - clock: unix seconds, injected so tests control time windows.
    ///   - source: the file to re-read on ``reload(trigger:)`` and to watch; no reloads without it.
    ///   - onListening: called with the bound port once the listener is up (port 0 in tests).
    ///   - onAdminListening: the same for the admin listener, when configured.
    public init(
        config: GatewayConfig, logger: Logger, facilitator: (any Facilitator)? = nil,
        store: any PaymentStore = InMemoryPaymentStore(), counters: (any LimitCounterStore)? = nil,
        clock: @escaping @Sendable () -> UInt64 = { UInt64(Date().timeIntervalSince1970) },
        source: ConfigSource? = nil, metrics: GatewayMetrics = GatewayMetrics(),
        onListening: @escaping @Sendable (Int) async -> Void = { _ in },
        onAdminListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) {
        self.clients = ClientPool(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: logger)
        self.facilitatorOverride = facilitator
        self.metrics = metrics
        self.logger = logger
        self.source = source
        self.onListening = onListening
        self.onAdminListening = onAdminListening
        self.store = store
        let limiter = RequestLimiter(store: counters, maxKeys: config.clientLimits.maxKeys, metrics: metrics, logger: logger)
        self.limiter = limiter
        let box = SnapshotBox(Self.snapshot(config, clients: clients, facilitator: facilitator, metrics: metrics, limiter: limiter))
        self.box = box
        self.settlements = SettlementWorker(store: store, snapshot: { box.snapshot }, metrics: metrics, logger: logger)
        self.paid = PaidRequestHandler(store: store, metrics: metrics, clock: clock, settlements: settlements)
        self.reconciler = Reconciler(store: store, config: { box.snapshot.config }, metrics: metrics, logger: logger)
        if let source { reloadState.withLock { $0.text = try? String(contentsOfFile: source.path, encoding: .utf8) } }
    }

    private static func snapshot(
        _ config: GatewayConfig, clients: ClientPool, facilitator: (any Facilitator)?, metrics: GatewayMetrics, limiter: RequestLimiter,
        uptoAddresses: [String: String] = [:]
    ) -> GatewaySnapshot {
        let inner = facilitator ?? clients.facilitator(config.facilitators)
        return GatewaySnapshot(
            config: UptoFacilitatorAddresses.fill(config, with: uptoAddresses), upstreams: clients.upstreams(config.upstreams),
            facilitator: inner.map { MeteredFacilitator(inner: $0, metrics: metrics) }, metrics: metrics, limiter: limiter,
            quoter: clients.pricing)
    }

    /// The configuration now serving.
    public var config: GatewayConfig { box.snapshot.config }

    /// Returns once the ledger steps that paid answers did not wait for (``LedgerWriteBehind``),
    /// started before the call, have been written.
    public func ledgerWritesLanded() async { await paid.ledgerWrites.drain() }

    /// The limiter's rounds: sharing rate-limit counts, dropping idle clients, purging the store.
    private func runLimiter() async throws {
        let box = self.box
        try await limiter.run(settings: {
            let snapshot = box.snapshot
            return RequestLimiter.Settings(clientLimits: snapshot.config.clientLimits, rateLimits: snapshot.rateLimits)
        }, clock: paid.clock)
    }

    public func run() async throws {
        let config = box.snapshot.config
        // The deferred exposure is known before anything is served (else nothing is deferred until
        // the worker's next read succeeds).
        do {
            try await settlements.refresh()
        } catch {
            logger.warning("deferred settlements: the payment store failed; nothing is deferred until it answers", metadata: ["error": "\(error)"])
        }
        // upto offers need the facilitator's address before their first 402: ask once before listening.
        await learnUptoAddresses()
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await self.logFacilitatorCoverage() }
                group.addTask { await self.settlements.run() }
                group.addTask { try? await cancelWhenGracefulShutdown { try await self.keepLearningUptoAddresses() } }
                group.addTask { try? await cancelWhenGracefulShutdown { try await self.watchConfigFile() } }
                group.addTask { try? await cancelWhenGracefulShutdown { try await self.watchCertificate() } }
                group.addTask { try? await cancelWhenGracefulShutdown { try await self.reconciler.run() } }
                group.addTask { try? await cancelWhenGracefulShutdown { try await self.runLimiter() } }
                if let admin = config.admin { group.addTask { try await self.adminApplication(admin).run() } }
                group.addTask { try await self.serve(config) }
                // The first failure (a listener that cannot bind) ends the run: waitForAll() would
                // wait for the other listener and the file watcher first, i.e. until shutdown.
                for try await _ in group {}
            }
        } catch {
            await paid.ledgerWrites.drain()
            await reconciler.shutdown()
            await clients.shutdown()
            throw error
        }
        // Every request has ended: their `settled` steps still being written land before the store goes.
        await paid.ledgerWrites.drain()
        await reconciler.shutdown()
        await clients.shutdown()
    }

    /// The main listener: NIO's HTTP/1 request decoder and a ``GatewayHandler`` per connection, behind
    /// a TLS handler with `tls` (a plain listener has none). On graceful shutdown it stops accepting,
    /// lets every connection finish the request in flight and returns once all are closed (or when
    /// cancelled, at the end of the shutdown grace period).
    private func serve(_ config: GatewayConfig) async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let quiesce = ServerQuiescingHelper(group: group)
        let makeHandlers = connectionHandlers(config)
        let logger = self.logger
        var tls: ServerTLS?
        if let tlsConfig = config.tls {
            tls = try await NIOThreadPool.singleton.runIfActive { try ServerTLS(config: tlsConfig, logger: logger) }
            serverTLS.withLock { $0 = tls }
        }
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // TCP_NODELAY is a TCP-level option (`.tcpOption`; at the socket level, number 1 is
            // SO_DEBUG, which needs CAP_NET_ADMIN). Set on the listener too, so that an option the
            // process may not set fails the bind at start instead of every accepted connection.
            .serverChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { [tls] channel in
                channel.eventLoop.makeCompletedFuture {
                    // The certificate current now: a rotation applies to the connections accepted after it.
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls.context)) }
                    try channel.pipeline.syncOperations.addHandlers(makeHandlers())
                }
            }
            .bind(host: config.listen.host, port: config.listen.port).get()
        // After NIO's accept handler, which fires a failed connection set-up towards the tail.
        try await channel.pipeline.addHandler(AcceptFailureLogger(logger: logger))
        await Self.announce("gateway listening", config.listen, logger: logger, then: onListening)(channel)

        let (stopped, continuation) = AsyncStream<Void>.makeStream()
        let drained = group.any().makePromise(of: Void.self)
        drained.futureResult.whenComplete { _ in continuation.finish() }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                for await _ in stopped {}
            } onGracefulShutdown: {
                logger.info("draining connections")
                quiesce.initiateShutdown(promise: drained)
            }
        } onCancel: {
            continuation.finish()
        }
        try? await channel.close()
    }

    /// The handlers of one client connection of the main listener: NIO's HTTP/1 request decoder
    /// (header limits from `config`), then a ``GatewayHandler``. The same pipeline is built around
    /// an `EmbeddedChannel` by the connection tests.
    package func connectionHandlers(_ config: GatewayConfig) -> @Sendable () -> [any ChannelHandler] {
        var limits = NIOHTTPDecoderLimitConfiguration()
        limits.maxHeaderFieldSize = config.limits.maxHeaderBytes
        limits.maxHeaderListSize = config.limits.maxHeaderBytes
        let (box, logger, metrics, paid, connections) = (self.box, self.logger, self.metrics, self.paid, self.connections)
        let (idleTimeout, headerTimeout) = (config.limits.idleTimeout, config.limits.headerTimeout)
        return { [limits] in
            let headWatch = RequestHeadWatch()
            return [
                headWatch,
                ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, informationalResponseStrategy: .drop,
                                                        limitConfiguration: limits)),
                GatewayHandler(box: box, logger: logger, metrics: metrics, paid: paid, connections: connections,
                               idleTimeout: idleTimeout, headerTimeout: headerTimeout, headWatch: headWatch),
            ]
        }
    }

    /// Logs the bound address (`port` as its own field: tests and scripts read it from the JSON
    /// log line) and hands the port on.
    static func announce(
        _ message: Logger.Message, _ listen: ListenAddress, logger: Logger, then: @escaping @Sendable (Int) async -> Void
    ) -> @Sendable (any Channel) async -> Void {
        { channel in
            let port = channel.localAddress?.port ?? 0
            logger.info(message, metadata: ["address": "\(ListenAddress(host: listen.host, port: port))", "port": "\(port)"])
            await then(port)
        }
    }

    // MARK: Facilitator coverage

    enum FacilitatorCoverage: Sendable, Equatable {
        case notNeeded, notConfigured, complete
        case missing([String])
        case unreachable(String)
    }

    /// Whether the facilitator's `/supported` covers every (scheme, network) the routes price in.
    func facilitatorCoverage() async -> FacilitatorCoverage {
        let snapshot = box.snapshot
        let needed = Set(snapshot.config.routes.flatMap { route -> [String] in
            guard case .priced(let offers) = route.access else { return [] }
            return offers.map { "\($0.scheme) \($0.network.caip2)" }
        })
        guard !needed.isEmpty else { return .notNeeded }
        guard let facilitator = snapshot.facilitator else { return .notConfigured }
        do {
            let supported = try await facilitator.supported()
            let offered = Set(supported.kinds.map { "\($0.scheme) \($0.network)" })
            let wildcard = Set(supported.kinds.filter { $0.network == "eip155:*" }.map(\.scheme))
            let missing = needed.filter { pair in
                !offered.contains(pair) && !wildcard.contains(String(pair.split(separator: " ")[0]))
            }.sorted()
            // An upto offer also needs the facilitator's address (learnt from the same answer).
            let unbound = UptoFacilitatorAddresses.missing(snapshot.config, known: [:]).sorted().map { "upto \($0) (no facilitatorAddress yet)" }
            return missing.isEmpty && unbound.isEmpty ? .complete : .missing(missing + unbound)
        } catch {
            return .unreachable("\(error)")
        }
    }

    /// Logs which configured (scheme, network) pairs the facilitator does not support.
    func logFacilitatorCoverage() async {
        switch await facilitatorCoverage() {
        case .notNeeded: break
        case .complete: logger.info("facilitator supports every configured payment kind")
        case .notConfigured: logger.error("routes are priced but no facilitator is configured: paid requests will fail")
        case .missing(let missing):
            logger.error("facilitator lacks configured payment kinds: payments for them will be refused",
                         metadata: ["x402.missing": "\(missing)"])
        case .unreachable(let why):
            logger.error("facilitator /supported check failed", metadata: ["error": "\(why)"])
        }
    }

    // MARK: upto facilitator addresses

    /// Asks `/supported` for the `upto` addresses the serving configuration lacks, and serves it
    /// again with them. Nothing to do when none is missing; a failure is logged and retried.
    func learnUptoAddresses() async {
        let snapshot = box.snapshot
        guard !UptoFacilitatorAddresses.missing(snapshot.config, known: uptoAddresses.withLock { $0 }).isEmpty,
              let facilitator = snapshot.facilitator
        else { return }
        let supported: SupportedResponse
        do {
            supported = try await facilitator.supported()
        } catch {
            logger.error("facilitator /supported failed: upto routes take no payment until it answers", metadata: ["error": "\(error)"])
            return
        }
        let found = UptoFacilitatorAddresses.addresses(from: supported)
        let known = uptoAddresses.withLock { known in
            known.merge(found) { _, new in new }
            return known
        }
        let missing = reloading.withLock { _ -> Set<String> in
            let current = box.snapshot.config
            box.replace(Self.snapshot(current, clients: clients, facilitator: facilitatorOverride, metrics: metrics, limiter: limiter,
                                      uptoAddresses: known))
            return UptoFacilitatorAddresses.missing(current, known: known)
        }
        if missing.isEmpty {
            logger.info("upto routes bound to the facilitator's address", metadata: ["x402.upto.facilitators": "\(known)"])
        } else {
            logger.error("the facilitator announces no upto address for these networks: their upto routes take no payment",
                         metadata: ["x402.network": "\(missing.sorted())"])
        }
    }

    /// Looks again every few seconds while an `upto` offer lacks its address (a facilitator down at
    /// start, a reload that added a network).
    private func keepLearningUptoAddresses() async throws {
        while true {
            try await Task.sleep(for: .seconds(5))
            await learnUptoAddresses()
        }
    }

    // MARK: Reload

    public enum ReloadResult: Sendable, Equatable {
        /// The new configuration serves; the listed changes need a restart and were not applied.
        case applied(restartRequired: [String])
        /// The file is invalid (or unreadable): the old configuration keeps serving.
        case rejected(String)
        /// No configuration file to reload from.
        case noSource
    }

    /// Re-reads the file and, when valid, swaps the whole snapshot; requests in flight finish with the
    /// snapshot they started with. Reloads are serialised. The work (reading, parsing, checking,
    /// indexing, compiling) runs on NIO's thread pool for blocking work, never on an event loop:
    /// in the executable Swift concurrency runs on the event loops, and a large route table takes
    /// a noticeable time to load.
    @discardableResult
    public func reload(trigger: String) async -> ReloadResult {
        // The certificate is read again whatever becomes of the configuration.
        await reloadCertificate(force: true)
        guard source != nil else { return .noSource }
        do {
            return try await NIOThreadPool.singleton.runIfActive { self.reloadNow(trigger: trigger) }
        } catch {
            return reject("reload could not run: \(error)", trigger: trigger)
        }
    }

    /// The reload itself, blocking; one at a time.
    private func reloadNow(trigger: String) -> ReloadResult {
        guard let source else { return .noSource }
        return reloading.withLock { _ -> ReloadResult in
            let text: String
            do {
                text = try String(contentsOfFile: source.path, encoding: .utf8)
            } catch {
                reloadState.withLock { $0.text = nil }
                return reject("\(source.path): cannot read file: \(error.localizedDescription)", trigger: trigger)
            }
            reloadState.withLock { $0.text = text }
            let loaded: GatewayConfig
            do throws(ConfigErrors) {
                loaded = try ConfigLoader.parse(yaml: text, file: source.path, environment: source.environment)
            } catch {
                return reject(error.description, trigger: trigger)
            }
            let old = box.snapshot.config
            var config = loaded
            // Settings bound when the listeners started keep their running values.
            var restart: [String] = []
            func keep<T: Equatable>(_ key: WritableKeyPath<GatewayConfig, T>, _ name: String) {
                if config[keyPath: key] != old[keyPath: key] {
                    restart.append(name)
                    config[keyPath: key] = old[keyPath: key]
                }
            }
            keep(\.listen, "listen")
            // `admin.token` applies at once (sessions signed with the old one end); the listener itself
            // (its address, whether there is one) needs a restart, and keeps its token when the file drops `admin`.
            if config.admin?.listen != old.admin?.listen || (config.admin == nil) != (old.admin == nil) {
                restart.append("admin")
                let token = config.admin.map { $0.token } ?? old.admin?.token
                config.admin = old.admin
                config.admin?.token = token
            }
            keep(\.limits.maxHeaderBytes, "limits.maxHeaderBytes")
            keep(\.limits.idleTimeout, "limits.idleTimeout")
            keep(\.limits.headerTimeout, "limits.headerTimeout")
            keep(\.limits.shutdownGrace, "limits.shutdownGrace")
            keep(\.storage, "storage")
            keep(\.tls, "tls")
            // A claim's lease is set at start and must outlive the slowest paid request (as `check`
            // demands of the file): timeouts that outgrow it would let another instance take over a
            // claim while its request still runs.
            let slowest = YAMLReader.slowestPaidRequest(facilitators: config.facilitators, upstreams: config.upstreams)
            if slowest >= old.storage.lease {
                return reject("\(source.path): with the new timeouts a paid request may take up to \(slowest), not less than the running "
                              + "storage lease (\(old.storage.lease), set at start): restart the gateway to apply them", trigger: trigger)
            }
            box.replace(Self.snapshot(config, clients: clients, facilitator: facilitatorOverride, metrics: metrics, limiter: limiter,
                                      uptoAddresses: uptoAddresses.withLock { $0 }))
            reloadState.withLock { $0.lastError = nil }
            metrics.configReload(result: "applied")
            if restart.isEmpty {
                logger.notice("configuration reloaded", metadata: ["trigger": "\(trigger)", "routes": "\(config.routes.count)"])
            } else {
                logger.warning("configuration reloaded; some changes need a restart and were not applied",
                               metadata: ["trigger": "\(trigger)", "restartRequired": "\(restart.joined(separator: ", "))"])
            }
            return .applied(restartRequired: restart)
        }
    }

    private func reject(_ message: String, trigger: String) -> ReloadResult {
        reloadState.withLock { $0.lastError = message }
        metrics.configReload(result: "rejected")
        logger.error("configuration reload rejected; the previous configuration keeps serving",
                     metadata: ["trigger": "\(trigger)", "errors": "\(message)"])
        return .rejected(message)
    }

    /// The last reload's errors, while the file stays invalid.
    var lastReloadError: String? { reloadState.withLock { $0.lastError } }

    /// Re-reads the certificate and key (when they changed, or always with `force`), off the event loops.
    @discardableResult
    func reloadCertificate(force: Bool) async -> ServerTLS.ReloadOutcome? {
        guard let tls = serverTLS.withLock({ $0 }) else { return nil }
        return try? await NIOThreadPool.singleton.runIfActive { tls.reload(force: force) }
    }

    /// Polls the certificate and key files (at `reload.interval`, a `stat` of each) while the
    /// listener serves TLS, and serves a changed pair once it checks out.
    private func watchCertificate() async throws {
        guard box.snapshot.config.tls != nil else { return }
        while true {
            guard let interval = box.snapshot.config.reload.watchInterval else { return }
            try await Task.sleep(for: interval)
            await reloadCertificate(force: false)
        }
    }

    /// Polls the file (interval from the serving configuration) and reloads when its text changes.
    private func watchConfigFile() async throws {
        guard let source else { return }
        while true {
            guard let interval = box.snapshot.config.reload.watchInterval else { return }
            try await Task.sleep(for: interval)
            // Read off the event loops too: a large file takes a while.
            let path = source.path
            let text = try? await NIOThreadPool.singleton.runIfActive { try String(contentsOfFile: path, encoding: .utf8) }
            let changed = reloadState.withLock { $0.text != text }
            if changed { await reload(trigger: "file change") }
        }
    }
}
