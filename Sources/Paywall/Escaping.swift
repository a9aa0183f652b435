/// Escaping for each place a value can land in the page. Every interpolated value goes through
/// exactly one of these; nothing is inserted raw.
public enum PaywallEscape {
    /// HTML text and double-quoted attribute values: `& < > " '` become character references.
    public static func html(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count + 16)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\0": out += "\u{FFFD}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Appends `json` (valid JSON text) so it can sit inside a `<script>` element: `<`, `>` and `&`
    /// (which in JSON only occur inside strings) become `\u003c`/`\u003e`/`\u0026`, so neither
    /// `</script>` nor `<!--` can appear; U+2028/U+2029 become `\u2028`/`\u2029`. The result is the
    /// same JSON value.
    public static func appendScriptJSON(_ json: [UInt8], to out: inout [UInt8]) {
        out.reserveCapacity(out.count + json.count + 64)
        var i = 0
        let n = json.count
        while i < n {
            let byte = json[i]
            switch byte {
            case UInt8(ascii: "<"): out.append(contentsOf: lt)
            case UInt8(ascii: ">"): out.append(contentsOf: gt)
            case UInt8(ascii: "&"): out.append(contentsOf: amp)
            case 0xE2 where i + 2 < n && json[i + 1] == 0x80 && (json[i + 2] == 0xA8 || json[i + 2] == 0xA9):
                out.append(contentsOf: json[i + 2] == 0xA8 ? u2028 : u2029)
                i += 2
            default: out.append(byte)
            }
            i += 1
        }
    }

    public static func scriptJSON(_ json: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        appendScriptJSON(json, to: &out)
        return out
    }

    private static let lt = Array(#"\u003c"#.utf8)
    private static let gt = Array(#"\u003e"#.utf8)
    private static let amp = Array(#"\u0026"#.utf8)
    private static let u2028 = Array(#"\u2028"#.utf8)
    private static let u2029 = Array(#"\u2029"#.utf8)

    /// `url` if it is an absolute `http:`/`https:` URL with no characters that need quoting, else nil.
    /// Only such URLs are ever put in an `href`.
    public static func linkURL(_ url: String) -> String? {
        let lower = url.lowercased()
        guard lower.hasPrefix("https://") || lower.hasPrefix("http://") else { return nil }
        guard url.utf8.count <= 2048, url.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }),
              !url.contains("\""), !url.contains("'"), !url.contains("<"), !url.contains(">"), !url.contains("\\"),
              !url.contains("`")
        else { return nil }
        let afterScheme = lower.hasPrefix("https://") ? url.dropFirst(8) : url.dropFirst(7)
        guard let first = afterScheme.first, first != "/" else { return nil }
        return url
    }

    /// Image types a logo may be inlined as (`data:image/<type>;base64,...`).
    static let logoDataTypes = ["png", "jpeg", "gif", "webp", "svg+xml"]

    /// `url` if it is usable as the logo: an `https:` URL (as ``linkURL(_:)``) or a base64
    /// `data:image/...` URL of a known image type; else nil.
    public static func logoURL(_ url: String) -> String? {
        if url.lowercased().hasPrefix("https://") { return linkURL(url) }
        let prefix = "data:image/"
        guard url.hasPrefix(prefix), let semicolon = url.firstIndex(of: ";") else { return nil }
        let type = url[url.index(url.startIndex, offsetBy: prefix.count)..<semicolon]
        guard logoDataTypes.contains(String(type)) else { return nil }
        let rest = url[semicolon...]
        guard rest.hasPrefix(";base64,") else { return nil }
        let payload = rest.dropFirst(";base64,".count)
        guard !payload.isEmpty, payload.utf8.allSatisfy({ c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == UInt8(ascii: "+") || c == UInt8(ascii: "/") || c == UInt8(ascii: "=")
        }) else { return nil }
        return url
    }

    /// `#rgb` or `#rrggbb`, else nil: the only colour syntax that reaches the style sheet.
    public static func hexColor(_ s: String) -> String? {
        guard s.hasPrefix("#"), s.count == 4 || s.count == 7,
              s.dropFirst().allSatisfy({ $0.isASCII && $0.isHexDigit })
        else { return nil }
        return s
    }
}
