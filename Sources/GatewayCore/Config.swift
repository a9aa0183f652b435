import X402

/// Where a configuration value came from, for `file:line:column: message` diagnostics.
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// One configuration problem.
public struct ConfigDiagnostic: Error, Sendable, Hashable, CustomStringConvertible {
    public var location: SourceLocation
    public var message: String

    public init(_ location: SourceLocation, _ message: String) {
        self.location = location
        self.message = message
    }

    public var description: String { "\(location): \(message)" }
}

/// All problems found in one configuration file.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var diagnostics: [ConfigDiagnostic]

    public init(_ diagnostics: [ConfigDiagnostic]) { self.diagnostics = diagnostics }

    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}


public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

public struct UpstreamConfig: Sendable, Hashable {
    public var name: String
    /// `http` or `https` (`host:port` with an optional base path, no trailing slash).
    public var scheme: String
    public var host: String
    public var port: Int
    public var basePath: String
    /// Time allowed until the upstream's response head arrives; also the idle limit while streaming.
    public var timeout: Duration
    public var connectTimeout: Duration
    /// Headers added to every request to this upstream (values already `${ENV}`-expanded).
    public var headers: [(name: String, value: String)]
    /// For `https`: a PEM file of the certificates to trust instead of the system's roots.
    public var caFile: String?

    public var tls: Bool { scheme == "https" }

    public init(name: String, scheme: String, host: String, port: Int, basePath: String, timeout: Duration,
                connectTimeout: Duration, headers: [(name: String, value: String)], caFile: String? = nil) {
        self.name = name
        self.scheme = scheme
        self.host = host
        self.port = port
        self.basePath = basePath
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.headers = headers
        self.caFile = caFile
    }

    /// The `Host` header sent upstream (an IPv6 literal in brackets).
    public var hostHeader: String {
        let defaultPort = scheme == "https" ? 443 : 80
        let name = host.contains(":") ? "[\(host)]" : host
        return port == defaultPort ? name : "\(name):\(port)"
    }

    public var origin: String { "\(scheme)://\(host.contains(":") ? "[\(host)]" : host):\(port)" }

    public static func == (a: Self, b: Self) -> Bool {
        a.name == b.name && a.scheme == b.scheme && a.host == b.host && a.port == b.port && a.basePath == b.basePath
            && a.timeout == b.timeout && a.connectTimeout == b.connectTimeout && a.caFile == b.caFile
            && a.headers.map(\.name) == b.headers.map(\.name) && a.headers.map(\.value) == b.headers.map(\.value)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        hasher.combine(origin)
    }
}

public struct FacilitatorConfig: Sendable, Hashable {
    public var url: String
    /// Deadline for each call.
    public var timeout: Duration
    /// TCP connect limit: a facilitator that is down is reported this fast.
    public var connectTimeout: Duration
    public var headers: [String: String]
    /// PEM file of the certificates trusted for an `https` facilitator instead of the system roots.
    public var caFile: String?
    /// A CDP API key: every call carries a fresh JWT signed with it (Coinbase's facilitator).
    public var cdp: CDPKey?

    public init(url: String, timeout: Duration, connectTimeout: Duration = .seconds(2), headers: [String: String],
                caFile: String? = nil, cdp: CDPKey? = nil) {
        self.url = url
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.headers = headers
        self.caFile = caFile
        self.cdp = cdp
    }
}

/// A Coinbase Developer Platform API key (`facilitator.cdp`), checked when the configuration is
/// loaded. Its secret is never printed.
public struct CDPKey: Sendable, Hashable, CustomStringConvertible {
    public var keyId: String
    public var keySecret: String

    public init(keyId: String, keySecret: String) {
        self.keyId = keyId
        self.keySecret = keySecret
    }

    public var description: String { "CDPKey(keyId: \(keyId), keySecret: •••)" }
}

