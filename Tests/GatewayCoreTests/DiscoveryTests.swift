import BigInt
import Foundation
import GatewayCore
import Testing
import X402

/// The bazaar extension of 402s and the `/.well-known/x402` manifest, built from route tables (no
/// sockets). Field names and layout follow x402's bazaar spec and the Python SDK 2.25's
/// `declare_discovery_extension` / `bazaar_resource_server_extension`.
@Suite("Discovery: bazaar declarations and the manifest")
struct DiscoveryTests {
    func priced(_ match: String, host: String? = nil, discovery: RouteDiscovery = RouteDiscovery(), amount: Int = 1000,
                mimeType: String = "") throws -> RouteConfig {
        var r = try route(match, host: host)
        if case .priced(var offers) = r.access {
            offers[0].amount = .init(amount)
            r.access = .priced(offers)
        }
        r.discovery = discovery
        r.mimeType = mimeType
        r.description = "about \(match)"
        return r
    }

    func challenge(_ r: RouteConfig) throws -> PaymentRequired {
        let c = try #require(CompiledRoute(config: r).challenge)
        return try JSONDecoder().decode(PaymentRequired.self, from: Data(c.paymentRequired(resourceURL: "https://h/x")))
    }

    func bazaar(_ r: RouteConfig) throws -> JSONValue? { try challenge(r).extensions?[Bazaar.extensionKey] }

    func v1Input(_ r: RouteConfig) throws -> JSONValue? {
        let c = try #require(CompiledRoute(config: r).challenge)
        let v1 = try JSONDecoder().decode(PaymentRequiredV1.self, from: Data(c.v1Body(resourceURL: "https://h/x")))
        return v1.accepts.first?.outputSchema?["input"]
    }

    static let citySchema: JSONValue = .object([
        "properties": .object(["city": .object(["type": .string("string")])]), "required": .array([.string("city")]),
    ])
    static let weatherSchema: JSONValue = .object(["type": .string("object"), "properties": .object(["temp": .object(["type": .string("number")])])])

