import X402

/// Writes a `JSONNode` back as compact JSON (members in their order, numbers as their literal
/// text), for the "parse, write, parse again gives the same tree" property.
public enum JSONNodeWriter {
    public static func write(_ node: JSONNode) -> [UInt8] {
        var out: [UInt8] = []
        write(node, into: &out)
        return out
    }

    private static func write(_ node: JSONNode, into out: inout [UInt8]) {
        switch node {
        case .null: out += Array("null".utf8)
        case .bool(let b): out += Array((b ? "true" : "false").utf8)
        case .number(let text): out += Array(text.utf8)
        case .string(let s): out += Array(JSONString.quoted(s).utf8)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (n, element) in elements.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                write(element, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (n, member) in members.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                out += Array(JSONString.quoted(member.key).utf8)
                out.append(UInt8(ascii: ":"))
                write(member.value, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }
}