public struct Limits: Sendable, Hashable {
    /// Largest request head (request line + headers) accepted.
    public var maxHeaderBytes: Int = 32 * 1024
    /// Largest request body accepted on a priced route (free routes stream without a limit).
    public var maxPaidRequestBodyBytes: Int = 1024 * 1024
    /// Largest upstream response held back while a payment settles.
    public var maxBufferedResponseBytes: Int = 8 * 1024 * 1024
    /// Largest response body stored for a payment identifier; a paid answer with a larger body is
    /// not replayable (a retry gets 409 with the receipt).
    public var maxStoredResponseBytes: Int = 64 * 1024
    /// How long an answer stored for a payment identifier is kept for retries.
    public var storedResponseRetention: Duration = .seconds(24 * 3600)
    /// Idle keep-alive connections are closed after this long.
    public var idleTimeout: Duration = .seconds(60)
    /// A request head must be complete this long after its first byte arrived (slowloris); the
    /// client gets 408 and the connection closes.
    public var headerTimeout: Duration = .seconds(10)
    /// Most header fields accepted in one request head (431 beyond).
    public var maxHeaderCount: Int = 100
    /// Most client connections one instance keeps open; a connection beyond it is answered 503
    /// and closed (nil: no bound).
    public var maxConnections: Int? = 16_384
    /// Most connections open from one client address (an IPv4 address, an IPv6 /64); nil: no
    /// bound (the default: behind a load balancer or TLS terminator every client has its address).
    public var maxConnectionsPerClient: Int?
    /// On SIGTERM/SIGINT, requests in flight get this long to finish before they are cancelled.
    public var shutdownGrace: Duration = .seconds(30)
    /// Upstream runs a verified payer may leave unsettled on an `after-success` route within
    /// ``unsettledRunsWindow`` before that payer's requests there are settled first (nil: no bound).
    /// See ``UnsettledRuns``.
    public var unsettledRunsPerPayer: Int? = 3
    public var unsettledRunsWindow: Duration = .seconds(600)

    public init() {}
}

public enum UnmatchedPolicy: Sendable, Hashable {
    /// Forward to the named upstream as a free request.
    case pass(upstream: String)
    /// Answer 404.
    case deny
}

public enum SettlementPolicy: String, Sendable, Hashable, CaseIterable {
    /// verify → forward → settle only if the upstream succeeded → deliver (body held back).
    case afterSuccess = "after-success"
    /// verify → settle → stream the upstream response.
    case before
    /// verify → forward → settle once the upstream's head says < 400, before its body is relayed
    /// (streamed, never held back).
    case afterHeaders = "after-headers"
    /// check (locally, or with `/verify` too) → queue the settlement durably → forward and stream;
    /// a settlement worker settles it afterwards, within the route's risk budget (``Deferral``).
    case deferred
}

/// How shared caches may treat a priced route's paid answers (`cache:` on a route).
public enum PaidResponseCaching: String, Sendable, Hashable, CaseIterable {
    /// `Cache-Control: private, no-store` replaces the upstream's caching fields, and `Vary` names
    /// the payment headers: no CDN or shared cache stores one buyer's answer for the next client.
    case `private`
    /// The upstream's caching fields are relayed as they are: for content that may be shared, once
    /// anyone has paid for it.
    case upstream
}

public enum RouteAccess: Sendable, Hashable {
    case free
    case priced([Offer])
}

public struct RouteConfig: Sendable, Hashable {
    /// Stable id used in logs and metric labels (`id:` in YAML, else the match text).
    public var id: String
    public var pattern: RoutePattern
    public var host: HostPattern?
    public var upstream: String
    public var access: RouteAccess
    public var description: String
    public var mimeType: String
    public var settlement: SettlementPolicy
    /// Whether the route offers the payment-identifier extension (nil: it does not).
    public var paymentIdentifier: PaymentIdentifierMode?
    /// Whether paid answers are marked private (the default) or keep the upstream's caching fields.
    public var cache: PaidResponseCaching
    /// The pass a settled payment on this route earns (nil: none; every request pays).
    public var pass: RoutePass?
    /// Requests per client per time (429 beyond); nil: none.
    public var rateLimit: RateLimit?
    /// Requests per client per window forwarded without a payment (priced routes); nil: none.
    public var freePerClient: FreeAllowance?
    /// Whether a priced route is listed (bazaar extension, `/.well-known/x402`) and how it is described.
    public var discovery: RouteDiscovery
    /// How payments are checked and how much may stay unsettled, under `settlement: deferred`.
    public var deferral: Deferral?
    /// How an `upto` route decides what to charge (nil: the route's offers are `exact`).
    public var upto: UptoMetering?
    /// A price that depends on the request (nil: the offers' amounts are the price).
    public var dynamicPrice: DynamicPrice?
    public var location: SourceLocation?

    public init(id: String, pattern: RoutePattern, host: HostPattern? = nil, upstream: String, access: RouteAccess,
                description: String = "", mimeType: String = "", settlement: SettlementPolicy = .afterSuccess,
                paymentIdentifier: PaymentIdentifierMode? = nil, cache: PaidResponseCaching = .private,
                pass: RoutePass? = nil, discovery: RouteDiscovery = RouteDiscovery(), deferral: Deferral? = nil,
                upto: UptoMetering? = nil, rateLimit: RateLimit? = nil, freePerClient: FreeAllowance? = nil,
                dynamicPrice: DynamicPrice? = nil, location: SourceLocation? = nil) {
        self.id = id
        self.pattern = pattern
        self.host = host
        self.upstream = upstream
        self.access = access
        self.description = description
        self.mimeType = mimeType
        self.settlement = settlement
        self.paymentIdentifier = paymentIdentifier
        self.cache = cache
        self.pass = pass
        self.rateLimit = rateLimit
        self.freePerClient = freePerClient
        self.discovery = discovery
        self.deferral = deferral
        self.upto = upto
        self.dynamicPrice = dynamicPrice
        self.location = location
    }
}

