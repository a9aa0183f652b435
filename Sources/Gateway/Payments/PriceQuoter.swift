import BigInt
import Foundation
import GatewayCore
import NIOCore
import Synchronization
import X402
import X402Facilitator

/// Asks a route's pricing endpoint for a price and keeps its answers, by route and key values,
/// for `cacheFor` (at most `cacheEntries` of them; the oldest go first). Fails closed: a call that
/// fails, times out, or answers anything but a price within `min…max` gives no price (the request
/// is answered 503, nothing forwarded); failures are not cached.
///
/// The request: `POST` `{"route": ROUTE_ID, "key": {"query.tier": "premium", "body.model": null, …}}`
/// (every field of `key:`, `null` when the request lacks it). The answer: `200` with
/// `{"price": "$0.02"}` or `{"amount": "20000"}` (atomic units, a string or a number).
package final class PriceQuoter: Sendable {
    let endpoint: PricingEndpoint
    private let client: JSONPostClient
    private let cache = Mutex(Cache())

    enum Quote: Sendable, Equatable {
        case price(BigUInt, cached: Bool)
        case failed(String)
    }

    private struct Key: Hashable {
        var route: String
        var values: [String?]
    }

    private struct Cache {
        var entries: [Key: (amount: BigUInt, expires: ContinuousClock.Instant, serial: UInt64)] = [:]
        var serial: UInt64 = 0
    }

    init(endpoint: PricingEndpoint, eventLoopGroup: any EventLoopGroup) {
        self.endpoint = endpoint
        self.client = JSONPostClient(url: endpoint.url, headers: endpoint.headers, timeout: endpoint.timeout, eventLoopGroup: eventLoopGroup)
    }

    /// The price for `request` on the route `route`: from the cache, else from the endpoint.
    func quote(route: String, _ request: PriceRequest) async -> Quote {
        let values = endpoint.key.map { request.value(of: $0) }
        let key = Key(route: route, values: values)
        let now = ContinuousClock.now
        if let hit = cache.withLock({ $0.entries[key] }), hit.expires > now { return .price(hit.amount, cached: true) }
        var document: [String: JSONValue] = [:]
        for (field, value) in zip(endpoint.key, values) { document[field.description] = value.map { .string($0) } ?? .null }
        let body = (try? HeaderCodec.compactJSON(PricingRequest(route: route, key: document))) ?? []
        let answer: [UInt8]
        do {
            answer = try await client.post(body)
        } catch {
            let why = switch error {
            case .timeout: "the pricing endpoint did not answer within price.timeout"
            case .unreachable(let why): "the pricing endpoint is unreachable: \(why)"
            case .httpStatus(let status): "the pricing endpoint answered HTTP \(status)"
            case .malformedResponse: "the pricing endpoint's answer is larger than 64 KiB"
            }
            return .failed(why)
        }
        let amount: BigUInt
        switch Self.amount(in: answer, decimals: endpoint.decimals) {
        case .success(let a): amount = a
        case .failure(let why): return .failed(why.description)
        }
        guard amount >= endpoint.min, amount <= endpoint.max else {
            return .failed("the pricing endpoint answered \(amount) atomic units, outside price.min…price.max (\(endpoint.min)…\(endpoint.max))")
        }
        remember(key, amount, expires: now.advanced(by: endpoint.cacheFor))
        return .price(amount, cached: false)
    }

    private func remember(_ key: Key, _ amount: BigUInt, expires: ContinuousClock.Instant) {
        let limit = endpoint.cacheEntries
        cache.withLock { cache in
            if cache.entries[key] == nil, cache.entries.count >= limit {
                let now = ContinuousClock.now
                cache.entries = cache.entries.filter { $0.value.expires > now }
                if cache.entries.count >= limit, let oldest = cache.entries.min(by: { $0.value.serial < $1.value.serial })?.key {
                    cache.entries[oldest] = nil
                }
            }
            cache.serial += 1
            cache.entries[key] = (amount, expires, cache.serial)
        }
    }

    private struct PricingRequest: Encodable {
        var route: String
        var key: [String: JSONValue]
    }

    struct AnswerProblem: Error, CustomStringConvertible {
        let description: String
    }

    /// `{"price": "$0.02"}` or `{"amount": "20000" | 20000}` → atomic units (positive).
    static func amount(in answer: [UInt8], decimals: Int?) -> Result<BigUInt, AnswerProblem> {
        guard let json = try? JSONReader.parse(answer) else { return .failure(AnswerProblem(description: "the pricing endpoint's answer is not JSON")) }
        if case .string(let text)? = json["price"] {
            guard let decimals else { return .failure(AnswerProblem(description: "the route's asset has no known decimals: the pricing endpoint must answer amount")) }
            guard let amount = try? Money.atomicUnits(fromDollars: text, decimals: decimals), amount > 0 else {
                return .failure(AnswerProblem(description: "the pricing endpoint's price is not a positive \"$0.01\" amount"))
            }
            return .success(amount)
        }
        let text: String? = switch json["amount"] {
        case .string(let s)?: s
        case .number(let n)?: n
        default: nil
        }
        guard let text, let amount = Money.atomicUnits(fromInteger: text), amount > 0 else {
            return .failure(AnswerProblem(description: "the pricing endpoint's answer has neither price (\"$0.01\") nor amount (positive atomic units)"))
        }
        return .success(amount)
    }

    func shutdown() async { await client.shutdown() }
}
