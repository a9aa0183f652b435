import X402

/// What a priced route tells buyers and catalogs about itself: whether it is listed at all
/// (`discoverable`), and how it is called and what it answers (`input`, `output`). The gateway
/// publishes it twice: as the bazaar extension of the route's 402 (``Bazaar``) and as the route's
/// entry in `GET /.well-known/x402` (``DiscoveryManifest``).
public struct RouteDiscovery: Sendable, Hashable {
    /// False: no bazaar extension in the 402 (the v1 body says `discoverable: false`) and no
    /// manifest entry. The route is priced and paid exactly the same.
    public var discoverable: Bool
    public var input: Input?
    public var output: Output?

    public init(discoverable: Bool = true, input: Input? = nil, output: Output? = nil) {
        self.discoverable = discoverable
        self.input = input
        self.output = output
    }

    /// How a request to the route is made (`input:` on a route).
    public struct Input: Sendable, Hashable {
        /// Set for routes that take a body (POST, PUT, PATCH); nil for query-parameter routes.
        public var bodyType: BodyType?
        /// JSON Schema of the query parameters (an object schema), or of the body.
        public var schema: JSONValue?
        /// Example query parameters (an object), or an example body.
        public var example: JSONValue?

        public init(bodyType: BodyType? = nil, schema: JSONValue? = nil, example: JSONValue? = nil) {
            self.bodyType = bodyType
            self.schema = schema
            self.example = example
        }
    }

    /// What the route answers (`output:` on a route).
    public struct Output: Sendable, Hashable {
        /// JSON Schema of the response body.
        public var schema: JSONValue?
        public var example: JSONValue?

        public init(schema: JSONValue? = nil, example: JSONValue? = nil) {
            self.schema = schema
            self.example = example
        }
    }

    /// The bazaar's body encodings (`bodyType`).
    public enum BodyType: String, Sendable, Hashable, CaseIterable {
        case json
        case formData = "form-data"
        case text
    }
}
