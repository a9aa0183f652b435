import BigInt
import Foundation
import GatewayCore
import X402
import X402Crypto
import Yams

/// Reads `gateway.yaml` into a validated ``GatewayConfig``. Every problem is reported, each as
/// `file:line:column: message`; nothing is half-applied.
public enum ConfigLoader {
    /// Loads and validates a file. `environment` supplies `${NAME}` values.
    public static func load(path: String, environment: [String: String]) throws(ConfigErrors) -> GatewayConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigErrors([ConfigDiagnostic(SourceLocation(file: path, line: 1, column: 1), "cannot read file: \(error.localizedDescription)")])
        }
        return try parse(yaml: text, file: path, environment: environment)
    }

    public static func parse(yaml: String, file: String, environment: [String: String]) throws(ConfigErrors) -> GatewayConfig {
        let reader = YAMLReader(file: file, environment: environment)
        let root: Node
        do {
            // The basic resolver: the reader types every value itself (`bool`, `int`, durations…),
            // and resolving each scalar's implicit tag with Yams's regular expressions was most of
            // the parse time of a large route list.
            guard let node = try Yams.compose(yaml: yaml, .basic) else {
                throw ConfigErrors([ConfigDiagnostic(reader.location(nil), "configuration file is empty")])
            }
            root = node
        } catch let error as ConfigErrors {
            throw error
        } catch {
            throw ConfigErrors([reader.diagnostic(forYAMLError: error)])
        }
        let config = reader.gatewayConfig(root)
        if !reader.diagnostics.isEmpty || config == nil {
            throw ConfigErrors(reader.diagnostics.sorted { ($0.location.line, $0.location.column) < ($1.location.line, $1.location.column) })
        }
        return config!
    }
}

/// Walks the YAML node tree, collecting diagnostics instead of stopping at the first one.
final class YAMLReader {
    let file: String
    let environment: [String: String]
    var diagnostics: [ConfigDiagnostic] = []
    /// Route ids given with `id:` (derived ids are the match text).
    var explicitIds: Set<String> = []

    init(file: String, environment: [String: String]) {
        self.file = file
        self.environment = environment
    }

    func location(_ node: Node?) -> SourceLocation {
        let mark = node?.mark
        return SourceLocation(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1)
    }

    func error(_ node: Node?, _ message: String) {
        diagnostics.append(ConfigDiagnostic(location(node), message))
    }

