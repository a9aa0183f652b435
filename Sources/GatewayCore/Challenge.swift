import X402

/// The 402 answer of a priced route, prepared once: the v2 `PAYMENT-REQUIRED` JSON and the v1 body
/// are templates with two holes (the error text and the resource URL) filled per request.
public struct Challenge: Sendable {
    public let offers: [Offer]
    let v2: JSONTemplate
    let v1: JSONTemplate

    public static let defaultError = "Payment required"

    public init(route: RouteConfig, offers: [Offer]) {
        var compiler = RouteCompiler()
        self.init(route: route, shape: Shape(route: route, offers: offers), bazaar: compiler.bazaarDeclaration(route))
    }

    /// Fills a shape's templates with the route's description, MIME type and bazaar declaration
    /// (compact JSON; nil when the shape has none). Routes of one shape share the expensive part
    /// (encoding), see ``RouteCompiler``.
    init(route: RouteConfig, shape: Shape, bazaar: [UInt8]?) {
        self.offers = shape.offers
        var values: [JSONTemplate.Hole: [UInt8]] = [
            .description: Array(JSONString.quoted(route.description).utf8), .mimeType: Array(JSONString.quoted(route.mimeType).utf8),
        ]
        if let bazaar { values[.bazaar] = bazaar }
        self.v2 = shape.v2.filling(values)
        self.v1 = shape.v1.filling(values)
    }

    /// What a challenge depends on besides the route's description and MIME type, encoded once
    /// with holes for those two as well.
    struct Shape: Sendable {
        struct Key: Hashable {
            var offers: [Offer]
            var paymentIdentifier: PaymentIdentifierMode?
            var method: String?
            /// The method the bazaar declaration describes (nil: the route has none).
            var bazaarMethod: String?
        }

        let offers: [Offer]
        let v2: JSONTemplate
        let v1: JSONTemplate

        init(route: RouteConfig, offers: [Offer]) {
            self.offers = offers
            let description = JSONTemplate.descriptionSentinel, mimeType = JSONTemplate.mimeTypeSentinel
            let resource = ResourceInfo(url: JSONTemplate.urlSentinel, description: description, mimeType: mimeType)
            var extensions: [String: JSONValue] = [:]
            if let mode = route.paymentIdentifier {
                extensions[PaymentIdentifier.extensionKey] = PaymentIdentifier.declaration(required: mode == .required)
            }
            let bazaarMethod = Self.bazaarMethod(route)
            if bazaarMethod != nil { extensions[Bazaar.extensionKey] = .string(JSONTemplate.bazaarSentinel) }
            let v2Value = PaymentRequired(error: JSONTemplate.errorSentinel, resource: resource, accepts: offers.map(\.requirements),
                                          extensions: extensions.isEmpty ? nil : extensions)
            let v1Value = PaymentRequiredV1(
                error: JSONTemplate.errorSentinel,
                accepts: offers.compactMap {
                    $0.requirementsV1(resourceURL: JSONTemplate.urlSentinel, description: description, mimeType: mimeType,
                                      method: bazaarMethod ?? route.pattern.method, discoverable: bazaarMethod != nil)
                })
            self.v2 = JSONTemplate(v2Value)
            self.v1 = JSONTemplate(v1Value)
        }

        static func key(route: RouteConfig, offers: [Offer]) -> Key {
            Key(offers: offers, paymentIdentifier: route.paymentIdentifier, method: route.pattern.method, bazaarMethod: bazaarMethod(route))
        }

        /// The method the route's bazaar declaration describes; nil when the route is not
        /// discoverable or its method is one the bazaar cannot describe.
        static func bazaarMethod(_ route: RouteConfig) -> String? {
            route.discovery.discoverable ? Bazaar.method(pattern: route.pattern, input: route.discovery.input) : nil
        }
    }

    /// The v2 challenge object (for the paywall and tests).
    public func paymentRequired(resourceURL: String, error: String = Challenge.defaultError) -> [UInt8] {
        v2.render(error: error, url: resourceURL)
    }

    /// `PAYMENT-REQUIRED` header value: standard padded base64 of the compact v2 JSON.
    public func header(resourceURL: String, error: String = Challenge.defaultError) -> String {
        Base64.encode(v2.render(error: error, url: resourceURL))
    }