public struct CORSConfig: Sendable, Hashable {
    /// Value of `Access-Control-Allow-Origin` on gateway-generated answers and preflights.
    public var allowOrigin: String = "*"
    public var maxAgeSeconds: Int = 600

    public init() {}
}

/// Optional colours of the browser paywall page, each `#rgb` or `#rrggbb` (validated by the loader).
public struct PaywallColors: Sendable, Hashable {
    /// Buttons and links.
    public var accent: String?
    /// Page background.
    public var background: String?
    /// Body text.
    public var text: String?

    public init(accent: String? = nil, background: String? = nil, text: String? = nil) {
        self.accent = accent
        self.background = background
        self.text = text
    }
}

/// The browser paywall: the HTML page a browser gets instead of the JSON 402.
public struct PaywallConfig: Sendable, Hashable {
    /// When false, browsers get the same JSON 402 as API clients.
    public var enabled: Bool
    /// Shown in the page header and title.
    public var appName: String?
    /// An `https:` URL or a `data:image/...` URL (validated by the loader).
    public var appLogo: String?
    public var colors: PaywallColors

    public init(enabled: Bool = true, appName: String? = nil, appLogo: String? = nil, colors: PaywallColors = PaywallColors()) {
        self.enabled = enabled
        self.appName = appName
        self.appLogo = appLogo
        self.colors = colors
    }
}

/// The admin listener: `/healthz`, `/readyz`, `/metrics`, `POST /reload`. Off when absent.
public struct AdminConfig: Sendable, Hashable {
    public var listen: ListenAddress
    /// Required of every admin request but `/healthz`, `/readyz` and the login form when set: as
    /// `Authorization: Bearer <token>`, or the session cookie the login form sets (reads only).
    /// Usually `${ENV}`. A reload applies a new token at once (sessions of the old one end).
    public var token: String?

    public init(listen: ListenAddress, token: String? = nil) {
        self.listen = listen
        self.token = token
    }
}

/// Where payment claims and the ledger live (`storage:`).
public struct StorageConfig: Sendable, Hashable {
    public enum Backend: Sendable, Hashable {
        /// This process's memory: neither durable nor shared (tests, throwaway set-ups).
        case memory
        /// An embedded SQLite file (WAL), for one instance. The default.
        case sqlite(path: String)
        /// A PostgreSQL server shared by several instances (`postgres://user:password@host:port/db`).
        case postgres(url: String)
    }

    public var backend: Backend
    /// Written into the rows this instance claims; generated at first start and kept in the
    /// database (SQLite), or per process (PostgreSQL) when not set.
    public var instance: String?
    /// How long a claim stays held without progress (renewed by every step).
    public var lease: Duration
    /// Connections to PostgreSQL.
    public var poolSize: Int

    public static let defaultSQLitePath = "x402-gateway.db"

    public init(backend: Backend = .sqlite(path: StorageConfig.defaultSQLitePath), instance: String? = nil,
                lease: Duration = .seconds(300), poolSize: Int = 8) {
        self.backend = backend
        self.instance = instance
        self.lease = lease
        self.poolSize = poolSize
    }
}

/// How configuration changes are picked up besides SIGHUP and the admin endpoint.
public struct ReloadConfig: Sendable, Hashable {
    /// Poll the file for changes; `nil` turns watching off.
    public var watchInterval: Duration? = .seconds(1)

    public init() {}
}

/// A chain the gateway reads for reconciliation (`networks: { "eip155:8453": { rpc: URL } }`).
public struct ChainRPCConfig: Sendable, Hashable {
    /// CAIP-2 id (`eip155:<chain id>`).
    public var network: String
    public var chainId: UInt64
    /// The JSON-RPC endpoint. May carry an API key in its path or query: log only ``host``.
    public var rpc: String
    /// Deadline for each JSON-RPC call.
    public var timeout: Duration
    /// How many blocks back from the head `eth_getLogs` looks for the authorization's event (the
    /// transaction hash). Providers cap the range of one `eth_getLogs`; 10 000 is the usual cap.
    public var logBlocks: UInt64

    public init(network: String, chainId: UInt64, rpc: String, timeout: Duration = .seconds(10), logBlocks: UInt64 = 10_000) {
        self.network = network
        self.chainId = chainId
        self.rpc = rpc
        self.timeout = timeout
        self.logBlocks = logBlocks
    }

    /// The URL's host (and port), the only part of it that may be logged.
    public var host: String { Self.host(of: rpc) }

