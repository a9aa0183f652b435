import BigInt
import Foundation
import GatewayCore
import Paywall
import X402
import X402Facilitator
import Yams

extension YAMLReader {
    static let topLevelKeys = [
        "listen", "publicBaseURL", "payTo", "network", "facilitator", "facilitators", "upstreams", "routes", "unmatched",
        "defaultUpstream", "trustedProxies", "caseSensitiveRoutes", "limits", "cors", "payerHeader", "maxTimeoutSeconds",
        "admin", "reload", "paywall", "storage", "networks", "reconcile", "paymentIdentifier", "passes", "discovery", "tls", "deferredSettlement",
        "clientLimits",
    ]

    /// Defaults every route inherits.
    struct RouteDefaults {
        var payTo: String?
        var network: NetworkInfo?
        var maxTimeoutSeconds: Int
        /// Offered on every priced `after-success` route that does not say otherwise.
        var paymentIdentifier: PaymentIdentifierMode?
        /// Set when a value was given but was invalid (already reported: no follow-up errors).
        var payToInvalid = false
        var networkInvalid = false
        /// `assetTransferMethod` given on the route or an accepts entry (nil: from the asset).
        var transferMethod: AssetTransferMethod?
        var transferMethodInvalid = false
    }

    func gatewayConfig(_ root: Node) -> GatewayConfig? {
        guard let top = mapping(root, "the configuration", allowed: Self.topLevelKeys) else { return nil }

        var listen = ListenAddress(host: "127.0.0.1", port: 8402)
        if let node = top["listen"]?.value, let s = string(node, "listen") {
            if let parsed = parseListen(s) { listen = parsed } else { error(node, "listen must be host:port (e.g. 127.0.0.1:8402), not \"\(s)\"") }
        }

        var publicBaseURL: String?
        if let node = top["publicBaseURL"]?.value, let s = string(node, "publicBaseURL") {
            if let url = parseBaseURL(s) { publicBaseURL = url } else {
                error(node, "publicBaseURL must be an absolute http(s) URL without query, like \"https://api.example.com\", not \"\(s)\"")
            }
        }

        let payTo = top["payTo"].flatMap { address($0.value, "payTo") }
        let network = top["network"].flatMap { self.network($0.value, "network") }
        let maxTimeout = top["maxTimeoutSeconds"].flatMap { int($0.value, "maxTimeoutSeconds", range: 1...86_400) } ?? 300
        let caseSensitive = top["caseSensitiveRoutes"].flatMap { bool($0.value, "caseSensitiveRoutes") } ?? false
        let facilitators = facilitatorsConfig(single: top["facilitator"], list: top["facilitators"])
        let upstreams = top["upstreams"].map { upstreamsConfig($0.value) } ?? [:]
        if top["upstreams"] == nil { error(root, "missing \"upstreams\": name at least one upstream API to forward to") }

        var limits = Limits()
        if let node = top["limits"]?.value, let m = mapping(node, "limits", allowed: [
            "maxHeaderBytes", "maxPaidRequestBody", "maxBufferedResponse", "idleTimeout", "shutdownGrace", "maxStoredResponse",
            "storedResponseRetention", "unsettledRunsPerPayer", "unsettledRunsWindow", "headerTimeout", "maxHeaderCount",
            "maxConnections", "maxConnectionsPerClient",
        ]) {
            if let n = m["maxHeaderBytes"]?.value, let v = byteSize(n, "limits.maxHeaderBytes") { limits.maxHeaderBytes = v }
            if let n = m["maxPaidRequestBody"]?.value, let v = byteSize(n, "limits.maxPaidRequestBody") { limits.maxPaidRequestBodyBytes = v }
            if let n = m["maxBufferedResponse"]?.value, let v = byteSize(n, "limits.maxBufferedResponse") { limits.maxBufferedResponseBytes = v }
            if let n = m["idleTimeout"]?.value, let v = duration(n, "limits.idleTimeout") { limits.idleTimeout = v }
            if let n = m["shutdownGrace"]?.value, let v = duration(n, "limits.shutdownGrace") { limits.shutdownGrace = v }
            if let n = m["maxStoredResponse"]?.value, let v = byteSize(n, "limits.maxStoredResponse") {
                if v > limits.maxBufferedResponseBytes {
                    error(n, "limits.maxStoredResponse cannot exceed limits.maxBufferedResponse (\(limits.maxBufferedResponseBytes) bytes): only held-back answers are stored")
                } else {
                    limits.maxStoredResponseBytes = v
                }
            }
            if let n = m["storedResponseRetention"]?.value, let v = duration(n, "limits.storedResponseRetention") {
                if v < .seconds(60) { error(n, "limits.storedResponseRetention must be at least 1m") } else { limits.storedResponseRetention = v }
            }
            if let n = m["unsettledRunsPerPayer"]?.value, let v = bound(n, "limits.unsettledRunsPerPayer", unit: "runs", range: 1...10_000) {
                limits.unsettledRunsPerPayer = v
            }
            if let n = m["headerTimeout"]?.value, let v = duration(n, "limits.headerTimeout") { limits.headerTimeout = v }
            if let n = m["maxHeaderCount"]?.value, let v = int(n, "limits.maxHeaderCount", range: 1...10_000) { limits.maxHeaderCount = v }
            if let n = m["maxConnections"]?.value, let v = bound(n, "limits.maxConnections", unit: "connections", range: 1...10_000_000) {
                limits.maxConnections = v
            }
            if let n = m["maxConnectionsPerClient"]?.value,
               let v = bound(n, "limits.maxConnectionsPerClient", unit: "connections", range: 1...10_000_000) {
                limits.maxConnectionsPerClient = v
            }
            if let n = m["unsettledRunsWindow"]?.value, let v = duration(n, "limits.unsettledRunsWindow") {
                if v < .seconds(1) { error(n, "limits.unsettledRunsWindow must be at least 1s") } else { limits.unsettledRunsWindow = v }
            }
        }

        var admin: AdminConfig?
        if let node = top["admin"]?.value, let m = mapping(node, "admin", allowed: ["listen", "token"]) {
            var token: String?
            if let n = m["token"]?.value, let s = string(n, "admin.token") {
                // Never echoed: the value is a secret.
                if s.utf8.count < 16 {
                    error(n, "admin.token must be at least 16 characters (use a random value, e.g. from `openssl rand -hex 32`, through ${ENV})")
                } else if s.utf8.count > 512 || !s.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) {
                    error(n, "admin.token must be at most 512 printable ASCII characters without spaces")
                } else {
                    token = s
                }
            }
            if let n = m["listen"]?.value, let s = string(n, "admin.listen") {
                if let parsed = parseListen(s) {
                    admin = AdminConfig(listen: parsed, token: token)
                    if parsed == listen && parsed.port != 0 { error(n, "admin.listen must differ from listen (\(listen))") }
                } else {
                    error(n, "admin.listen must be host:port (e.g. 127.0.0.1:9402), not \"\(s)\"")
                }
            } else if m["listen"] == nil {
                error(node, "admin needs \"listen\" (e.g. 127.0.0.1:9402)")
            }
        }