    /// The v1 `PaymentRequirementsResponse` JSON body.
    public func v1Body(resourceURL: String, error: String = Challenge.defaultError) -> [UInt8] {
        v1.render(error: error, url: resourceURL)
    }
}

/// Compact JSON with holes, made by encoding sentinel strings and splitting on them. A hole is
/// filled with JSON bytes: a quoted string, or a whole value (`bazaar`).
struct JSONTemplate: Sendable {
    enum Hole: Sendable, Hashable { case error, url, description, mimeType, routeTemplate, bazaar }

    static let errorSentinel = "x402-template-hole-error-5b1f"
    static let urlSentinel = "x402-template-hole-url-5b1f"
    static let descriptionSentinel = "x402-template-hole-description-5b1f"
    static let mimeTypeSentinel = "x402-template-hole-mime-type-5b1f"
    static let routeTemplateSentinel = "x402-template-hole-route-template-5b1f"
    static let bazaarSentinel = "x402-template-hole-bazaar-5b1f"

    /// `fragments.count == holes.count + 1`.
    private let fragments: [[UInt8]]
    private let holes: [Hole]

    init<T: Encodable>(_ value: T) {
        self.init(json: (try? HeaderCodec.compactJSON(value)) ?? [])
    }

    /// Splits compact JSON on the quoted sentinels it contains.
    init(json encoded: [UInt8]) {
        let tokens: [(Hole, [UInt8])] = [
            (.error, Self.errorSentinel), (.url, Self.urlSentinel), (.description, Self.descriptionSentinel),
            (.mimeType, Self.mimeTypeSentinel), (.routeTemplate, Self.routeTemplateSentinel), (.bazaar, Self.bazaarSentinel),
        ].map { ($0, Array(JSONString.quoted($1).utf8)) }
        var fragments: [[UInt8]] = []
        var holes: [Hole] = []
        var current: [UInt8] = []
        var i = 0
        scan: while i < encoded.count {
            if encoded[i] == UInt8(ascii: "\"") {
                for (hole, token) in tokens where encoded[i...].starts(with: token) {
                    fragments.append(current)
                    current = []
                    holes.append(hole)
                    i += token.count
                    continue scan
                }
            }
            current.append(encoded[i])
            i += 1
        }
        fragments.append(current)
        self.fragments = fragments
        self.holes = holes
    }

    private init(fragments: [[UInt8]], holes: [Hole]) {
        self.fragments = fragments
        self.holes = holes
    }

    /// The template with the holes in `values` filled with their JSON bytes (the others stay holes).
    func filling(_ values: [Hole: [UInt8]]) -> JSONTemplate {
        var fragments: [[UInt8]] = [self.fragments[0]]
        var holes: [Hole] = []
        for (n, hole) in self.holes.enumerated() {
            if let bytes = values[hole] {
                fragments[fragments.count - 1] += bytes + self.fragments[n + 1]
            } else {
                holes.append(hole)
                fragments.append(self.fragments[n + 1])
            }
        }
        return JSONTemplate(fragments: fragments, holes: holes)
    }

    /// The bytes of a template whose holes are all filled.
    var filled: [UInt8] {
        precondition(holes.isEmpty, "a JSON template with holes left")
        return fragments[0]
    }

    func render(error: String, url: String) -> [UInt8] {
        let errorBytes = Array(JSONString.quoted(error).utf8)
        let urlBytes = Array(JSONString.quoted(url).utf8)
        var out: [UInt8] = []
        out.reserveCapacity(fragments.reduce(0) { $0 + $1.count } + holes.count * 64)
        for (n, fragment) in fragments.enumerated() {
            out.append(contentsOf: fragment)
            guard n < holes.count else { continue }
            switch holes[n] {
            case .error: out.append(contentsOf: errorBytes)
            case .url: out.append(contentsOf: urlBytes)
            // Only in a shape's templates, which are filled before they are rendered.
            case .description, .mimeType, .routeTemplate: out.append(contentsOf: Array(JSONString.quoted("").utf8))
            case .bazaar: out.append(contentsOf: Array("{}".utf8))
            }
        }
        return out
    }
}