    /// `scheme://host[:port]` → `host[:port]`; never the path, query or user info.
    public static func host(of url: String) -> String {
        var rest = Substring(url)
        for scheme in ["https://", "http://"] where rest.lowercased().hasPrefix(scheme) { rest = rest.dropFirst(scheme.count) }
        let authority = rest.prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        return String(authority.split(separator: "@", omittingEmptySubsequences: false).last ?? "")
    }
}

/// How settlements whose outcome is unknown are reconciled against the chain (`reconcile:`).
public struct ReconcileConfig: Sendable, Hashable {
    /// Time between rounds (the first runs at start).
    public var interval: Duration
    /// How long a payment whose authorization is unused on chain stays unknown before it is
    /// declared unsettled (see ``Reconciliation``). A payment whose `validBefore` has passed on
    /// chain needs no grace.
    public var grace: Duration
    /// At most this many payments per network per round.
    public var batch: Int

    public init(interval: Duration = .seconds(60), grace: Duration = .seconds(600), batch: Int = 100) {
        self.interval = interval
        self.grace = grace
        self.batch = batch
    }
}

/// The whole validated configuration. Built by the loader; nothing here reads files or the environment.
public struct GatewayConfig: Sendable {
    public var listen: ListenAddress
    public var publicBaseURL: String?
    public var payTo: String?
    public var network: String?
    /// The facilitators, in the order they are asked (`facilitator:` gives one, `facilitators:` several).
    public var facilitators: [FacilitatorConfig]
    /// The first facilitator (the only one, unless `facilitators:` lists several).
    public var facilitator: FacilitatorConfig? { facilitators.first }
    public var upstreams: [String: UpstreamConfig]
    public var routes: [RouteConfig]
    public var unmatched: UnmatchedPolicy
    public var trustedProxies: [IPRange]
    public var caseSensitiveRoutes: Bool
    public var limits: Limits
    public var cors: CORSConfig
    /// Name of the request header carrying the verified payer to the upstream.
    public var payerHeader: String
    public var paywall: PaywallConfig
    public var admin: AdminConfig?
    public var reload: ReloadConfig
    public var storage: StorageConfig
    /// Chains read by reconciliation, by CAIP-2 id.
    public var networks: [String: ChainRPCConfig]
    public var reconcile: ReconcileConfig
    /// The keys route passes are signed with (nil: no route issues passes).
    public var passes: PassesConfig?
    /// How rate limits and free allowances tell clients apart, and how many they track.
    public var clientLimits: ClientLimitsConfig
    /// Whether the gateway answers `GET /.well-known/x402` itself (`discovery.manifest`).
    public var discoveryManifest: Bool
    /// TLS on the main listener (nil: plain HTTP).
    public var tls: TLSConfig?
    /// The settlement workers of `settlement: deferred` routes.
    public var deferredSettlement: DeferredSettlementConfig

    public init(listen: ListenAddress, publicBaseURL: String? = nil, payTo: String? = nil, network: String? = nil,
                facilitator: FacilitatorConfig? = nil, facilitators: [FacilitatorConfig] = [], upstreams: [String: UpstreamConfig],
                routes: [RouteConfig],
                unmatched: UnmatchedPolicy, trustedProxies: [IPRange] = [], caseSensitiveRoutes: Bool = false,
                limits: Limits = Limits(), cors: CORSConfig = CORSConfig(), payerHeader: String = "X-Payment-Payer",
                admin: AdminConfig? = nil, reload: ReloadConfig = ReloadConfig(), paywall: PaywallConfig = PaywallConfig(),
                storage: StorageConfig = StorageConfig(backend: .memory), networks: [String: ChainRPCConfig] = [:],
                reconcile: ReconcileConfig = ReconcileConfig(), passes: PassesConfig? = nil, discoveryManifest: Bool = true,
                tls: TLSConfig? = nil, deferredSettlement: DeferredSettlementConfig = DeferredSettlementConfig(),
                clientLimits: ClientLimitsConfig = ClientLimitsConfig()) {
        self.listen = listen
        self.publicBaseURL = publicBaseURL
        self.payTo = payTo
        self.network = network
        self.facilitators = facilitators.isEmpty ? facilitator.map { [$0] } ?? [] : facilitators
        self.upstreams = upstreams
        self.routes = routes
        self.unmatched = unmatched
        self.trustedProxies = trustedProxies
        self.caseSensitiveRoutes = caseSensitiveRoutes
        self.limits = limits
        self.cors = cors
        self.payerHeader = payerHeader
        self.paywall = paywall
        self.admin = admin
        self.reload = reload
        self.storage = storage
        self.networks = networks
        self.reconcile = reconcile
        self.passes = passes
        self.clientLimits = clientLimits
        self.discoveryManifest = discoveryManifest
        self.tls = tls
        self.deferredSettlement = deferredSettlement
    }
}
