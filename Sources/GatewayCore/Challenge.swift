import X402

/// The 402 answer of a priced route, prepared once: the v2 `PAYMENT-REQUIRED` JSON and the v1 body
/// are templates with two holes (the error text and the resource URL) filled per request.
public struct Challenge: Sendable {
    public let offers: [Offer]
    let v2: JSONTemplate
    let v1: JSONTemplate

    public static let defaultError = "Payment required"

    public init(route: RouteConfig, offers: [Offer]) {
        self.init(route: route, shape: Shape(route: route, offers: offers))
    }

    /// Fills a shape's templates with the route's description and MIME type. Routes of one shape
    /// share the expensive part (encoding), see ``RouteCompiler``.
    init(route: RouteConfig, shape: Shape) {
        self.offers = shape.offers
        self.v2 = shape.v2.filling(description: route.description, mimeType: route.mimeType)
        self.v1 = shape.v1.filling(description: route.description, mimeType: route.mimeType)
    }

    /// What a challenge depends on besides the route's description and MIME type, encoded once
    /// with holes for those two as well.
    struct Shape: Sendable {
        struct Key: Hashable {
            var offers: [Offer]
            var paymentIdentifier: PaymentIdentifierMode?
            var method: String?
        }

        let offers: [Offer]
        let v2: JSONTemplate
        let v1: JSONTemplate

        init(route: RouteConfig, offers: [Offer]) {
            self.offers = offers
            let description = JSONTemplate.descriptionSentinel, mimeType = JSONTemplate.mimeTypeSentinel
            let resource = ResourceInfo(url: JSONTemplate.urlSentinel, description: description, mimeType: mimeType)
            let extensions = route.paymentIdentifier.map { mode in
                [PaymentIdentifier.extensionKey: PaymentIdentifier.declaration(required: mode == .required)]
            }
            let v2Value = PaymentRequired(error: JSONTemplate.errorSentinel, resource: resource, accepts: offers.map(\.requirements),
                                          extensions: extensions)
            let v1Value = PaymentRequiredV1(
                error: JSONTemplate.errorSentinel,
                accepts: offers.compactMap {
                    $0.requirementsV1(resourceURL: JSONTemplate.urlSentinel, description: description,
                                      mimeType: mimeType, method: route.pattern.method)
                })
            self.v2 = JSONTemplate(v2Value)
            self.v1 = JSONTemplate(v1Value)
        }

        static func key(route: RouteConfig, offers: [Offer]) -> Key {
            Key(offers: offers, paymentIdentifier: route.paymentIdentifier, method: route.pattern.method)
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

/// Compact JSON with string holes, made by encoding sentinels and splitting on them.
struct JSONTemplate: Sendable {
    enum Hole: Sendable { case error, url, description, mimeType }

    static let errorSentinel = "x402-template-hole-error-5b1f"
    static let urlSentinel = "x402-template-hole-url-5b1f"
    static let descriptionSentinel = "x402-template-hole-description-5b1f"
    static let mimeTypeSentinel = "x402-template-hole-mime-type-5b1f"

    /// `fragments.count == holes.count + 1`.
    private let fragments: [[UInt8]]
    private let holes: [Hole]

    init<T: Encodable>(_ value: T) {
        let encoded = (try? HeaderCodec.compactJSON(value)) ?? []
        let tokens: [(Hole, [UInt8])] = [
            (.error, Self.errorSentinel), (.url, Self.urlSentinel), (.description, Self.descriptionSentinel),
            (.mimeType, Self.mimeTypeSentinel),
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

    /// The template with the description and MIME type holes filled (the error and URL stay holes).
    func filling(description: String, mimeType: String) -> JSONTemplate {
        let descriptionBytes = Array(JSONString.quoted(description).utf8)
        let mimeTypeBytes = Array(JSONString.quoted(mimeType).utf8)
        var fragments: [[UInt8]] = [self.fragments[0]]
        var holes: [Hole] = []
        for (n, hole) in self.holes.enumerated() {
            switch hole {
            case .description: fragments[fragments.count - 1] += descriptionBytes + self.fragments[n + 1]
            case .mimeType: fragments[fragments.count - 1] += mimeTypeBytes + self.fragments[n + 1]
            case .error, .url:
                holes.append(hole)
                fragments.append(self.fragments[n + 1])
            }
        }
        return JSONTemplate(fragments: fragments, holes: holes)
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
            case .description, .mimeType: out.append(contentsOf: Array(JSONString.quoted("").utf8))
            }
        }
        return out
    }
}
