import X402

/// Where a dynamic price looks in a request: a query parameter, a header, or a field of the JSON
/// request body (keys and array indexes joined by dots, like `upto.perUnit.field`).
public enum PriceField: Sendable, Hashable, CustomStringConvertible {
    case query(String)
    /// Lower-cased.
    case header(String)
    case body([String])

    /// `query.NAME`, `header.NAME` or `body.PATH`: how the field is named in `key:` lists and logs.
    public var description: String {
        switch self {
        case .query(let name): "query.\(name)"
        case .header(let name): "header.\(name)"
        case .body(let path): "body.\(path.joined(separator: "."))"
        }
    }

    public var readsBody: Bool { if case .body = self { true } else { false } }

    /// A rule's `query: NAME`, `header: NAME` or `body: PATH`; nil when the name is not usable.
    public init?(kind: String, name: String) {
        guard !name.isEmpty, name.utf8.count <= 256 else { return nil }
        switch kind {
        case "query":
            self = .query(name)
        case "header":
            guard name.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: ":") }) else { return nil }
            self = .header(name.lowercased())
        case "body":
            guard let path = JSONFieldPath(name) else { return nil }
            self = .body(path.keys)
        default:
            return nil
        }
    }
}

/// A dotted path into a JSON document: object keys, and array indexes where the value is an array
/// (`usage.total_tokens`, `messages.0.role`). Shared by `upto.perUnit.field` and price rules.
public struct JSONFieldPath: Sendable, Hashable {
    public let keys: [String]

    /// nil when a segment is empty or there are more than 16.
    public init?(_ text: String) {
        let keys = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !keys.contains(where: \.isEmpty), keys.count <= 16 else { return nil }
        self.keys = keys
    }

    public init(keys: [String]) { self.keys = keys }

    /// The value at the path, or nil when some segment is missing.
    public func value(in root: JSONNode) -> JSONNode? {
        var node = root
        for key in keys {
            switch node {
            case .object:
                guard let next = node[key] else { return nil }
                node = next
            case .array(let items):
                guard let index = Int(key), items.indices.contains(index) else { return nil }
                node = items[index]
            default:
                return nil
            }
        }
        return node
    }
}
