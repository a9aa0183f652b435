/// Finds the route "first match in file order wins" picks, without scanning the table: the routes
/// are split by host (any host, each exact host, each `*.domain`) and case mode, each part a
/// ``PathTrie`` over the path patterns, and methods are small codes checked at the trie's leaves.
///
/// A request looks in the parts its host can match (any-host, its own name, and one per dot in it
/// for the wildcards) and keeps the earliest route found.
struct RouteIndex: Sendable {
    /// The tries of one case mode (a configuration has one; tests may mix).
    private struct Lane: Sendable {
        var anyHost: PathTrie?
        var exactHosts: [String: PathTrie] = [:]
        /// Keyed by the suffix a matching host ends with: `.example.com` for `*.example.com`.
        var wildcardHosts: [Substring: PathTrie] = [:]
    }

    private let lanes: [Lane]
    /// Route methods in order of first use; a method's code is its position + 1.
    private let methodNames: [String]
    private let getCode: UInt16

    init(_ routes: [(pattern: RoutePattern, host: HostPattern?)]) {
        var methodCodes: [String: UInt16] = [:]
        var methodNames: [String] = []
        var builders: [Bool: LaneBuilder] = [:]
        for (position, route) in routes.enumerated() {
            var code: UInt16 = 0
            if let method = route.pattern.method {
                if let known = methodCodes[method] {
                    code = known
                } else {
                    methodNames.append(method)
                    code = UInt16(methodNames.count)
                    methodCodes[method] = code
                }
            }
            let mode = route.pattern.caseSensitive
            // In place: a copy of a builder taken out and put back would copy its trees per route.
            builders[mode, default: LaneBuilder(caseSensitive: mode)]
                .insert(route.pattern, host: route.host, PathTrie.Entry(route: Int32(position), method: code))
        }
        self.lanes = builders.values.map { $0.build() }
        self.methodNames = methodNames
        self.getCode = methodCodes["GET"] ?? 0
    }

    private struct LaneBuilder {
        let caseSensitive: Bool
        var anyHost: PathTrie.Builder?
        var exactHosts: [String: PathTrie.Builder] = [:]
        var wildcardHosts: [Substring: PathTrie.Builder] = [:]

        init(caseSensitive: Bool) { self.caseSensitive = caseSensitive }

        mutating func insert(_ pattern: RoutePattern, host: HostPattern?, _ entry: PathTrie.Entry) {
            let empty = PathTrie.Builder(caseSensitive: caseSensitive)
            if let host, let suffix = host.wildcardSuffix {
                wildcardHosts[suffix, default: empty].insert(pattern, entry)
            } else if let host {
                exactHosts[host.pattern, default: empty].insert(pattern, entry)
            } else {
                if anyHost == nil { anyHost = empty }
                anyHost!.insert(pattern, entry)
            }
        }

        func build() -> Lane {
            Lane(anyHost: anyHost.map(PathTrie.init(builder:)), exactHosts: exactHosts.mapValues(PathTrie.init(builder:)),
                 wildcardHosts: wildcardHosts.mapValues(PathTrie.init(builder:)))
        }
    }

    /// Position of the first route (in file order) whose host, method and path match. `host` is
    /// normalised (see ``HostPattern/normalize(hostHeader:)``); `path` is canonical.
    func firstMatch(method: String, path: String, host: String) -> Int? {
        var collector = EarliestRoute()
        let methods = filter(for: method)
        var path = path
        path.withUTF8 { bytes in
            let matched = bytes.count > 1 && bytes[bytes.count - 1] == UInt8(ascii: "/") ? UnsafeBufferPointer(rebasing: bytes.dropLast()) : bytes
            for lane in lanes {
                lane.anyHost?.collect(path: matched, methods: methods, into: &collector)
                guard !host.isEmpty else { continue }
                if !lane.exactHosts.isEmpty { lane.exactHosts[host]?.collect(path: matched, methods: methods, into: &collector) }
                if !lane.wildcardHosts.isEmpty {
                    forEachWildcardSuffix(of: Substring(host)) { lane.wildcardHosts[$0]?.collect(path: matched, methods: methods, into: &collector) }
                }
            }
        }
        return collector.limit == .max ? nil : Int(collector.limit)
    }

    /// The routes before position `limit` that match every request `pattern` with `host` matches
    /// could: those that admit its method (`nil`: any method) and its host, and match a path the
    /// pattern matches. A superset of the routes that shadow it, in file order.
    func candidates(covering pattern: RoutePattern, host: HostPattern?, before limit: Int) -> [Int] {
        var collector = AllRoutes(limit: Int32(limit))
        let methods = pattern.method.map { filter(for: $0) } ?? MethodFilter(code: MethodFilter.unknown, getForHead: 0)
        pattern.witnessPath().withUnsafeBufferPointer { path in
            for lane in lanes {
                lane.anyHost?.collect(path: path, methods: methods, into: &collector)
                guard let host else { continue }
                if let suffix = host.wildcardSuffix {
                    // Every host `*.a.b` matches ends with `.a.b` and `.b`: wildcards on those cover it.
                    forEachWildcardSuffix(of: suffix) { lane.wildcardHosts[$0]?.collect(path: path, methods: methods, into: &collector) }
                } else {
                    lane.exactHosts[host.pattern]?.collect(path: path, methods: methods, into: &collector)
                    forEachWildcardSuffix(of: Substring(host.pattern)) { lane.wildcardHosts[$0]?.collect(path: path, methods: methods, into: &collector) }
                }
            }
        }
        return collector.routes.sorted().map(Int.init)
    }

    private func filter(for method: String) -> MethodFilter {
        var code = MethodFilter.unknown
        for (i, name) in methodNames.enumerated() where name == method {
            code = UInt16(i + 1)
            break
        }
        return MethodFilter(code: code, getForHead: method == "HEAD" ? getCode : 0)
    }

    /// `a.b.c` → `.b.c`, `.c`: every suffix starting at a dot (including one at the start).
    private func forEachWildcardSuffix(of host: Substring, _ body: (Substring) -> Void) {
        var rest = host[...]
        while let dot = rest.firstIndex(of: ".") {
            body(host[dot...])
            rest = host[host.index(after: dot)...]
        }
    }
}

/// The earliest route offered; its position is also the limit for the rest of the search.
private struct EarliestRoute: RouteCollector {
    var limit: Int32 = .max

    mutating func found(_ route: Int32) { limit = min(limit, route) }
}

/// Every route offered before a fixed limit.
private struct AllRoutes: RouteCollector {
    let limit: Int32
    var routes: [Int32] = []

    mutating func found(_ route: Int32) { routes.append(route) }
}