    @Test("a GET route's declaration: info.input with type, method and the example query, info.output with its type and example, and the SDK's schema around them")
    func queryDeclaration() throws {
        let r = try priced("GET /weather", discovery: RouteDiscovery(
            input: .init(schema: Self.citySchema, example: .object(["city": .string("Paris")])),
            output: .init(schema: Self.weatherSchema, example: .object(["temp": .number("12.5")]))), mimeType: "application/json")
        let b = try #require(try bazaar(r))
        #expect(b["info"]?["input"] == .object(["type": .string("http"), "method": .string("GET"), "queryParams": .object(["city": .string("Paris")])]))
        #expect(b["info"]?["output"] == .object(["type": .string("json"), "example": .object(["temp": .number("12.5")])]))
        let schema = try #require(b["schema"])
        #expect(schema["$schema"] == .string("https://json-schema.org/draft/2020-12/schema"))
        #expect(schema["required"] == .array([.string("input")]))
        let input = try #require(schema["properties"]?["input"])
        #expect(input["additionalProperties"] == .bool(false))
        #expect(input["required"] == .array([.string("type"), .string("method")]))
        #expect(input["properties"]?["method"] == .object(["type": .string("string"), "enum": .array([.string("GET")])]))
        #expect(input["properties"]?["type"] == .object(["type": .string("string"), "const": .string("http")]))
        // The route's query schema, made an object schema.
        #expect(input["properties"]?["queryParams"] == .object([
            "type": .string("object"), "properties": .object(["city": .object(["type": .string("string")])]),
            "required": .array([.string("city")]),
        ]))
        #expect(schema["properties"]?["output"]?["properties"]?["example"] == Self.weatherSchema)
        #expect(b["routeTemplate"] == nil)
    }

    @Test("body routes declare bodyType and body; a route taking any method is described as POST when its input has a body, else GET", arguments: [
        ("POST /search", RouteDiscovery.BodyType?.some(.json), "POST", "json"),
        ("PUT /doc", nil, "PUT", "json"),
        ("PATCH /doc", .some(.formData), "PATCH", "form-data"),
        ("/anything", .some(.text), "POST", "text"),
    ])
    func bodyDeclaration(match: String, bodyType: RouteDiscovery.BodyType?, method: String, declared: String) throws {
        let example: JSONValue = bodyType == .text ? .string("hello") : .object(["q": .string("x")])
        let r = try priced(match, discovery: RouteDiscovery(input: .init(bodyType: bodyType, schema: .object(["type": .string("object")]), example: example)))
        let b = try #require(try bazaar(r))
        #expect(b["info"]?["input"] == .object([
            "type": .string("http"), "method": .string(method), "bodyType": .string(declared), "body": example,
        ]))
        let input = try #require(b["schema"]?["properties"]?["input"])
        #expect(input["required"] == .array([.string("type"), .string("method"), .string("bodyType"), .string("body")]))
        #expect(input["properties"]?["body"] == .object(["type": .string("object")]))
        #expect(input["properties"]?["bodyType"]?["enum"] == .array([.string("json"), .string("form-data"), .string("text")]))
        #expect(input["properties"]?["queryParams"] == nil)
    }

    @Test("a route without a method or input is described as GET, with an empty object schema for the query and output type json")
    func defaults() throws {
        let b = try #require(try bazaar(try priced("/report")))
        #expect(b["info"] == .object([
            "input": .object(["type": .string("http"), "method": .string("GET")]), "output": .object(["type": .string("json")]),
        ]))
        #expect(b["schema"]?["properties"]?["input"]?["properties"]?["queryParams"] == .object(["type": .string("object")]))
    }

    @Test("info.output.type follows the route's MIME type", arguments: [
        ("", "json"), ("application/json", "json"), ("application/problem+json; charset=utf-8", "json"), ("text/csv", "text"),
        ("image/png", "image/png"),
    ])
    func outputType(mimeType: String, type: String) throws {
        let b = try #require(try bazaar(try priced("GET /x", mimeType: mimeType)))
        #expect(b["info"]?["output"]?["type"] == .string(type))
    }

    @Test("routes with parameters or whole-segment wildcards carry routeTemplate (wildcards as :var1, :var2) and admit pathParams", arguments: [
        ("GET /items/:id", "/items/:id"),
        ("GET /users/:user/orders/:order", "/users/:user/orders/:order"),
        ("GET /api/*", "/api/:var1"),
        ("GET /a/*/b/*", "/a/:var1/b/:var2"),
        ("*", "/:var1"),
    ])
    func routeTemplates(match: String, template: String) throws {
        let b = try #require(try bazaar(try priced(match)))
        #expect(b["routeTemplate"] == .string(template))
        #expect(b["schema"]?["properties"]?["input"]?["properties"]?["pathParams"] == .object(["type": .string("object")]))
    }

    @Test("a wildcard inside a segment cannot be written as a template: no routeTemplate, listed with the pattern as is")
    func untemplatable() throws {
        let r = try priced("GET /files/*.pdf")
        let b = try #require(try bazaar(r))
        #expect(b["routeTemplate"] == nil)
        #expect(b["schema"]?["properties"]?["input"]?["properties"]?["pathParams"] == nil)
        #expect(Bazaar.listedPath(r.pattern) == "/files/*.pdf")
    }

    @Test("two routes of one shape share the encoding yet each gets its own route template")
    func sharedTemplates() throws {
        let table = RouteTable(routes: [try priced("GET /a/:id"), try priced("GET /b/:id"), try priced("GET /c")])
        let templates = try table.routes.map { route -> JSONValue? in
            let c = try #require(route.challenge)
            let v2 = try JSONDecoder().decode(PaymentRequired.self, from: Data(c.paymentRequired(resourceURL: "u")))
            return v2.extensions?[Bazaar.extensionKey]?["routeTemplate"]
        }
        #expect(templates == [.string("/a/:id"), .string("/b/:id"), nil])
    }

    @Test("every key of info.input is a property of the schema's input (which forbids others) and every required one is there", arguments: [
        "GET /w", "POST /w", "DELETE /items/:id", "PUT /x/*", "HEAD /h", "/any",
    ])
    func infoFitsSchema(match: String) throws {
        let b = try #require(try bazaar(try priced(match, discovery: RouteDiscovery(input: .init(example: .object(["k": .string("v")]))))))
        guard case .object(let info) = b["info"]?["input"], case .object(let properties) = b["schema"]?["properties"]?["input"]?["properties"],
              case .array(let required) = b["schema"]?["properties"]?["input"]?["required"]
        else { Issue.record("no input"); return }
        #expect(Set(info.keys).isSubset(of: Set(properties.keys)))
        #expect(required.allSatisfy { info[$0.stringValue ?? ""] != nil })
    }

    @Test("discoverable: false leaves the bazaar out of the 402 and says discoverable: false in the v1 body; discoverable routes say true with their method")
    func notDiscoverable() throws {
        let hidden = try priced("GET /hidden", discovery: RouteDiscovery(discoverable: false))
        #expect(try challenge(hidden).extensions == nil)
        #expect(try v1Input(hidden)?["discoverable"] == .bool(false))
        let shown = try priced("/shown")
        #expect(try v1Input(shown)?["discoverable"] == .bool(true))
        #expect(try v1Input(shown)?["method"] == .string("GET"))
    }

    @Test("a method the bazaar cannot describe gets no declaration and no manifest entry")
    func undescribableMethod() throws {
        let r = try priced("OPTIONS /x")
        #expect(try challenge(r).extensions == nil)
        let manifest = DiscoveryManifest(routes: RouteTable(routes: [r]).routes)
        let json = try JSONDecoder().decode(JSONValue.self, from: Data(manifest.render(base: "https://h", host: "h")))
        #expect(json["resources"] == .array([]))
    }

    @Test("the bazaar sits beside the payment-identifier declaration")
    func besidePaymentIdentifier() throws {
        var r = try priced("GET /w")
        r.paymentIdentifier = .optional
        let extensions = try #require(try challenge(r).extensions)
        #expect(Set(extensions.keys) == [Bazaar.extensionKey, PaymentIdentifier.extensionKey])
    }

    // MARK: The manifest

    func manifest(_ routes: [RouteConfig], base: String = "https://api.example.com", host: String = "api.example.com") throws -> JSONValue {
        let m = DiscoveryManifest(routes: RouteTable(routes: routes).routes)
        return try JSONDecoder().decode(JSONValue.self, from: Data(m.render(base: base, host: host)))
    }

    func resources(_ json: JSONValue) -> [JSONValue] {
        if case .array(let items) = json["resources"] { return items }
        return []
    }

    @Test("the manifest lists priced, discoverable routes with their URL, method, description, MIME type, accepts, input and output; free and hidden routes are absent")
    func manifestEntries() throws {
        let weather = try priced("GET /weather", discovery: RouteDiscovery(
            input: .init(schema: Self.citySchema, example: .object(["city": .string("Paris")])),
            output: .init(schema: Self.weatherSchema, example: .object(["temp": .number("3")]))), mimeType: "application/json")
        let search = try priced("POST /search", discovery: RouteDiscovery(input: .init(bodyType: .json, schema: .object(["type": .string("object")]))),
                                amount: 5000)
        let json = try manifest([
            weather, search, try route("/public/*", free: true), try priced("GET /hidden", discovery: RouteDiscovery(discoverable: false)),
        ])
        #expect(json["x402Version"] == .number("2"))
        #expect(json["kind"] == .string("resource-server"))
        let items = resources(json)
        #expect(items.map { $0["url"] } == [.string("https://api.example.com/weather"), .string("https://api.example.com/search")])
        #expect(items.map { $0["method"] } == [.string("GET"), .string("POST")])
        #expect(items.allSatisfy { $0["type"] == .string("http") })
        #expect(items[0]["description"] == .string("about GET /weather") && items[0]["mimeType"] == .string("application/json"))
        #expect(items[0]["input"] == .object([
            "method": .string("GET"), "example": .object(["city": .string("Paris")]),
            "queryParams": .object([
                "type": .string("object"), "properties": .object(["city": .object(["type": .string("string")])]),
                "required": .array([.string("city")]),
            ]),
        ]))
        #expect(items[0]["output"] == .object([
            "mimeType": .string("application/json"), "schema": Self.weatherSchema, "example": .object(["temp": .number("3")]),
        ]))
        #expect(items[1]["input"] == .object(["method": .string("POST"), "bodyType": .string("json"), "body": .object(["type": .string("object")])]))
        #expect(items[1]["output"] == nil)
        // Each resource's accepts are the route's 402 accepts, exactly.
        for (item, r) in zip(items, [weather, search]) {
            let offered = try challenge(r).accepts
            #expect(item["accepts"] == (try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(offered))))
        }
    }

    @Test("top-level accepts lists each distinct offer of the listed resources once, in order of appearance")
    func manifestAccepts() throws {
        let json = try manifest([try priced("GET /a"), try priced("GET /b", amount: 7), try priced("GET /c"), try priced("GET /h", discovery: RouteDiscovery(discoverable: false), amount: 99)])
        guard case .array(let accepts) = json["accepts"] else { Issue.record("no accepts"); return }
        #expect(accepts.map { $0["amount"] } == [.string("1000"), .string("7")])
    }

    @Test("routes with parameters are listed at their template, wildcards as :varN, with routeTemplate in input")
    func manifestTemplates() throws {
        let items = resources(try manifest([try priced("GET /items/:id"), try priced("GET /api/*"), try priced("GET /files/*.pdf")]))
        #expect(items.map { $0["url"] } == [
            .string("https://api.example.com/items/:id"), .string("https://api.example.com/api/:var1"), .string("https://api.example.com/files/*.pdf"),
        ])
        #expect(items.map { $0["input"]?["routeTemplate"] } == [.string("/items/:id"), .string("/api/:var1"), nil])
    }

    @Test("a host route is listed only at an origin whose host it admits: exact hosts, *.domain for its subdomains")
    func manifestHosts() throws {
        let routes = [try priced("GET /any"), try priced("GET /exact", host: "api.example.com"), try priced("GET /sub", host: "*.example.com")]
        func urls(_ host: String) throws -> [JSONValue?] { resources(try manifest(routes, base: "http://\(host):8402", host: host)).map { $0["url"] } }
        #expect(try urls("api.example.com") == [.string("http://api.example.com:8402/any"), .string("http://api.example.com:8402/exact"),
                                                .string("http://api.example.com:8402/sub")])
        #expect(try urls("eu.example.com") == [.string("http://eu.example.com:8402/any"), .string("http://eu.example.com:8402/sub")])
        #expect(try urls("example.com") == [.string("http://example.com:8402/any")])
        #expect(try urls("other.org") == [.string("http://other.org:8402/any")])
    }

    @Test("a table with nothing discoverable gives an empty manifest that is still well-formed")
    func emptyManifest() throws {
        let json = try manifest([try route("/x", free: true)])
        #expect(json == .object([
            "x402Version": .number("2"), "kind": .string("resource-server"), "accepts": .array([]), "resources": .array([]),
        ]))
    }
}
