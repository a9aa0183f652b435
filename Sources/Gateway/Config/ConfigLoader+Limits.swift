import GatewayCore
import Yams

/// `rateLimit` and `freePerClient` on routes, and the top-level `clientLimits`.
extension YAMLReader {
    /// `rateLimit: { requests: 10, per: 1s, burst: 20 }` (`burst` defaults to `requests`).
    func rateLimit(_ node: Node) -> RateLimit? {
        guard let m = mapping(node, "rateLimit", allowed: ["requests", "per", "burst"]) else { return nil }
        guard let requestsNode = m["requests"]?.value, let perNode = m["per"]?.value else {
            error(node, "rateLimit needs \"requests\" and \"per\", e.g. { requests: 10, per: 1s, burst: 20 }")
            return nil
        }
        let requests = int(requestsNode, "rateLimit.requests", range: 1...1_000_000)
        let per = limitDuration(perNode, "rateLimit.per", wholeSeconds: false)
        let burst = m["burst"].flatMap { int($0.value, "rateLimit.burst", range: 1...1_000_000) }
        guard let requests, let per, m["burst"] == nil || burst != nil else { return nil }
        let limit = RateLimit(requests: requests, per: .milliseconds(per), burst: burst)
        if !limit.refillsInTime {
            error(node, "rateLimit takes more than 366 days to refill its burst (burst × per / requests): raise requests or lower burst")
            return nil
        }
        return limit
    }

    /// `freePerClient: { requests: 3, per: 1d }`.
    func freeAllowance(_ node: Node) -> FreeAllowance? {
        guard let m = mapping(node, "freePerClient", allowed: ["requests", "per"]) else { return nil }
        guard let requestsNode = m["requests"]?.value, let perNode = m["per"]?.value else {
            error(node, "freePerClient needs \"requests\" and \"per\", e.g. { requests: 3, per: 1d }")
            return nil
        }
        let requests = int(requestsNode, "freePerClient.requests", range: 1...1_000_000)
        let per = limitDuration(perNode, "freePerClient.per", wholeSeconds: true)
        guard let requests, let per else { return nil }
        return FreeAllowance(requests: requests, per: UInt64(per / 1000))
    }

    /// `clientLimits: { ipv4Prefix: 32, ipv6Prefix: 64, maxKeys: 100000, sync: 500ms }`.
    func clientLimitsConfig(_ node: Node) -> ClientLimitsConfig {
        var config = ClientLimitsConfig()
        guard let m = mapping(node, "clientLimits", allowed: ["ipv4Prefix", "ipv6Prefix", "maxKeys", "sync"]) else { return config }
        if let n = m["ipv4Prefix"]?.value, let v = int(n, "clientLimits.ipv4Prefix", range: 8...32) { config.ipv4Prefix = v }
        if let n = m["ipv6Prefix"]?.value, let v = int(n, "clientLimits.ipv6Prefix", range: 16...128) { config.ipv6Prefix = v }
        if let n = m["maxKeys"]?.value, let v = int(n, "clientLimits.maxKeys", range: 1000...100_000_000) { config.maxKeys = v }
        if let n = m["sync"]?.value, let v = duration(n, "clientLimits.sync") {
            if v < .milliseconds(50) || v > .seconds(60) { error(n, "clientLimits.sync must be between 50ms and 1m") } else { config.sync = v }
        }
        return config
    }

    /// A window: `100ms`, `1s`, `10m`, `1h`, `1d` or a bare number of seconds, positive and at most
    /// 366 days; in milliseconds. `wholeSeconds`: no fractions of a second (allowance windows).
    func limitDuration(_ node: Node, _ what: String, wholeSeconds: Bool) -> Int64? {
        guard let text = string(node, what) else { return nil }
        let units: [(String, Int64)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
        var number = Substring(text)
        var factor: Int64 = 1000
        for (suffix, f) in units where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            factor = f
            break
        }
        let example = wholeSeconds ? "\"1d\", \"12h\" or \"30s\"" : "\"1s\", \"100ms\", \"1m\" or \"1d\""
        guard let n = Int64(number), n > 0, n <= 366 * 86_400_000 / factor, !wholeSeconds || (n * factor) % 1000 == 0 else {
            error(node, "\(what) must be a positive duration like \(example), at most 366d, not \"\(text)\"")
            return nil
        }
        return n * factor
    }
}
