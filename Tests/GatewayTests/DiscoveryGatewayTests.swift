import Foundation
import Gateway
import GatewayCore
import GatewayTestSupport
import Testing
import X402

let discoveryYAML = """
    listen: 127.0.0.1:0
    payTo: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
    network: eip155:84532
    upstreams:
      api: { url: "{{UPSTREAM}}", timeout: 5s }
    routes:
      - match: "GET /weather"
        price: "$0.01"
        description: Current weather
        mimeType: application/json
        input:
          schema: { properties: { city: { type: string, minLength: 1 } }, required: [city] }
          example: { city: Paris }
        output:
          schema: { type: object, properties: { temp: { type: number } } }
          example: { temp: 12.5, ok: true, note: null }
      - match: "POST /search"
        price: "$0.02"
        input: { bodyType: json, schema: { type: object, properties: { q: { type: string } } } }
      - match: "GET /items/:id"
        price: "$0.01"
        host: api.example.com
      - match: "GET /hidden"
        price: "$0.05"
        discoverable: false
      - match: "/free/*"
        free: true
    unmatched: pass
    """

/// `/.well-known/x402` and the bazaar extension through the real listener.
@Suite("Discovery through the live gateway")
struct DiscoveryGatewayTests {
    func json(_ bytes: [UInt8]) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: Data(bytes)) }

    @Test("GET /.well-known/x402 answers the manifest for the origin asked: priced discoverable routes only, host routes at their host, never forwarded")
    func manifestOverSocket() async throws {
        try await TestHarness.withGateway(yaml: discoveryYAML) { gw in
            let r = try await gw.get("/.well-known/x402")
            #expect(r.status == 200)
            #expect(r.header("Content-Type") == "application/json")
            #expect(r.header("Access-Control-Allow-Origin") == "*")
            #expect(r.header("Cache-Control") == "public, max-age=60")
            let manifest = try json(r.body)
            #expect(manifest["x402Version"] == .number("2"))
            guard case .array(let resources) = manifest["resources"] else { Issue.record("no resources"); return }
            #expect(resources.map { $0["url"] } == [.string("http://gateway.test/weather"), .string("http://gateway.test/search")])
            #expect(resources.map { $0["method"] } == [.string("GET"), .string("POST")])
            #expect(resources[0]["input"]?["queryParams"]?["required"] == .array([.string("city")]))
            #expect(resources[0]["output"]?["example"] == .object(["temp": .number("12.5"), "ok": .bool(true), "note": .null]))

            // The same origin named api.example.com also lists its host's route.
            let atHost = try await gw.send("GET /.well-known/x402 HTTP/1.1\r\nHost: api.example.com:8402\r\nConnection: close\r\n\r\n")
            guard case .array(let hostResources) = try json(atHost.body)["resources"] else { Issue.record("no resources"); return }
            #expect(hostResources.map { $0["url"] }.last == .string("http://api.example.com:8402/items/:id"))

            // HEAD: same head, no body.
            let head = try await gw.get("/.well-known/x402", method: "HEAD")
            #expect(head.status == 200 && head.body.isEmpty && head.header("Content-Length") == String(r.body.count))
            #expect(gw.upstream.count == 0)
        }
    }

    @Test("the 402 of a described route carries the bazaar declaration from its YAML; a hidden route's carries none")
    func bazaarOverSocket() async throws {
        try await TestHarness.withGateway(yaml: discoveryYAML) { gw in
            let r = try await gw.get("/weather?city=Oslo")
            #expect(r.status == 402)
            let header = try #require(r.header("PAYMENT-REQUIRED"))
            let v2 = try JSONDecoder().decode(PaymentRequired.self, from: Data(try #require(Base64.decode(header))))
            let bazaar = try #require(v2.extensions?["bazaar"])
            #expect(bazaar["info"]?["input"] == .object(["type": .string("http"), "method": .string("GET"), "queryParams": .object(["city": .string("Paris")])]))
            #expect(bazaar["schema"]?["properties"]?["input"]?["properties"]?["queryParams"]?["properties"]?["city"]
                == .object(["type": .string("string"), "minLength": .number("1")]))

            let hidden = try await gw.get("/hidden")
            let hiddenHeader = try #require(hidden.header("PAYMENT-REQUIRED"))
            let hiddenV2 = try JSONDecoder().decode(PaymentRequired.self, from: Data(try #require(Base64.decode(hiddenHeader))))
            #expect(hiddenV2.extensions == nil)
        }
    }

    @Test("with discovery.manifest: false the path is routed like any other (here: passed to the upstream)")
    func manifestOff() async throws {
        try await TestHarness.withGateway(yaml: "discovery: { manifest: false }\n" + discoveryYAML) { gw in
            let r = try await gw.get("/.well-known/x402")
            #expect(gw.upstream.count == 1)
            #expect(r.status != 402)
        }
    }

    // MARK: check

    @Test("check reports bad discovery keys with their line and column", arguments: [
        ("  - { match: /f, free: true, discoverable: false }\n",
         "g.yaml:5:30: a free route is not listed for discovery: \"discoverable\" belongs on priced routes"),
        ("  - { match: GET /w, price: $0.01, input: { bodyType: json } }\n",
         "g.yaml:5:45: input.bodyType describes a request body: GET routes take query parameters (give bodyType on POST, PUT or PATCH routes)"),
        ("  - { match: POST /w, price: $0.01, input: { bodyType: xml } }\n",
         "g.yaml:5:56: input.bodyType must be json, form-data or text, not \"xml\""),
        ("  - { match: GET /w, price: $0.01, input: { schema: { $ref: \"https://evil.example/s.json\" } } }\n",
         "g.yaml:5:61: input.schema: $ref must point into the schema itself (\"#/$defs/…\"): facilitators refuse schemas that refer to other documents"),
        ("  - { match: GET /w, price: $0.01, output: { schema: { items: { $id: \"other\" } } } }\n",
         "g.yaml:5:70: output.schema: $id must point into the schema itself (\"#/$defs/…\"): facilitators refuse schemas that refer to other documents"),
        ("  - { match: GET /w, price: $0.01, input: { schema: [a, b] } }\n",
         "g.yaml:5:53: input.schema must be a JSON Schema written as a mapping, e.g. { type: object, properties: { city: { type: string } } }"),
        ("  - { match: GET /w, price: $0.01, input: { schema: { type: string } } }\n",
         "g.yaml:5:53: input.schema describes the query parameters, an object: its type must be \"object\""),
        ("  - { match: GET /w, price: $0.01, input: { example: 3 } }\n",
         "g.yaml:5:54: input.example must be a mapping of query parameters"),
        ("  - { match: POST /w, price: $0.01, input: { example: [1] } }\n",
         "g.yaml:5:55: input.example must be a mapping (an example body; a string only with bodyType: text)"),
        ("  - { match: GET /w, price: $0.01, input: { shema: {} } }\n",
         "g.yaml:5:45: unknown key \"shema\" in input (did you mean \"schema\"?)"),
        ("  - { match: OPTIONS /w, price: $0.01, output: { example: 1 } }\n",
         "g.yaml:5:40: input and output describe GET, HEAD, DELETE, POST, PUT and PATCH routes (the bazaar's methods), not OPTIONS"),
        ("  - { match: GET /w, price: $0.01, discoverable: maybe }\n",
         "g.yaml:5:50: discoverable must be true or false, not \"maybe\""),
        ("discovery: { manifest: sometimes }\n",
         "g.yaml:1:24: discovery.manifest must be true or false, not \"sometimes\""),
    ])
    func checkDiagnostics(lines: String, expected: String) {
        let yaml = lines.hasPrefix("discovery") ? lines + ConfigProblems.head + "  - { match: /a, price: $0.01 }\n" : ConfigProblems.head + lines
        #expect(ConfigProblems.of(yaml) == expected)
    }

    @Test("check refuses input and output too large to travel in every 402 header, at the input key")
    func tooLarge() {
        let properties = (0..<200).map { "p\($0): { type: string, description: \"a long description of parameter \($0)\" }" }.joined(separator: ", ")
        let problems = ConfigProblems.of(ConfigProblems.head + "  - match: GET /w\n    price: $0.01\n    input: { schema: { properties: { \(properties) } } }\n")
        #expect(problems.hasPrefix("g.yaml:7:5: input and output make a bazaar declaration of "))
        #expect(problems.hasSuffix("every 402 carries in its PAYMENT-REQUIRED header: keep it under 4096 bytes (shorter schemas and examples)"))
    }

    @Test("YAML scalars become JSON: plain booleans, nulls and numbers keep their type, quoted ones and everything else are strings")
    func scalarTyping() async throws {
        let yaml = ConfigProblems.head + """
              - match: GET /w
                price: $0.01
                output:
                  example: { a: true, b: "true", c: 12, d: "12", e: -0.5e3, f: 1.2.3, g: ~, h: yes, i: [1, x] }

            """
        let config = try ConfigLoader.parse(yaml: yaml, file: "g.yaml", environment: [:])
        #expect(config.routes[0].discovery.output?.example == .object([
            "a": .bool(true), "b": .string("true"), "c": .number("12"), "d": .string("12"), "e": .number("-0.5e3"),
            "f": .string("1.2.3"), "g": .null, "h": .string("yes"), "i": .array([.number("1"), .string("x")]),
        ]))
    }
}
