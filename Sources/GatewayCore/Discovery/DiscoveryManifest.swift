import X402

/// `GET /.well-known/x402`: the priced routes an origin serves, for agents and crawlers that look
/// before they pay. Built once per configuration; per request only the origin is filled in and the
/// routes of other hosts are left out.
///
/// ```
/// { "accepts": [ …every distinct offer of the listed resources… ],
///   "kind": "resource-server",
///   "resources": [ { "accepts": [PaymentRequirements…], "description", "input": { "body"?, "bodyType"?,
///                    "example"?, "method", "queryParams"?, "routeTemplate"? }, "method", "mimeType",
///                    "output"?: { "example"?, "mimeType"?, "schema"? }, "type": "http", "url" } ],
///   "x402Version": 2 }
/// ```
///
/// Field names: `x402Version`, `kind` and `resources[]` with `url`, `method` and `description` are
/// those of x402's `.well-known/x402` manifest draft (`specs/extensions/discovery.md`); a resource's
/// `type`, `accepts`, `input` and `output` those of the manifest draft of the TypeScript SDK
/// (`DiscoveryManifestResource`, `DiscoveryInput`, `DiscoveryOutput`), and `accepts` entries are the
/// route's 402 `accepts` exactly. A resource is the route's path on the origin, parameters written
/// `:name` and whole-segment wildcards `:var1`, `:var2`… (the form facilitators catalog, see
/// ``Bazaar/listedPath(_:)``). Listed: priced, discoverable routes whose method the bazaar can
/// describe and whose host (if any) admits the host asked. Keys are written in sorted order, as
/// everywhere else the gateway writes JSON.
public struct DiscoveryManifest: Sendable {
    /// Where it is served (RFC 8615 well-known URI).
    public static let path = "/.well-known/x402"

    struct Entry: Sendable {
        let host: HostPattern?
        /// The resource's JSON up to its URL's value (`url` sorts last).
        let head: [UInt8]
        let path: String
        /// The route's offers, by ``PreparedOffer/distinct``.
        let offers: [Int]
    }

    let entries: [Entry]
    /// Requirements JSON by ``PreparedOffer/distinct``.
    let offers: [[UInt8]?]

    public init(routes: [CompiledRoute]) {
        var offers: [[UInt8]?] = []
        var described: [Described: (input: [UInt8], output: [UInt8]?)] = [:]
        var entries: [Entry] = []
        for route in routes where route.challenge != nil {
            let config = route.config
            guard let method = Challenge.Shape.bazaarMethod(config) else { continue }
            for prepared in route.offers {
                if prepared.distinct >= offers.count { offers += [[UInt8]?](repeating: nil, count: prepared.distinct + 1 - offers.count) }
                if offers[prepared.distinct] == nil { offers[prepared.distinct] = prepared.requirementsJSON }
            }
            let key = Described(method: method, discovery: config.discovery, mimeType: config.mimeType)
            let parts = described[key] ?? Self.describe(key)
            described[key] = parts

            var head: [UInt8] = []
            head.reserveCapacity(512)
            head += Array(#"{"accepts":["#.utf8)
            for (n, prepared) in route.offers.enumerated() {
                if n > 0 { head.append(UInt8(ascii: ",")) }
                head += prepared.requirementsJSON
            }
            head += Array(#"],"description":"#.utf8) + Self.quoted(config.description)
            head += Array(#","input":"#.utf8) + parts.input
            if let template = Bazaar.routeTemplate(config.pattern) {
                head.removeLast()  // the input object's "}": routeTemplate sorts last in it
                head += Array(#","routeTemplate":"#.utf8) + Self.quoted(template) + [UInt8(ascii: "}")]
            }
            head += Array(#","method":"#.utf8) + Self.quoted(method)
            head += Array(#","mimeType":"#.utf8) + Self.quoted(config.mimeType)
            if let output = parts.output { head += Array(#","output":"#.utf8) + output }
            head += Array(#","type":"http","url":"#.utf8)
            entries.append(Entry(host: config.host, head: head, path: Bazaar.listedPath(config.pattern),
                                 offers: route.offers.map(\.distinct)))
        }
        self.entries = entries
        self.offers = offers
    }

    /// What a route's `input` and `output` objects depend on.
    private struct Described: Hashable {
        var method: String
        var discovery: RouteDiscovery
        var mimeType: String
    }

    /// The `input` object (without `routeTemplate`) and the `output` object (nil when empty).
    private static func describe(_ key: Described) -> (input: [UInt8], output: [UInt8]?) {
        let discovery = key.discovery
        var input: [String: JSONValue] = ["method": .string(key.method)]
        if Bazaar.bodyMethods.contains(key.method) {
            input["bodyType"] = .string((discovery.input?.bodyType ?? .json).rawValue)
            if let schema = discovery.input?.schema { input["body"] = schema }
        } else if let schema = discovery.input?.schema {
            input["queryParams"] = Bazaar.querySchema(schema)
        }
        if let example = discovery.input?.example { input["example"] = example }
        var output: [String: JSONValue] = [:]
        if let example = discovery.output?.example { output["example"] = example }
        if !key.mimeType.isEmpty { output["mimeType"] = .string(key.mimeType) }
        if let schema = discovery.output?.schema { output["schema"] = schema }
        let encode = { (value: JSONValue) in (try? HeaderCodec.compactJSON(value)) ?? Array("{}".utf8) }
        return (encode(.object(input)), output.isEmpty ? nil : encode(.object(output)))
    }

    private static func quoted(_ text: String) -> [UInt8] { Array(JSONString.quoted(text).utf8) }

    /// The manifest for a request to `host` (normalised, see ``HostPattern/normalize(hostHeader:)``);
    /// `base` is what resource URLs start with: `publicBaseURL`, else the request's scheme and authority.
    public func render(base: String, host: String) -> [UInt8] {
        var seen = [Bool](repeating: false, count: offers.count)
        var accepts: [UInt8] = []
        var resources: [UInt8] = []
        for entry in entries where entry.host?.matches(host) ?? true {
            if !resources.isEmpty { resources.append(UInt8(ascii: ",")) }
            resources += entry.head + Self.quoted(base + entry.path) + [UInt8(ascii: "}")]
            for n in entry.offers where !seen[n] {
                seen[n] = true
                if !accepts.isEmpty { accepts.append(UInt8(ascii: ",")) }
                accepts += offers[n] ?? []
            }
        }
        return Array(#"{"accepts":["#.utf8) + accepts + Array(#"],"kind":"resource-server","resources":["#.utf8) + resources
            + Array(#"],"x402Version":2}"#.utf8)
    }
}
