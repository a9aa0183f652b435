import X402

/// The 402 answer of a priced route, prepared once: the v2 `PAYMENT-REQUIRED` JSON and the v1 body
/// are templates with two holes (the error text and the resource URL) filled per request.
public struct Challenge: Sendable {
    public let offers: [Offer]
    let v2: JSONTemplate
    let v1: JSONTemplate

    public static let defaultError = "Payment required"

    public init(route: RouteConfig, offers: [Offer]) {
        self.offers = offers
        let resource = ResourceInfo(url: JSONTemplate.urlSentinel, description: route.description, mimeType: route.mimeType)
        let extensions = route.paymentIdentifier.map { mode in
            [PaymentIdentifier.extensionKey: PaymentIdentifier.declaration(required: mode == .required)]
        }
        let v2Value = PaymentRequired(error: JSONTemplate.errorSentinel, resource: resource, accepts: offers.map(\.requirements),
                                      extensions: extensions)
        let v1Value = PaymentRequiredV1(
            error: JSONTemplate.errorSentinel,
            accepts: offers.compactMap {
                $0.requirementsV1(resourceURL: JSONTemplate.urlSentinel, description: route.description,
                                  mimeType: route.mimeType, method: route.pattern.method)
            })
        self.v2 = JSONTemplate(v2Value)
        self.v1 = JSONTemplate(v1Value)
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
    enum Hole: Sendable { case error, url }

    static let errorSentinel = "x402-template-hole-error-5b1f"
    static let urlSentinel = "x402-template-hole-url-5b1f"

    private let fragments: [[UInt8]]
    private let holes: [Hole]

    init<T: Encodable>(_ value: T) {
        let encoded = (try? HeaderCodec.compactJSON(value)) ?? []
        let errorToken = Array(JSONString.quoted(JSONTemplate.errorSentinel).utf8)
        let urlToken = Array(JSONString.quoted(JSONTemplate.urlSentinel).utf8)
        var fragments: [[UInt8]] = []
        var holes: [Hole] = []
        var current: [UInt8] = []
        var i = 0
        while i < encoded.count {
            if encoded[i...].starts(with: errorToken) {
                fragments.append(current)
                current = []
                holes.append(.error)
                i += errorToken.count
            } else if encoded[i...].starts(with: urlToken) {
                fragments.append(current)
                current = []
                holes.append(.url)
                i += urlToken.count
            } else {
                current.append(encoded[i])
                i += 1
            }
        }
        fragments.append(current)
        self.fragments = fragments
        self.holes = holes
    }

    func render(error: String, url: String) -> [UInt8] {
        let errorBytes = Array(JSONString.quoted(error).utf8)
        let urlBytes = Array(JSONString.quoted(url).utf8)
        var out: [UInt8] = []
        out.reserveCapacity(fragments.reduce(0) { $0 + $1.count } + holes.count * 64)
        for (n, fragment) in fragments.enumerated() {
            out.append(contentsOf: fragment)
            if n < holes.count { out.append(contentsOf: holes[n] == .error ? errorBytes : urlBytes) }
        }
        return out
    }
}
