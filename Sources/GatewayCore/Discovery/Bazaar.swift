import X402

/// The `bazaar` discovery extension of a priced route's 402: `extensions.bazaar = { info: { input,
/// output }, schema, routeTemplate? }`, where `schema` is a JSON Schema (draft 2020-12) that `info`
/// validates against. Field names and the schema's layout are those of x402's
/// `specs/extensions/bazaar.md` and of the official Python SDK 2.25 (`x402.extensions.bazaar`:
/// `declare_discovery_extension` builds the declaration, `bazaar_resource_server_extension` adds the
/// method and, for routes with parameters, `routeTemplate` and `pathParams`).
///
/// The SDK fills the method in per request; the gateway declares it per route (``method(pattern:input:)``)
/// and narrows the schema's method enum to it, so the declaration is built once when the route is
/// loaded. The concrete `pathParams` of one request are not filled in: the schema allows them, and
/// `routeTemplate` names them.
public enum Bazaar {
    public static let extensionKey = "bazaar"
    /// Methods described by query parameters, and methods described by a body.
    public static let queryMethods: Set<String> = ["GET", "HEAD", "DELETE"]
    public static let bodyMethods: Set<String> = ["POST", "PUT", "PATCH"]
    static let schemaDialect = "https://json-schema.org/draft/2020-12/schema"

    /// The method a route is described with: its own; for a route that takes any method, `POST` when
    /// its input declares a body, else `GET`. nil for a method the bazaar cannot describe (`OPTIONS`,
    /// `CONNECT`, extension methods): such a route has no declaration and no manifest entry.
    public static func method(pattern: RoutePattern, input: RouteDiscovery.Input?) -> String? {
        guard let method = pattern.method else { return input?.bodyType != nil ? "POST" : "GET" }
        return queryMethods.contains(method) || bodyMethods.contains(method) ? method : nil
    }

    /// The route's path as a catalog lists it: the pattern with each whole-segment `*` written
    /// `:var1`, `:var2`, … (as the SDK normalises wildcard routes); `:name` segments stay as they are.
    public static func listedPath(_ pattern: RoutePattern) -> String {
        guard pattern.path.contains("*") else { return pattern.path }
        var counter = 0
        return pattern.path.split(separator: "/", omittingEmptySubsequences: false).map { segment -> Substring in
            guard segment == "*" else { return segment }
            counter += 1
            return Substring(":var\(counter)")
        }.joined(separator: "/")
    }

    /// `routeTemplate` of a route with parameters or wildcards: its ``listedPath(_:)`` when that fits
    /// the characters facilitators accept (`^/[a-zA-Z0-9_/:.\-~%]+$`); nil for a literal path, and for
    /// a pattern that cannot be written so (a `*` inside a segment, like `/files/*.pdf`).
    public static func routeTemplate(_ pattern: RoutePattern) -> String? {
        guard pattern.pieces.contains(where: { if case .literal = $0 { return false } else { return true } }) else { return nil }
        let template = listedPath(pattern)
        let allowed = template.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || "_/:.-~%".utf8.contains(c)
        }
        return allowed && template.count > 1 ? template : nil
    }

    /// The schema of the query parameters: an object schema (the route's, `type: object` added when
    /// it says no type; the loader refuses any other type).
    static func querySchema(_ schema: JSONValue?) -> JSONValue {
        guard case .object(var fields) = schema else { return .object(["type": .string("object")]) }
        if fields["type"] == nil { fields["type"] = .string("object") }
        return .object(fields)
    }

    /// `info.output.type`: `json` for JSON (or an unset MIME type, as the SDK defaults), `text` for
    /// `text/*`, otherwise the MIME type itself.
    static func outputType(mimeType: String) -> String {
        let lower = mimeType.lowercased()
        if lower.isEmpty || lower.contains("json") { return "json" }
        return lower.hasPrefix("text/") ? "text" : lower
    }

    /// The declaration. `routeTemplate` is the route's (see ``routeTemplate(_:)``); when it is given
    /// the schema also admits `info.input.pathParams`.
    public static func declaration(method: String, discovery: RouteDiscovery, mimeType: String, routeTemplate: String?) -> JSONValue {
        let input = discovery.input
        let takesBody = bodyMethods.contains(method)
        var info: [String: JSONValue] = ["type": .string("http"), "method": .string(method)]
        var properties: [String: JSONValue] = [
            "type": .object(["type": .string("string"), "const": .string("http")]),
            "method": .object(["type": .string("string"), "enum": .array([.string(method)])]),
        ]
        var required: [JSONValue] = [.string("type"), .string("method")]
        if takesBody {
            let bodyType = input?.bodyType ?? .json
            info["bodyType"] = .string(bodyType.rawValue)
            info["body"] = input?.example ?? .object([:])
            properties["bodyType"] = .object([
                "type": .string("string"), "enum": .array(RouteDiscovery.BodyType.allCases.map { .string($0.rawValue) }),
            ])
            properties["body"] = input?.schema ?? .object([:])
            required += [.string("bodyType"), .string("body")]
        } else {
            if let example = input?.example { info["queryParams"] = example }
            properties["queryParams"] = querySchema(input?.schema)
        }
        if routeTemplate != nil { properties["pathParams"] = .object(["type": .string("object")]) }

        var output: [String: JSONValue] = ["type": .string(outputType(mimeType: mimeType))]
        if let example = discovery.output?.example { output["example"] = example }
        let outputSchema: JSONValue = .object([
            "type": .string("object"),
            "properties": .object(["type": .object(["type": .string("string")]), "example": discovery.output?.schema ?? .object([:])]),
            "required": .array([.string("type")]),
        ])

        var declaration: [String: JSONValue] = [
            "info": .object(["input": .object(info), "output": .object(output)]),
            "schema": .object([
                "$schema": .string(schemaDialect),
                "type": .string("object"),
                "properties": .object([
                    "input": .object([
                        "type": .string("object"), "properties": .object(properties), "required": .array(required),
                        "additionalProperties": .bool(false),
                    ]),
                    "output": outputSchema,
                ]),
                "required": .array([.string("input")]),
            ]),
        ]
        if let routeTemplate { declaration["routeTemplate"] = .string(routeTemplate) }
        return .object(declaration)
    }
}