    func diagnostic(forYAMLError error: any Error) -> ConfigDiagnostic {
        if let yamlError = error as? YamlError {
            switch yamlError {
            case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
                 .composer(let context, let problem, let mark, _):
                let what = context.map { "\(problem) (\($0.text))" } ?? problem
                return ConfigDiagnostic(SourceLocation(file: file, line: mark.line, column: mark.column), "invalid YAML: \(what)")
            case .duplicatedKeysInMapping(let duplicates, let context):
                return ConfigDiagnostic(
                    SourceLocation(file: file, line: context.mark.line, column: context.mark.column),
                    "duplicate key \(duplicates.map { "\"\($0)\"" }.joined(separator: ", ")) in mapping")
            default:
                return ConfigDiagnostic(location(nil), "invalid YAML: \(yamlError)")
            }
        }
        return ConfigDiagnostic(location(nil), "invalid YAML: \(error)")
    }

    // MARK: Generic accessors

    /// Mapping entries keyed by string, reporting unknown keys against `allowed`.
    func mapping(_ node: Node, _ what: String, allowed: [String]) -> [String: (key: Node, value: Node)]? {
        guard let mapping = node.mapping else {
            error(node, "\(what) must be a mapping")
            return nil
        }
        var out: [String: (key: Node, value: Node)] = [:]
        for (key, value) in mapping {
            guard let name = key.scalar?.string else {
                error(key, "\(what) keys must be plain names")
                continue
            }
            if !allowed.contains(name) {
                let hint = closest(name, in: allowed).map { " (did you mean \"\($0)\"?)" } ?? ""
                error(key, "unknown key \"\(name)\" in \(what)\(hint)")
                continue
            }
            out[name] = (key, value)
        }
        return out
    }

    /// A scalar string with `${NAME}` expanded.
    func string(_ node: Node, _ what: String) -> String? {
        guard let scalar = node.scalar else {
            error(node, "\(what) must be a single value")
            return nil
        }
        return expand(scalar.string, node)
    }

    func expand(_ text: String, _ node: Node) -> String? {
        guard text.contains("${") else { return text }
        var out = ""
        var rest = Substring(text)
        var ok = true
        while let start = rest.range(of: "${") {
            out += rest[..<start.lowerBound]
            guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                error(node, "unterminated \"${\" in \"\(text)\"")
                return nil
            }
            let name = String(rest[start.upperBound..<end])
            if let value = environment[name] {
                out += value
            } else {
                error(node, "environment variable \(name) is not set")
                ok = false
            }
            rest = rest[rest.index(after: end)...]
        }
        out += rest
        return ok ? out : nil
    }

    func bool(_ node: Node, _ what: String) -> Bool? {
        guard let s = string(node, what) else { return nil }
        switch s {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default:
            error(node, "\(what) must be true or false, not \"\(s)\"")
            return nil
        }
    }

    func int(_ node: Node, _ what: String, range: ClosedRange<Int>) -> Int? {
        guard let s = string(node, what) else { return nil }
        guard let v = Int(s), range.contains(v) else {
            error(node, "\(what) must be a whole number between \(range.lowerBound) and \(range.upperBound), not \"\(s)\"")
            return nil
        }
        return v
    }

    /// A bound that can be switched off: `off` (`.some(nil)`) or a whole number in `range`; nil
    /// after an error.
    func bound(_ node: Node, _ what: String, unit: String, range: ClosedRange<Int>) -> Int?? {
        guard let text = string(node, what) else { return nil }
        if text == "off" { return .some(nil) }
        guard let v = Int(text), range.contains(v) else {
            error(node, "\(what) must be off or a whole number of \(unit) between \(range.lowerBound) and \(range.upperBound), not \"\(text)\"")
            return nil
        }
        return .some(v)
    }

    /// `250ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
    func duration(_ node: Node, _ what: String) -> Duration? {
        guard let s = string(node, what) else { return nil }
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        var number = Substring(s)
        var factor: Int64 = 1000
        for (suffix, f) in units where s.hasSuffix(suffix) {
            number = s.dropLast(suffix.count)
            factor = f
            break
        }
        guard let n = Int64(number), n > 0, n <= 86_400_000 / factor else {
            error(node, "\(what) must be a positive duration like \"10s\", \"250ms\" or \"2m\", not \"\(s)\"")
            return nil
        }
        return .milliseconds(n * factor)
    }

    /// `16KiB`, `1MiB`, `1GiB` or a bare number of bytes.
    func byteSize(_ node: Node, _ what: String) -> Int? {
        guard let s = string(node, what) else { return nil }
        let units: [(String, Int)] = [("KiB", 1024), ("MiB", 1024 * 1024), ("GiB", 1024 * 1024 * 1024), ("KB", 1000), ("MB", 1_000_000), ("B", 1)]
        var number = Substring(s)
        var factor = 1
        for (suffix, f) in units where s.hasSuffix(suffix) {
            number = s.dropLast(suffix.count)
            factor = f
            break
        }
        guard let n = Int(number.trimmingCharacters(in: .whitespaces)), n > 0, n <= Int(Int32.max) / factor * 4 else {
            error(node, "\(what) must be a size like \"16KiB\", \"1MiB\" or a number of bytes, not \"\(s)\"")
            return nil
        }
        return n * factor
    }

    func stringMap(_ node: Node, _ what: String) -> [(name: String, value: String)]? {
        guard let mapping = node.mapping else {
            error(node, "\(what) must be a mapping of names to values")
            return nil
        }
        var out: [(String, String)] = []
        for (key, value) in mapping {
            guard let name = key.scalar?.string, !name.isEmpty else {
                error(key, "\(what) names must be plain strings")
                continue
            }
            if let v = string(value, "\(what).\(name)") { out.append((name, v)) }
        }
        return out
    }

    func address(_ node: Node, _ what: String) -> String? {
        guard let s = string(node, what) else { return nil }
        switch EIP55.check(s) {
        case .valid(let checksummed): return checksummed
        case .malformed:
            error(node, "\(what) \"\(s)\" is not an EVM address (0x followed by 40 hex digits)")
        case .badChecksum(let expected):
            error(node, "\(what) \"\(s)\" has a bad EIP-55 checksum (expected \(expected)); check for a typo")
        }
        return nil
    }

    func network(_ node: Node, _ what: String) -> NetworkInfo? {
        guard let s = string(node, what) else { return nil }
        guard let network = Networks.resolve(s) else {
            error(node, "unknown network \"\(s)\" in \(what): use a CAIP-2 id like \"eip155:8453\" or a known name like \"base\"")
            return nil
        }
        return network
    }

    private func closest(_ name: String, in candidates: [String]) -> String? {
        let scored = candidates.map { ($0, editDistance(name.lowercased(), $0.lowercased())) }
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= max(2, name.count / 3) else { return nil }
        return best.0
    }

    private func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
