// Request-target canonicalisation and route matching.
//
// Input: byte 0 picks the method and the case mode; then lines (LF): up to 6 route lines
// (`[@host ]pattern`, e.g. `@*.example.com GET /api/*`), a `Host` header value, and last the
// request target. Properties:
// - a canonical path is origin-form printable ASCII without `#`, `\`, `;`, empty or dot segments,
//   and with every escape upper-case, needed and not one of the refused ones;
// - canonicalising is idempotent (the canonical path parses to itself), the query is kept as sent;
// - the route index picks the route the first-match scan picks, for the canonical path and for
//   the canonical path with a trailing slash added (routes ignore one).
@testable import GatewayCore
import FuzzSupport

let methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]
let hex: Set<UInt8> = Set(Array("0123456789ABCDEF".utf8))

func checkCanonical(_ path: String, from target: String) {
    let bytes = Array(path.utf8)
    require(bytes.first == UInt8(ascii: "/"), "canonical path \(path) of \(target) does not start with /")
    require(!path.contains("//"), "canonical path \(path) of \(target) has an empty segment")
    for segment in path.split(separator: "/") {
        require(segment != "." && segment != "..", "canonical path \(path) of \(target) has a dot segment")
    }
    var i = 0
    while i < bytes.count {
        let c = bytes[i]
        require((0x21...0x7E).contains(c) && c != UInt8(ascii: "#") && c != UInt8(ascii: "\\") && c != UInt8(ascii: ";")
                    && c != UInt8(ascii: "?"), "canonical path \(path) of \(target) has byte \(c)")
        if c == UInt8(ascii: "%") {
            require(i + 2 < bytes.count && hex.contains(bytes[i + 1]) && hex.contains(bytes[i + 2]),
                    "canonical path \(path) of \(target): escape not upper-case hex")
            let value = UInt8(String(decoding: bytes[(i + 1)...(i + 2)], as: UTF8.self), radix: 16)!
            require(!CanonicalPath.isUnreserved(value), "canonical path \(path) of \(target) keeps an escaped unreserved character")
            require(value >= 0x20 && value != 0x7F && value != UInt8(ascii: "/") && value != UInt8(ascii: "\\")
                        && value != UInt8(ascii: ";"), "canonical path \(path) of \(target) keeps a refused escape")
            i += 3
            continue
        }
        i += 1
    }
    require(!CanonicalPath.hasDoubleEncodedDelimiter(bytes), "canonical path \(path) of \(target) is double-encoded")
}

Fuzzer.run { bytes in
    var input = FuzzInput(bytes)
    let selector = input.byte()
    let method = methods[Int(selector & 0x7F) % methods.count]
    let caseSensitive = selector & 0x80 != 0
    var lines = input.rest().split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map {
        String(decoding: $0, as: UTF8.self)
    }
    let target = lines.popLast() ?? ""
    let hostHeader = lines.popLast() ?? ""

    let canonical: CanonicalPath
    do throws(CanonicalPath.Rejection) {
        canonical = try CanonicalPath.parse(target: target)
    } catch {
        return  // refused: nothing more to check (a pure function refuses it again)
    }
    checkCanonical(canonical.path, from: target)
    // The first `?` byte: a `?` followed by a combining mark is another Character, which
    // `firstIndex(of: "?")` would pass over (the target's own mistake, found at 342 534 executions).
    if let q = target.utf8.firstIndex(of: UInt8(ascii: "?")) {
        let query = String(decoding: target.utf8[target.utf8.index(after: q)...], as: UTF8.self)
        require(canonical.query == query, "query of \(target) not kept: \(canonical.query ?? "nil")")
    } else {
        require(canonical.query == nil, "\(target) has no query, got \(canonical.query ?? "")")
    }
    do {
        let again = try CanonicalPath.parse(target: canonical.pathAndQuery)
        require(again == canonical, "not idempotent: \(target) → \(canonical.pathAndQuery) → \(again.pathAndQuery)")
    } catch {
        require(false, "the canonical form \(canonical.pathAndQuery) of \(target) is refused: \(error)")
    }

    // Route matching on the canonical path: the index against the first-match scan.
    var routes: [(pattern: RoutePattern, host: HostPattern?)] = []
    for line in lines.prefix(6) {
        var text = Substring(line)
        var host: HostPattern?
        if text.hasPrefix("@") {
            let hostText = text.dropFirst().prefix { $0 != " " }
            host = HostPattern(String(hostText))
            text = text.dropFirst(1 + hostText.count)
        }
        guard let pattern = try? RoutePattern(String(text), caseSensitive: caseSensitive) else { continue }
        routes.append((pattern, host))
    }
    guard !routes.isEmpty else { return }
    let index = RouteIndex(routes)
    let host = HostPattern.normalize(hostHeader: hostHeader)
    func scan(_ path: String) -> Int? {
        routes.firstIndex { ($0.host?.matches(host) ?? true) && $0.pattern.admits(method: method) && $0.pattern.matches(path: path) }
    }
    let chosen = index.firstMatch(method: method, path: canonical.path, host: host)
    require(chosen == scan(canonical.path),
            "\(method) \(canonical.path) host \(host): index chose \(chosen.map(String.init) ?? "none"), scan \(scan(canonical.path).map(String.init) ?? "none") in \(routes.map { "\($0.host.map { "@\($0) " } ?? "")\($0.pattern)" })")
    if !canonical.path.hasSuffix("/") {
        let slashed = canonical.path + "/"
        require(index.firstMatch(method: method, path: slashed, host: host) == chosen, "\(slashed) routes unlike \(canonical.path)")
    }
}
