import GatewayCore
import X402
import Yams

/// The discovery keys: `discovery:` at the top, and `discoverable`, `input` and `output` on a route
/// (see ``RouteDiscovery``). Schemas and examples are written in YAML (block or JSON-like flow
/// style) and read as JSON: plain `true`/`false`, `null`/`~` and numbers keep their JSON type,
/// everything else is a string (quote a value to keep it one). `${…}` is not expanded in them.
extension YAMLReader {
    /// The largest bazaar declaration a route may carry: it travels in every 402's
    /// `PAYMENT-REQUIRED` header (base64, a third longer), and proxies commonly cap a response
    /// head at 8 KiB.
    static let maxBazaarDeclarationBytes = 4096

    /// `discovery: { manifest: true }`: whether the gateway answers `GET /.well-known/x402` itself.
    func discoveryManifest(_ node: Node) -> Bool {
        guard let m = mapping(node, "discovery", allowed: ["manifest"]) else { return true }
        return m["manifest"].flatMap { bool($0.value, "discovery.manifest") } ?? true
    }

    /// A route's `discoverable`, `input` and `output`. Only priced routes have them; `bodyType` only
    /// where the described method takes a body.
    func routeDiscovery(_ m: [String: (key: Node, value: Node)], pattern: RoutePattern, isFree: Bool, mimeType: String) -> RouteDiscovery {
        var discovery = RouteDiscovery()
        let keys = ["discoverable", "input", "output"].compactMap { m[$0] }
        if isFree {
            if let first = keys.first {
                error(first.key, "a free route is not listed for discovery: \"\(first.key.scalar?.string ?? "")\" belongs on priced routes")
            }
            return discovery
        }
        if let n = m["discoverable"]?.value, let v = bool(n, "discoverable") { discovery.discoverable = v }
        if let entry = m["input"] { discovery.input = discoveryInput(entry.value, pattern: pattern) }
        if let entry = m["output"] { discovery.output = discoveryOutput(entry.value) }
        if discovery.input != nil || discovery.output != nil {
            guard let method = Bazaar.method(pattern: pattern, input: discovery.input) else {
                let node = (m["input"] ?? m["output"])!.key
                error(node, "input and output describe GET, HEAD, DELETE, POST, PUT and PATCH routes (the bazaar's methods), not \(pattern.method ?? "")")
                return discovery
            }
            let size = (try? HeaderCodec.compactJSON(Bazaar.declaration(
                method: method, discovery: discovery, mimeType: mimeType, routeTemplate: Bazaar.routeTemplate(pattern))))?.count ?? 0
            if size > Self.maxBazaarDeclarationBytes {
                error((m["input"] ?? m["output"])!.key,
                      "input and output make a bazaar declaration of \(size) bytes, which every 402 carries in its PAYMENT-REQUIRED header: keep it under \(Self.maxBazaarDeclarationBytes) bytes (shorter schemas and examples)")
            }
        }
        return discovery
    }

    /// `input: { bodyType: json | form-data | text, schema: {…}, example: … }`.
    func discoveryInput(_ node: Node, pattern: RoutePattern) -> RouteDiscovery.Input? {
        guard let m = mapping(node, "input", allowed: ["bodyType", "schema", "example"]) else { return nil }
        var input = RouteDiscovery.Input()
        var ok = true
        if let n = m["bodyType"]?.value, let s = string(n, "input.bodyType") {
            if let type = RouteDiscovery.BodyType(rawValue: s) { input.bodyType = type } else {
                error(n, "input.bodyType must be json, form-data or text, not \"\(s)\"")
                ok = false
            }
            if let method = pattern.method, !Bazaar.bodyMethods.contains(method) {
                error(m["bodyType"]!.key, "input.bodyType describes a request body: \(method) routes take query parameters (give bodyType on POST, PUT or PATCH routes)")
                ok = false
            }
        }
        let takesBody = input.bodyType != nil || pattern.method.map(Bazaar.bodyMethods.contains) == true
        if let n = m["schema"]?.value {
            if let schema = jsonSchema(n, "input.schema") {
                if !takesBody, case .object(let fields) = schema, let type = fields["type"], type != .string("object") {
                    error(n, "input.schema describes the query parameters, an object: its type must be \"object\"")
                    ok = false
                } else {
                    input.schema = schema
                }
            } else {
                ok = false
            }
        }
        if let n = m["example"]?.value {
            if let example = jsonValue(n, "input.example") {
                switch example {
                case .object: input.example = example
                case .string where input.bodyType == .text: input.example = example
                default:
                    error(n, takesBody ? "input.example must be a mapping (an example body; a string only with bodyType: text)"
                                       : "input.example must be a mapping of query parameters")
                    ok = false
                }
            } else {
                ok = false
            }
        }
        return ok ? input : nil
    }