        var storage = top["storage"].map { storageConfig($0.value, facilitators: facilitators, upstreams: upstreams) } ?? StorageConfig(
            backend: .sqlite(path: resolvePath(StorageConfig.defaultSQLitePath)))
        if top["storage"].flatMap({ node -> Node? in
            if case .mapping(let m) = node.value { return m["lease"] }
            return nil
        }) == nil {
            // The default lease outlives the slowest paid request, whatever the timeouts.
            storage.lease = max(storage.lease, Self.slowestPaidRequest(facilitators: facilitators, upstreams: upstreams) + .seconds(60))
        }

        var reload = ReloadConfig()
        if let node = top["reload"]?.value, let m = mapping(node, "reload", allowed: ["watch", "interval"]) {
            if let n = m["interval"]?.value, let v = duration(n, "reload.interval") {
                if v < .milliseconds(50) { error(n, "reload.interval must be at least 50ms") } else { reload.watchInterval = v }
            }
            if let n = m["watch"]?.value, let v = bool(n, "reload.watch"), !v { reload.watchInterval = nil }
        }

        let networks = top["networks"].map { networksConfig($0.value) } ?? [:]
        let reconcile = top["reconcile"].map { reconcileConfig($0.value) } ?? ReconcileConfig()
        let deferredSettlement = top["deferredSettlement"].map { deferredSettlementConfig($0.value, facilitator: facilitators.max { $0.timeout < $1.timeout }) }
            ?? DeferredSettlementConfig()

        var cors = CORSConfig()
        if let node = top["cors"]?.value, let m = mapping(node, "cors", allowed: ["allowOrigin", "maxAge"]) {
            if let n = m["allowOrigin"]?.value, let v = string(n, "cors.allowOrigin") { cors.allowOrigin = v }
            if let n = m["maxAge"]?.value, let v = duration(n, "cors.maxAge") { cors.maxAgeSeconds = Int(v.components.seconds) }
        }

        var trusted: [IPRange] = []
        if let node = top["trustedProxies"]?.value {
            if let seq = node.sequence {
                for item in seq {
                    guard let s = string(item, "trustedProxies entry") else { continue }
                    if let range = IPRange(s) { trusted.append(range) } else { error(item, "\"\(s)\" is not an IP address or CIDR range") }
                }
            } else {
                error(node, "trustedProxies must be a list of IP addresses or CIDR ranges")
            }
        }

        var payerHeader = "X-Payment-Payer"
        if let node = top["payerHeader"]?.value, let s = string(node, "payerHeader") {
            if isToken(s) { payerHeader = s } else { error(node, "payerHeader \"\(s)\" is not a valid header name") }
        }

        let paywall = top["paywall"].map { paywallConfig($0.value) } ?? PaywallConfig()
        let clientLimits = top["clientLimits"].map { clientLimitsConfig($0.value) } ?? ClientLimitsConfig()
        let passes = top["passes"].flatMap { passesConfig($0.value) }

        let defaults = RouteDefaults(
            payTo: payTo, network: network, maxTimeoutSeconds: maxTimeout,
            paymentIdentifier: top["paymentIdentifier"].flatMap { paymentIdentifierMode($0.value) } ?? nil,
            payToInvalid: top["payTo"] != nil && payTo == nil, networkInvalid: top["network"] != nil && network == nil)
        var routes: [RouteConfig] = []
        if let node = top["routes"]?.value {
            if let seq = node.sequence {
                for item in seq {
                    if let route = routeConfig(item, defaults: defaults, upstreams: upstreams, caseSensitive: caseSensitive,
                                               passKeys: passes != nil || top["passes"] != nil) {
                        routes.append(route)
                    }
                }
            } else {
                error(node, "routes must be a list")
            }
        }
        checkRouteIds(routes)
        checkShadowing(routes)

        var unmatched = UnmatchedPolicy.deny
        let unmatchedNode = top["unmatched"]?.value
        let mode = unmatchedNode.flatMap { string($0, "unmatched") } ?? "pass"
        switch mode {
        case "deny": unmatched = .deny
        case "pass":
            if let node = top["defaultUpstream"]?.value, let name = string(node, "defaultUpstream") {
                if upstreams[name] != nil { unmatched = .pass(upstream: name) } else { unknownUpstream(node, name, upstreams) }
            } else if upstreams.count == 1 {
                unmatched = .pass(upstream: upstreams.keys.first!)
            } else if !upstreams.isEmpty {
                error(unmatchedNode ?? root, "unmatched: pass needs \"defaultUpstream\" when there are several upstreams")
            }
        default:
            error(unmatchedNode, "unmatched must be \"pass\" (forward for free) or \"deny\" (404), not \"\(mode)\"")
        }