    /// `output: { schema: {…}, example: … }`.
    func discoveryOutput(_ node: Node) -> RouteDiscovery.Output? {
        guard let m = mapping(node, "output", allowed: ["schema", "example"]) else { return nil }
        var output = RouteDiscovery.Output()
        var ok = true
        if let n = m["schema"]?.value {
            if let schema = jsonSchema(n, "output.schema") { output.schema = schema } else { ok = false }
        }
        if let n = m["example"]?.value {
            if let example = jsonValue(n, "output.example") { output.example = example } else { ok = false }
        }
        return ok ? output : nil
    }

    /// A JSON Schema: a mapping whose `$ref` and `$id` values, wherever they are, point into the same
    /// document (`#…`). Facilitators refuse any other reference (the SDK treats it as an attempt to
    /// make them fetch a URL or read a file).
    func jsonSchema(_ node: Node, _ what: String) -> JSONValue? {
        guard node.mapping != nil else {
            error(node, "\(what) must be a JSON Schema written as a mapping, e.g. { type: object, properties: { city: { type: string } } }")
            return nil
        }
        guard let value = jsonValue(node, what) else { return nil }
        var ok = true
        func scan(_ node: Node) {
            if let mapping = node.mapping {
                for (key, value) in mapping {
                    if let name = key.scalar?.string, name == "$ref" || name == "$id", !(value.scalar?.string.hasPrefix("#") ?? false) {
                        error(value, "\(what): \(name) must point into the schema itself (\"#/$defs/…\"): facilitators refuse schemas that refer to other documents")
                        ok = false
                    }
                    scan(value)
                }
            } else if let sequence = node.sequence {
                sequence.forEach(scan)
            }
        }
        scan(node)
        return ok ? value : nil
    }

    /// The YAML value as JSON (see the type's note on scalars).
    func jsonValue(_ node: Node, _ what: String) -> JSONValue? {
        switch node {
        case .scalar(let scalar):
            guard scalar.style == .plain else { return .string(scalar.string) }
            let text = scalar.string
            switch text {
            case "true", "True", "TRUE": return .bool(true)
            case "false", "False", "FALSE": return .bool(false)
            case "", "~", "null", "Null", "NULL": return .null
            default: return Self.isJSONNumber(text) ? .number(text) : .string(text)
            }
        case .sequence(let sequence):
            var items: [JSONValue] = []
            for item in sequence {
                guard let value = jsonValue(item, what) else { return nil }
                items.append(value)
            }
            return .array(items)
        case .mapping(let mapping):
            var fields: [String: JSONValue] = [:]
            for (key, value) in mapping {
                guard case .scalar(let name) = key else {
                    error(key, "\(what): keys must be plain names")
                    return nil
                }
                guard let v = jsonValue(value, what) else { return nil }
                fields[name.string] = v
            }
            return .object(fields)
        case .alias:
            error(node, "\(what): YAML aliases are not supported here")
            return nil
        }
    }

    /// JSON's number grammar (RFC 8259 §6).
    static func isJSONNumber(_ text: String) -> Bool {
        var bytes = Substring(text).utf8[...]
        func digits() -> Int {
            let n = bytes.prefix { $0 >= 0x30 && $0 <= 0x39 }.count
            bytes = bytes.dropFirst(n)
            return n
        }
        if bytes.first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
        if bytes.first == UInt8(ascii: "0") { bytes = bytes.dropFirst() } else if digits() == 0 { return false }
        if bytes.first == UInt8(ascii: ".") {
            bytes = bytes.dropFirst()
            if digits() == 0 { return false }
        }
        if bytes.first == UInt8(ascii: "e") || bytes.first == UInt8(ascii: "E") {
            bytes = bytes.dropFirst()
            if bytes.first == UInt8(ascii: "+") || bytes.first == UInt8(ascii: "-") { bytes = bytes.dropFirst() }
            if digits() == 0 { return false }
        }
        return bytes.isEmpty
    }
}