        return GatewayConfig(
            listen: listen, publicBaseURL: publicBaseURL, payTo: payTo, network: network?.caip2, facilitators: facilitators,
            upstreams: upstreams, routes: routes, unmatched: unmatched, trustedProxies: trusted,
            caseSensitiveRoutes: caseSensitive, limits: limits, cors: cors, payerHeader: payerHeader, admin: admin,
            reload: reload, paywall: paywall, storage: storage, networks: networks, reconcile: reconcile, passes: passes,
            discoveryManifest: top["discovery"].map { discoveryManifest($0.value) } ?? true,
            tls: top["tls"].flatMap { tlsConfig($0.value) }, deferredSettlement: deferredSettlement, clientLimits: clientLimits)
    }

    // MARK: Sections

    /// `facilitator: {…}` (one) or `facilitators: [{…}, …]` (several, asked in order), not both.
    func facilitatorsConfig(single: (key: Node, value: Node)?, list: (key: Node, value: Node)?) -> [FacilitatorConfig] {
        if let single, list != nil {
            error(single.key, "use either facilitator (one) or facilitators (a list), not both")
            return []
        }
        if let single { return facilitatorConfig(single.value).map { [$0] } ?? [] }
        guard let list else { return [] }
        guard let entries = list.value.sequence, !entries.isEmpty else {
            error(list.value, "facilitators must be a list of { url: ... } entries, asked in order")
            return []
        }
        var out: [FacilitatorConfig] = []
        for (index, entry) in entries.enumerated() {
            guard let config = facilitatorConfig(entry, what: "facilitators[\(index)]") else { continue }
            if out.contains(where: { $0.url == config.url }) {
                error(entry, "facilitators[\(index)] repeats the url \(config.url)")
                continue
            }
            out.append(config)
        }
        return out
    }

    func facilitatorConfig(_ node: Node, what: String = "facilitator") -> FacilitatorConfig? {
        guard let m = mapping(node, what, allowed: ["url", "timeout", "connectTimeout", "headers", "caFile", "cdp"]) else { return nil }
        guard let urlNode = m["url"]?.value else {
            error(node, "\(what) needs a \"url\"")
            return nil
        }
        guard let url = string(urlNode, "\(what).url") else { return nil }
        guard let parsed = parseBaseURL(url, allowPath: true), HTTPFacilitatorClient.accepts(url: parsed) else {
            error(urlNode, "\(what).url must be an absolute http(s) URL, not \"\(url)\"")
            return nil
        }
        let timeout = m["timeout"].flatMap { duration($0.value, "\(what).timeout") } ?? .seconds(30)
        let connectTimeout = m["connectTimeout"].flatMap { duration($0.value, "\(what).connectTimeout") } ?? .seconds(2)
        let headers = m["headers"].flatMap { stringMap($0.value, "\(what).headers") } ?? []
        var caFile: String?
        if let n = m["caFile"]?.value, let path = string(n, "\(what).caFile") {
            if let problem = HTTPFacilitatorClient.caFileProblem(path) { error(n, "\(what).caFile: \(problem)") } else { caFile = path }
        }
        let cdp = m["cdp"].flatMap { cdpKey($0.value, what: "\(what).cdp") }
        if cdp != nil, headers.contains(where: { $0.0.lowercased() == "authorization" }) {
            error(m["cdp"]!.value, "\(what).cdp signs the Authorization header itself: remove Authorization from \(what).headers")
        }
        return FacilitatorConfig(url: parsed, timeout: timeout, connectTimeout: connectTimeout,
                                 headers: Dictionary(headers, uniquingKeysWith: { $1 }), caFile: caFile, cdp: cdp)
    }

    /// `cdp: { keyId, keySecret }`, the key read now so that a secret that is no key is reported
    /// here (at the secret's position, never quoting it).
    func cdpKey(_ node: Node, what: String = "facilitator.cdp") -> CDPKey? {
        guard let m = mapping(node, what, allowed: ["keyId", "keySecret"]) else { return nil }
        guard let idNode = m["keyId"]?.value, let secretNode = m["keySecret"]?.value else {
            error(node, "\(what) needs keyId and keySecret (usually \"${CDP_API_KEY_ID}\" and \"${CDP_API_KEY_SECRET}\")")
            return nil
        }
        guard let keyId = string(idNode, "\(what).keyId"), let secret = string(secretNode, "\(what).keySecret") else { return nil }
        do throws(CDPKeyError) {
            _ = try CDPAuthenticator(keyId: keyId, keySecret: secret)
        } catch let problem {
            error(keyId.trimmingCharacters(in: .whitespaces).isEmpty ? idNode : secretNode, "\(what): \(problem)")
            return nil
        }
        return CDPKey(keyId: keyId, keySecret: secret)
    }

    /// `storage: memory`, `storage: { sqlite: PATH }` or `storage: { postgres: URL }`, with
    /// `instance`, `lease` and `poolSize` beside the backend.
    func storageConfig(_ node: Node, facilitators: [FacilitatorConfig], upstreams: [String: UpstreamConfig]) -> StorageConfig {
        var config = StorageConfig()
        if case .scalar = node {
            if string(node, "storage") != "memory" {
                error(node, "storage must be memory, { sqlite: PATH } or { postgres: URL }")
            }
            config.backend = .memory
            return config
        }
        guard let m = mapping(node, "storage", allowed: ["sqlite", "postgres", "memory", "instance", "lease", "poolSize"]) else { return config }
        let backends = ["sqlite", "postgres", "memory"].filter { m[$0] != nil }
        if backends.count > 1 { error(node, "storage takes one of sqlite, postgres or memory, not \(backends.joined(separator: " and "))") }
        if let n = m["sqlite"]?.value, let path = string(n, "storage.sqlite") {
            if path.isEmpty { error(n, "storage.sqlite must be a file path") } else { config.backend = .sqlite(path: resolvePath(path)) }
        } else if let n = m["postgres"]?.value, let url = string(n, "storage.postgres") {
            if let problem = Self.postgresURLProblem(url) { error(n, "storage.postgres: \(problem)") } else { config.backend = .postgres(url: url) }
        } else if let n = m["memory"]?.value {
            if bool(n, "storage.memory") == true { config.backend = .memory }
        } else if backends.isEmpty {
            error(node, "storage needs sqlite: PATH, postgres: URL or memory: true")
        }
        if let n = m["instance"]?.value, let id = string(n, "storage.instance") {
            if id.isEmpty || id.count > 64 || !id.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) {
                error(n, "storage.instance must be 1 to 64 letters, digits, '-', '_' or '.'")
            } else {
                config.instance = id
            }
        }
        if let n = m["poolSize"]?.value, let size = int(n, "storage.poolSize", range: 1...256) { config.poolSize = size }
        if let n = m["lease"]?.value, let lease = duration(n, "storage.lease") {
            // A claim must outlive the slowest paid request, or another instance could take it over mid-flight.
            let slowest = Self.slowestPaidRequest(facilitators: facilitators, upstreams: upstreams)
            if lease <= slowest {
                error(n, "storage.lease must be longer than the slowest paid request (\(slowest): the longest upstream timeout, every facilitator's timeout once for verification, and the longest again for settlement)")
            } else {
                config.lease = lease
            }
        }
        return config
    }

    /// `networks: { "eip155:8453": { rpc: URL, timeout: 10s, logBlocks: 10000 } }`: the chains
    /// reconciliation reads. Keys are CAIP-2 ids or known names (`base`); the URL is never echoed in
    /// a diagnostic (it may carry an API key).
    func networksConfig(_ node: Node) -> [String: ChainRPCConfig] {
        guard let entries = node.mapping else {
            error(node, "networks must be a mapping of network ids to { rpc: URL }, e.g. \"eip155:8453\": { rpc: \"${BASE_RPC_URL}\" }")
            return [:]
        }
        var out: [String: ChainRPCConfig] = [:]
        for (key, value) in entries {
            guard let name = key.scalar?.string, !name.isEmpty else {
                error(key, "network names must be plain strings")
                continue
            }
            guard let network = Networks.resolve(name) else {
                error(key, "unknown network \"\(name)\" in networks: use an EVM CAIP-2 id like \"eip155:8453\" or a known name like \"base\"")
                continue
            }
            if out[network.caip2] != nil {
                error(key, "network \(network.caip2) is listed twice in networks")
                continue
            }
            let what = "networks.\"\(name)\""
            let m: [String: (key: Node, value: Node)]
            if value.scalar != nil {
                m = ["rpc": (key, value)]  // shorthand: `eip155:8453: URL`
            } else if let parsed = mapping(value, what, allowed: ["rpc", "timeout", "logBlocks"]) {
                m = parsed
            } else {
                continue
            }
            guard let rpcNode = m["rpc"]?.value else {
                error(value, "\(what) needs \"rpc\": the chain's JSON-RPC URL")
                continue
            }
            guard let rpc = string(rpcNode, "\(what).rpc") else { continue }
            guard EVMChainReader.accepts(url: rpc) else {
                // Not echoed: the URL may carry an API key.
                error(rpcNode, "\(what).rpc must be an absolute http(s) URL without user info, like https://host/path (the value is not shown: it may hold a key)")
                continue
            }
            let timeout = m["timeout"].flatMap { duration($0.value, "\(what).timeout") } ?? .seconds(10)
            let logBlocks = m["logBlocks"].flatMap { int($0.value, "\(what).logBlocks", range: 1...1_000_000) } ?? 10_000
            out[network.caip2] = ChainRPCConfig(network: network.caip2, chainId: network.chainId, rpc: rpc, timeout: timeout,
                                                logBlocks: UInt64(logBlocks))
        }
        return out
    }

    /// `reconcile: { interval: 1m, grace: 10m, batch: 100 }`.
    func reconcileConfig(_ node: Node) -> ReconcileConfig {
        var config = ReconcileConfig()
        guard let m = mapping(node, "reconcile", allowed: ["interval", "grace", "batch"]) else { return config }
        if let n = m["interval"]?.value, let v = duration(n, "reconcile.interval") {
            if v < .seconds(1) { error(n, "reconcile.interval must be at least 1s") } else { config.interval = v }
        }
        if let n = m["grace"]?.value, let v = duration(n, "reconcile.grace") { config.grace = v }
        if let n = m["batch"]?.value, let v = int(n, "reconcile.batch", range: 1...10_000) { config.batch = v }
        return config
    }

    /// The longest a paid request can hold its claim before settling: the longest upstream timeout,
    /// a verification that may ask every facilitator in turn, and the slowest settlement.
    static func slowestPaidRequest(facilitators: [FacilitatorConfig], upstreams: [String: UpstreamConfig]) -> Duration {
        (upstreams.values.map(\.timeout).max() ?? .zero) + facilitators.map(\.timeout).reduce(.zero, +)
            + (facilitators.map(\.timeout).max() ?? .zero)
    }

    /// Why a PostgreSQL URL is unusable, or nil.
    static func postgresURLProblem(_ url: String) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
              scheme == "postgres" || scheme == "postgresql"
        else { return "must be a URL like postgres://user:password@host:5432/database" }
        guard let host = components.host, !host.isEmpty else { return "names no host" }
        guard components.user?.isEmpty == false else { return "names no user" }
        guard components.path.count > 1 else { return "names no database (…/DATABASE)" }
        return nil
    }

    /// A path relative to the configuration file's folder (absolute paths stay as they are).
    func resolvePath(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        let folder = (file as NSString).deletingLastPathComponent
        return folder.isEmpty ? path : (folder as NSString).appendingPathComponent(path)
    }

    func upstreamsConfig(_ node: Node) -> [String: UpstreamConfig] {
        guard let entries = node.mapping else {
            error(node, "upstreams must be a mapping of names to { url: ... }")
            return [:]
        }
        var out: [String: UpstreamConfig] = [:]
        for (key, value) in entries {
            guard let name = key.scalar?.string, !name.isEmpty else {
                error(key, "upstream names must be plain strings")
                continue
            }
            // Shorthand: `api: http://127.0.0.1:8080`
            let m: [String: (key: Node, value: Node)]
            if value.scalar != nil {
                m = ["url": (key, value)]
            } else if let parsed = mapping(value, "upstream \"\(name)\"", allowed: ["url", "timeout", "connectTimeout", "headers", "caFile"]) {
                m = parsed
            } else {
                continue
            }
            guard let urlNode = m["url"]?.value else {
                error(value, "upstream \"\(name)\" needs a \"url\"")
                continue
            }
            guard let url = string(urlNode, "upstreams.\(name).url") else { continue }
            guard let parts = parseUpstreamURL(url) else {
                error(urlNode, "upstream \"\(name)\" url must be http(s)://host[:port][/base/path], not \"\(url)\"")
                continue
            }
            let timeout = m["timeout"].flatMap { duration($0.value, "upstreams.\(name).timeout") } ?? .seconds(30)
            let connectTimeout = m["connectTimeout"].flatMap { duration($0.value, "upstreams.\(name).connectTimeout") } ?? .seconds(5)
            let headers = m["headers"].flatMap { stringMap($0.value, "upstreams.\(name).headers") } ?? []
            var caFile: String?
            if let n = m["caFile"]?.value, let path = string(n, "upstreams.\(name).caFile") {
                let resolved = resolvePath(path)
                if parts.scheme != "https" {
                    error(n, "upstreams.\(name).caFile applies to https upstreams only (the url is \(parts.scheme))")
                } else if let problem = HTTPFacilitatorClient.caFileProblem(resolved) {
                    error(n, "upstreams.\(name).caFile: \(problem)")
                } else {
                    caFile = resolved
                }
            }
            out[name] = UpstreamConfig(
                name: name, scheme: parts.scheme, host: parts.host, port: parts.port, basePath: parts.path,
                timeout: timeout, connectTimeout: connectTimeout, headers: headers, caFile: caFile)
        }
        return out
    }

    /// `paywall: { enabled, appName, appLogo, colors: { accent, background, text } }`.
    func paywallConfig(_ node: Node) -> PaywallConfig {
        var config = PaywallConfig()
        guard let m = mapping(node, "paywall", allowed: ["enabled", "appName", "appLogo", "colors"]) else { return config }
        if let n = m["enabled"]?.value, let v = bool(n, "paywall.enabled") { config.enabled = v }
        if let n = m["appName"]?.value, let v = string(n, "paywall.appName") {
            if v.count > 80 || v.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                error(n, "paywall.appName must be one line of at most 80 characters")
            } else {
                config.appName = v
            }
        }
        if let n = m["appLogo"]?.value, let v = string(n, "paywall.appLogo") {
            if PaywallEscape.logoURL(v) != nil { config.appLogo = v } else {
                error(n, "paywall.appLogo must be an https:// URL or a base64 data:image/(png|jpeg|gif|webp|svg+xml) URL, not \"\(v.prefix(60))\"")
            }
        }
        if let n = m["colors"]?.value, let c = mapping(n, "paywall.colors", allowed: ["accent", "background", "text"]) {
            func color(_ key: String) -> String? {
                guard let node = c[key]?.value, let v = string(node, "paywall.colors.\(key)") else { return nil }
                if v.isEmpty {
                    error(node, "paywall.colors.\(key) is empty: quote the colour, \"#0052ff\" (an unquoted # starts a YAML comment)")
                    return nil
                }
                guard let hex = PaywallEscape.hexColor(v) else {
                    error(node, "paywall.colors.\(key) must be a hex colour like \"#0052ff\" or \"#05f\", not \"\(v)\"")
                    return nil
                }
                return hex
            }
            config.colors = PaywallColors(accent: color("accent"), background: color("background"), text: color("text"))
        }
        return config
    }

    static let routeKeys = [
        "id", "match", "host", "upstream", "price", "network", "payTo", "free", "accepts", "description", "mimeType",
        "maxTimeoutSeconds", "settlement", "paymentIdentifier", "cache", "pass", "discoverable", "input", "output", "verify", "riskBudget",
        "assetTransferMethod", "upto", "rateLimit", "freePerClient",
    ]

    /// `optional`, `required` or `off`: `.some(nil)` for `off`, nil when the value is invalid (reported).
    func paymentIdentifierMode(_ node: Node) -> PaymentIdentifierMode?? {
        guard let s = string(node, "paymentIdentifier") else { return nil }
        if s == "off" { return .some(nil) }
        if let mode = PaymentIdentifierMode(rawValue: s) { return .some(mode) }
        error(node, "paymentIdentifier must be \"optional\", \"required\" or \"off\", not \"\(s)\"")
        return nil
    }

    func routeConfig(_ node: Node, defaults: RouteDefaults, upstreams: [String: UpstreamConfig], caseSensitive: Bool,
                     passKeys: Bool = false) -> RouteConfig? {
        guard let m = mapping(node, "route", allowed: Self.routeKeys) else { return nil }
        guard let matchNode = m["match"]?.value else {
            error(node, "route needs a \"match\", e.g. \"GET /weather\" or \"/api/*\"")
            return nil
        }
        guard let matchText = string(matchNode, "match") else { return nil }
        let pattern: RoutePattern
        do {
            pattern = try RoutePattern(matchText, caseSensitive: caseSensitive)
        } catch {
            self.error(matchNode, "bad match \"\(matchText)\": \(error)")
            return nil
        }
        var host: HostPattern?
        if let n = m["host"]?.value, let s = string(n, "host") {
            host = HostPattern(s)
            if host == nil { error(n, "host \"\(s)\" is not a host name (or *.domain)") }
        }
        var upstream = ""
        if let n = m["upstream"]?.value, let s = string(n, "upstream") {
            if upstreams[s] == nil { unknownUpstream(n, s, upstreams) }
            upstream = s
        } else if upstreams.count == 1 {
            upstream = upstreams.keys.first!
        } else if m["upstream"] == nil {
            error(node, "route \"\(matchText)\" needs \"upstream\" (there are several upstreams)")
        }
        let description = m["description"].flatMap { string($0.value, "description") } ?? ""
        let mimeType = m["mimeType"].flatMap { string($0.value, "mimeType") } ?? ""
        var settlement = SettlementPolicy.afterSuccess
        if let n = m["settlement"]?.value, let s = string(n, "settlement") {
            if let p = SettlementPolicy(rawValue: s) { settlement = p } else {
                error(n, "settlement must be \"after-success\", \"after-headers\", \"before\" or \"deferred\", not \"\(s)\"")
            }
        }
        let routeDefaults = overriding(defaults, with: m)

        let isFree = m["free"].flatMap { bool($0.value, "free") } ?? false
        let access: RouteAccess
        let pricing = ["price", "accepts", "upto"].compactMap { m[$0] }
        var upto: UptoMetering?
        var routePrice: DynamicPrice?
        if isFree {
            if let first = pricing.first { error(first.key, "a free route cannot also have \"\(first.key.scalar?.string ?? "")\"") }
            access = .free
        } else if let uptoNode = m["upto"] {
            if let other = pricing.first(where: { $0.key != uptoNode.key }) {
                error(other.key, "give either \"upto\" (a maximum, charged by use) or \"\(other.key.scalar?.string ?? "")\", not both")
            }
            guard let (offer, metering) = uptoRoute(uptoNode.value, defaults: routeDefaults) else { return nil }
            if settlement != .afterSuccess, let n = m["settlement"] {
                error(n.value, "an upto route settles once the upstream has answered in full (what it charges depends on the answer): settlement must be after-success")
            }
            access = .priced([offer])
            upto = metering
        } else if let priceNode = m["price"]?.value {
            if let accepts = m["accepts"] { error(accepts.key, "give either \"price\" or \"accepts\", not both") }
            if Self.isDynamicPrice(priceNode) {
                guard let (offer, price) = dynamicPrice(priceNode, defaults: routeDefaults, at: node, method: pattern.method) else { return nil }
                access = .priced([offer])
                routePrice = price
            } else {
                guard let offer = offer(priceNode, defaults: routeDefaults, at: node) else { return nil }
                access = .priced([offer])
            }
        } else if let acceptsNode = m["accepts"]?.value {
            guard let seq = acceptsNode.sequence, !seq.isEmpty else {
                error(acceptsNode, "accepts must be a non-empty list of { price, network, payTo }")
                return nil
            }
            var offers: [Offer] = []
            for item in seq {
                guard let e = mapping(item, "accepts entry", allowed: ["price", "network", "payTo", "maxTimeoutSeconds", "assetTransferMethod"])
                else { continue }
                let d = overriding(routeDefaults, with: e)
                guard let priceNode = e["price"]?.value else {
                    error(item, "accepts entry needs a \"price\"")
                    continue
                }
                if Self.isDynamicPrice(priceNode) {
                    error(priceNode, "a dynamic price (rules or endpoint) goes on a route's price, not in an accepts entry: each accepts entry has a fixed price")
                    continue
                }
                if let o = offer(priceNode, defaults: d, at: item) { offers.append(o) }
            }
            guard offers.count == seq.count else { return nil }
            access = .priced(offers)
        } else {
            error(node, "route \"\(matchText)\" needs \"price\", \"accepts\", \"upto\" or \"free: true\"")
            return nil
        }
        // payment-identifier: explicit on the route, else the top-level default for priced after-success routes.
        var paymentIdentifier: PaymentIdentifierMode?
        if let entry = m["paymentIdentifier"] {
            if let mode = paymentIdentifierMode(entry.value), let mode {
                if isFree {
                    error(entry.key, "a free route cannot offer paymentIdentifier (no payment, nothing to replay)")
                } else if settlement != .afterSuccess {
                    error(entry.key, "paymentIdentifier needs settlement: after-success (a streamed answer cannot be stored and replayed)")
                } else if upto?.holdBack != nil {
                    error(entry.key, "paymentIdentifier needs an answer held back whole, not upto.holdBack (a streamed answer cannot be stored and replayed)")
                } else {
                    paymentIdentifier = mode
                }
            }
        } else if !isFree, settlement == .afterSuccess, upto?.holdBack == nil {
            paymentIdentifier = defaults.paymentIdentifier
        }
        // cache: paid answers are private unless the route says its content may be shared.
        var cache = PaidResponseCaching.private
        if let entry = m["cache"], let s = string(entry.value, "cache") {
            if let mode = PaidResponseCaching(rawValue: s) {
                if isFree {
                    error(entry.key, "a free route cannot have cache (its answers are relayed as the upstream sent them)")
                } else {
                    cache = mode
                }
            } else {
                error(entry.value, "cache must be \"private\" or \"upstream\", not \"\(s)\"")
            }
        }
        // pass: a settled payment earns a signed pass for the route (or its group).
        var pass: RoutePass?
        if let entry = m["pass"], let parsed = routePass(entry.value) {
            if isFree {
                error(entry.key, "a free route cannot have a pass (nothing is paid on it; a pass sent to it is ignored)")
            } else if cache == .upstream {
                error(entry.key, "a route with cache: upstream cannot issue passes: a shared cache would hand the pass cookie to everyone")
            } else if settlement == .deferred {
                error(entry.key, "a route with settlement: deferred cannot issue passes: a pass would outlive a payment not settled yet")
            } else if upto?.holdBack != nil {
                error(entry.key, "a streamed upto route (upto.holdBack) cannot issue passes: its head, where the pass goes, leaves before the settlement")
            } else if !passKeys {
                error(entry.key, "pass needs the top-level passes: { keys: [{ id, secret: \"${PASS_KEY}\" }] } that passes are signed with")
            } else {
                pass = parsed
            }
        }
        let rateLimit = m["rateLimit"].flatMap { self.rateLimit($0.value) }
        var freePerClient: FreeAllowance?
        if let entry = m["freePerClient"], let parsed = freeAllowance(entry.value) {
            if isFree {
                error(entry.key, "a free route cannot have freePerClient (every request is free already; rateLimit bounds them)")
            } else {
                freePerClient = parsed
            }
        }
        let discovery = routeDiscovery(m, pattern: pattern, isFree: isFree, mimeType: mimeType)
        let deferral = routeDeferral(m, settlement: settlement, access: access)
        if let routePrice, let deferral, deferral.perPayer < routePrice.highest {
            error(m["riskBudget"]?.value, "riskBudget.perPayer is less than the highest price this route can ask (\(routePrice.highest) atomic units): such a payment could never be deferred")
        }
        let explicitId = m["id"].flatMap { string($0.value, "id") }
        let id = explicitId ?? (host.map { "\($0) " } ?? "") + pattern.description
        if explicitId != nil { explicitIds.insert(id) }
        return RouteConfig(
            id: id, pattern: pattern, host: host, upstream: upstream, access: access, description: description,
            mimeType: mimeType, settlement: settlement, paymentIdentifier: paymentIdentifier, cache: cache, pass: pass,
            discovery: discovery, deferral: deferral, upto: upto, rateLimit: rateLimit, freePerClient: freePerClient,
            dynamicPrice: routePrice, location: location(matchNode))
    }

    /// `network`, `payTo` and `maxTimeoutSeconds` given on a route or an accepts entry win over `defaults`.
    func overriding(_ defaults: RouteDefaults, with m: [String: (key: Node, value: Node)]) -> RouteDefaults {
        var d = defaults
        if let n = m["network"]?.value {
            d.network = network(n, "network")
            d.networkInvalid = d.network == nil
        }
        if let n = m["payTo"]?.value {
            d.payTo = address(n, "payTo")
            d.payToInvalid = d.payTo == nil
        }
        if let n = m["maxTimeoutSeconds"]?.value, let v = int(n, "maxTimeoutSeconds", range: 1...86_400) { d.maxTimeoutSeconds = v }
        if let n = m["assetTransferMethod"]?.value, let text = string(n, "assetTransferMethod") {
            d.transferMethod = AssetTransferMethod(rawValue: text)
            d.transferMethodInvalid = d.transferMethod == nil
            if d.transferMethod == nil { error(n, "assetTransferMethod must be \"eip3009\" or \"permit2\", not \"\(text)\"") }
        }
        return d
    }

    /// `"$0.01"` (the network's default stablecoin) or `{ amount, asset, extra: { name, version } }`.
    /// The transfer method is `assetTransferMethod` when given, else Permit2 for `upto` and for
    /// assets that have no EIP-3009, else EIP-3009.
    func offer(_ node: Node, defaults: RouteDefaults, at routeNode: Node, scheme: String = "exact") -> Offer? {
        if defaults.networkInvalid || defaults.payToInvalid || defaults.transferMethodInvalid { return nil }
        guard let network = defaults.network else {
            error(node, "no network for this price: set a top-level \"network\" or one on the route")
            return nil
        }
        guard let payTo = defaults.payTo else {
            error(node, "no payee for this price: set a top-level \"payTo\" or one on the route")
            return nil
        }
        guard Networks.evmChainId(network.caip2) != nil else {
            error(node, "network \(network.caip2) is not an EVM network; only eip155 networks are supported")
            return nil
        }
        /// The method for an asset, or nil (reported) when the configuration asks for one it cannot use.
        func method(permit2Only: Bool, what: String) -> AssetTransferMethod? {
            let method = defaults.transferMethod ?? (scheme == "upto" || permit2Only ? .permit2 : .eip3009)
            if method == .eip3009 && scheme == "upto" {
                error(node, "upto is paid through Permit2 only: remove assetTransferMethod: eip3009")
                return nil
            }
            if method == .eip3009 && permit2Only {
                error(node, "\(what) has no EIP-3009 transferWithAuthorization: it is paid through Permit2 (assetTransferMethod: permit2)")
                return nil
            }
            return method
        }
        if node.scalar != nil {
            guard let text = string(node, "price") else { return nil }
            guard let asset = network.defaultAsset else {
                error(node, "network \(network.caip2) has no default stablecoin: give the price as { amount, asset, extra: { name, version } }")
                return nil
            }
            guard let method = method(permit2Only: asset.usesPermit2, what: "the default asset of \(network.caip2) (\(asset.symbol))") else {
                return nil
            }
            let amount: BigUInt
            do {
                amount = try Money.atomicUnits(fromDollars: text, decimals: asset.decimals)
            } catch {
                self.error(node, "bad price \"\(text)\": \(error)")
                return nil
            }
            var extra: [String: JSONValue] = ["name": .string(asset.eip712Name), "version": .string(asset.eip712Version)]
            if method == .permit2 { extra["assetTransferMethod"] = .string("permit2") }
            return Offer(
                scheme: scheme, network: network, amount: amount, asset: asset.address, payTo: payTo,
                maxTimeoutSeconds: defaults.maxTimeoutSeconds, extra: extra, decimals: asset.decimals, symbol: asset.symbol,
                transferMethod: method)
        }
        guard let m = mapping(node, "price", allowed: ["amount", "asset", "extra", "decimals", "symbol"]) else { return nil }
        guard let amountNode = m["amount"]?.value, let assetNode = m["asset"]?.value else {
            error(node, "an explicit price needs \"amount\" (atomic units) and \"asset\" (token address)")
            return nil
        }
        guard let amountText = string(amountNode, "amount") else { return nil }
        guard let amount = Money.atomicUnits(fromInteger: amountText), amount > 0 else {
            error(amountNode, "amount must be a positive whole number of atomic units (e.g. \"10000\"), not \"\(amountText)\"")
            return nil
        }
        guard let asset = address(assetNode, "asset") else { return nil }
        var extra: [String: JSONValue] = [:]
        if let n = m["extra"]?.value, let pairs = stringMap(n, "extra") {
            for (k, v) in pairs { extra[k] = .string(v) }
        }
        let known = network.defaultAsset.flatMap { $0.address.lowercased() == asset.lowercased() ? $0 : nil }
        if extra["name"] == nil, let known { extra["name"] = .string(known.eip712Name) }
        if extra["version"] == nil, let known { extra["version"] = .string(known.eip712Version) }
        guard let method = method(permit2Only: known?.usesPermit2 ?? false, what: "asset \(asset)") else { return nil }
        if method == .permit2 {
            extra["assetTransferMethod"] = .string("permit2")
        } else if extra["name"] == nil || extra["version"] == nil {
            error(node, "asset \(asset) needs extra: { name, version } (the token's EIP-712 domain) so clients can sign, or assetTransferMethod: permit2 (any ERC-20)")
            return nil
        }
        let decimals = m["decimals"].flatMap { int($0.value, "decimals", range: 0...36) } ?? known?.decimals
        let symbol = m["symbol"].flatMap { string($0.value, "symbol") } ?? known?.symbol
        return Offer(
            scheme: scheme, network: network, amount: amount, asset: asset, payTo: payTo, maxTimeoutSeconds: defaults.maxTimeoutSeconds,
            extra: extra, decimals: decimals, symbol: symbol, transferMethod: method)
    }

    /// `pass: { for: 24h, scope: path | route, group: NAME }`.
    func routePass(_ node: Node) -> RoutePass? {
        guard let m = mapping(node, "pass", allowed: ["for", "scope", "group", "uses"]) else { return nil }
        var ok = true
        if let uses = m["uses"] {
            error(uses.key, "pass.uses (passes counted by use) needs durable pass state, which this gateway does not have yet: only time-bound passes (for:) are supported")
            ok = false
        }
        guard let forNode = m["for"]?.value else {
            error(node, "pass needs \"for\": how long a pass stays valid after the payment, e.g. for: 24h")
            return nil
        }
        let seconds = passDuration(forNode)
        var scope = PassScope.path
        if let n = m["scope"]?.value, let s = string(n, "pass.scope") {
            if let parsed = PassScope(rawValue: s) { scope = parsed } else {
                error(n, "pass.scope must be \"path\" (the path paid for) or \"route\" (every request the route matches), not \"\(s)\"")
                ok = false
            }
        }
        var group: String?
        if let n = m["group"]?.value, let s = string(n, "pass.group") {
            if (1...64).contains(s.count), s.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) { group = s } else {
                error(n, "pass.group must be 1 to 64 letters, digits, '-', '_' or '.', not \"\(s)\"")
                ok = false
            }
        }
        guard ok, let seconds else { return nil }
        return RoutePass(seconds: seconds, scope: scope, group: group)
    }

    /// A pass's lifetime: `90s`, `30m`, `24h`, `7d` or a bare number of seconds; whole seconds,
    /// from one second to ``RoutePass/maxSeconds``.
    func passDuration(_ node: Node) -> UInt64? {
        guard let s = string(node, "pass.for") else { return nil }
        let units: [(String, UInt64)] = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400)]
        var number = Substring(s)
        var factor: UInt64 = 1
        for (suffix, f) in units where s.hasSuffix(suffix) && !s.hasSuffix("ms") {
            number = s.dropLast(suffix.count)
            factor = f
            break
        }
        guard let n = UInt64(number), n > 0, n <= RoutePass.maxSeconds / factor else {
            error(node, "pass.for must be a whole duration from 1s to 366d, like \"90s\", \"30m\", \"24h\" or \"7d\", not \"\(s)\"")
            return nil
        }
        return n * factor
    }

    /// `passes: { keys: [{ id: k1, secret: "${PASS_KEY_1}" }, …] }`: the first key signs, all verify.
    /// Secrets must come from the environment and are never echoed.
    func passesConfig(_ node: Node) -> PassesConfig? {
        guard let m = mapping(node, "passes", allowed: ["keys"]) else { return nil }
        guard let keysNode = m["keys"]?.value else {
            error(node, "passes needs \"keys\": a list of { id, secret: \"${PASS_KEY}\" } (the first signs new passes)")
            return nil
        }
        guard let seq = keysNode.sequence, !seq.isEmpty else {
            error(keysNode, "passes.keys must be a non-empty list of { id, secret: \"${PASS_KEY}\" }")
            return nil
        }
        var keys: [PassKey] = []
        var ok = true
        for (i, item) in seq.enumerated() {
            let what = "passes.keys[\(i)]"
            guard let e = mapping(item, what, allowed: ["id", "secret"]) else {
                ok = false
                continue
            }
            guard let idNode = e["id"]?.value, let secretNode = e["secret"]?.value else {
                error(item, "\(what) needs \"id\" (written into each pass) and \"secret\" (from the environment)")
                ok = false
                continue
            }
            let id = string(idNode, "\(what).id")
            if let id, !PassKey.isValidID(id) {
                error(idNode, "\(what).id must be 1 to 16 letters, digits, '-' or '_', not \"\(id.prefix(40))\"")
                ok = false
            } else if let id, keys.contains(where: { $0.id == id }) {
                error(idNode, "\(what).id \"\(id)\" is used twice: each key needs its own id")
                ok = false
            }
            guard secretNode.scalar?.string.contains("${") == true else {
                error(secretNode, "\(what).secret must come from the environment, like \"${PASS_KEY_1}\": a secret written in the file ends up in backups and version control (the value is not shown)")
                ok = false
                continue
            }
            guard let secret = string(secretNode, "\(what).secret") else {
                ok = false
                continue
            }
            let length = secret.utf8.count
            if length < PassKey.minimumSecretBytes {
                error(secretNode, "\(what).secret is \(length) bytes: use at least \(PassKey.minimumSecretBytes) random bytes, e.g. $(openssl rand -base64 32) (the value is not shown)")
                ok = false
                continue
            }
            if let id { keys.append(PassKey(id: id, secret: Array(secret.utf8))) }
        }
        return ok ? PassesConfig(keys: keys) : nil
    }

    // MARK: Cross-checks

    func checkRouteIds(_ routes: [RouteConfig]) {
        var seen: [String: RouteConfig] = [:]
        for route in routes {
            // Derived ids only collide for identical routes, which the shadowing check reports.
            if let first = seen[route.id], explicitIds.contains(route.id) {
                diagnostics.append(ConfigDiagnostic(
                    route.location ?? location(nil),
                    "duplicate route id \"\(route.id)\" (first used at line \(first.location?.line ?? 0)); give each route a distinct \"id\""))
            } else {
                seen[route.id] = route
            }
        }
    }

    func checkShadowing(_ routes: [RouteConfig]) {
        for (later, earlier) in RouteTable.shadowedRoutes(routes) {
            let a = routes[earlier], b = routes[later]
            let what = a.pattern == b.pattern && a.host == b.host ? "duplicates" : "is shadowed by"
            diagnostics.append(ConfigDiagnostic(
                b.location ?? location(nil),
                "route \"\(b.pattern)\" \(what) route \"\(a.pattern)\" at line \(a.location?.line ?? 0), which matches every request it would: it can never be used"))
        }
    }

    func unknownUpstream(_ node: Node, _ name: String, _ upstreams: [String: UpstreamConfig]) {
        let known = upstreams.keys.sorted().joined(separator: ", ")
        error(node, "unknown upstream \"\(name)\"" + (known.isEmpty ? "" : " (defined: \(known))"))
    }

    // MARK: Small parsers

    /// `host:port` (port 0: any free port), read as every other authority is (``HostAndPort``).
    func parseListen(_ s: String) -> ListenAddress? {
        guard let parts = HostAndPort(Substring(s)), let port = parts.port else { return nil }
        return ListenAddress(host: String(parts.host), port: port)
    }

    /// `http(s)://host[:port][/path]` with no query or fragment (``HTTPURL`` reads it, as the clients
    /// that use it will); returns it without a trailing slash.
    func parseBaseURL(_ s: String, allowPath: Bool = true) -> String? {
        guard !Self.hasQueryOrFragment(s), !s.utf8.contains(UInt8(ascii: " ")), let url = HTTPURL(s),
              allowPath || url.target.isEmpty || url.target == "/"
        else { return nil }
        var out = s
        while out.hasSuffix("/") { out.removeLast() }
        return out
    }

    /// An upstream's `http(s)://host[:port][/base-path]`: no query or fragment, a base path that is
    /// already canonical.
    func parseUpstreamURL(_ s: String) -> (scheme: String, host: String, port: Int, path: String)? {
        guard !Self.hasQueryOrFragment(s), let url = HTTPURL(s) else { return nil }
        var path = url.target
        while path.hasSuffix("/") { path.removeLast() }
        if !path.isEmpty {
            guard (try? CanonicalPath.parse(target: path)) != nil else { return nil }
        }
        return (url.origin.tls ? "https" : "http", url.origin.host, url.origin.port, path)
    }

    /// Judged by byte, not Character: a `?` followed by a combining mark is another Character.
    private static func hasQueryOrFragment(_ s: String) -> Bool {
        s.utf8.contains { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }
    }

    func isToken(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
        }
    }
}
