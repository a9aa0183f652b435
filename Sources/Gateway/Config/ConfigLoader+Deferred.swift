import BigInt
import GatewayCore
import X402
import Yams

/// Deferred settlement in `gateway.yaml`: a route's `verify` and `riskBudget`, and the top-level
/// `deferredSettlement:` block.
extension YAMLReader {
    /// `verify: local | facilitator` and `riskBudget: { perPayer, total }` on a route with
    /// `settlement: deferred` (reported on any other route). nil when the route does not defer or a
    /// value is invalid (reported).
    func routeDeferral(_ m: [String: (key: Node, value: Node)], settlement: SettlementPolicy, access: RouteAccess) -> Deferral? {
        guard settlement == .deferred else {
            for key in ["verify", "riskBudget"] {
                if let entry = m[key] { error(entry.key, "\(key) applies to settlement: deferred only") }
            }
            return nil
        }
        guard case .priced(let offers) = access else {
            if let entry = m["settlement"] { error(entry.value, "a free route cannot have settlement: deferred (nothing is paid on it)") }
            return nil
        }
        var verify = Deferral.Verification.facilitator
        if let n = m["verify"]?.value, let s = string(n, "verify") {
            if let parsed = Deferral.Verification(rawValue: s) { verify = parsed } else {
                error(n, "verify must be \"local\" (signature, amount, payee, time window and replay checked here) or \"facilitator\" (and /verify), not \"\(s)\"")
            }
        }
        guard let budgetEntry = m["riskBudget"] else {
            error(m["settlement"]?.value, "settlement: deferred needs riskBudget: { perPayer: \"$1.00\", total: \"$100.00\" }: how much may stay unsettled")
            return nil
        }
        guard let b = mapping(budgetEntry.value, "riskBudget", allowed: ["perPayer", "total"]) else { return nil }
        guard let perPayerNode = b["perPayer"]?.value, let totalNode = b["total"]?.value else {
            error(budgetEntry.value, "riskBudget needs both perPayer (one payer's unsettled payments) and total (all unsettled payments on the route)")
            return nil
        }
        guard let perPayer = budgetAmount(perPayerNode, "riskBudget.perPayer", offers: offers),
              let total = budgetAmount(totalNode, "riskBudget.total", offers: offers)
        else { return nil }
        if perPayer > total {
            error(perPayerNode, "riskBudget.perPayer cannot exceed riskBudget.total")
            return nil
        }
        if let cheapest = offers.map(\.amount).min(), perPayer < cheapest {
            error(perPayerNode, "riskBudget.perPayer is less than one payment on this route (\(cheapest) atomic units): no payment would ever be deferred")
            return nil
        }
        return Deferral(verify: verify, perPayer: perPayer, total: total)
    }

    /// `"$1.00"` in the route's asset (every offer of the route must have the same decimals), or a
    /// whole number of atomic units.
    private func budgetAmount(_ node: Node, _ what: String, offers: [Offer]) -> BigUInt? {
        let decimals = Set(offers.map(\.decimals))
        return assetAmount(node, what, decimals: decimals.count == 1 ? decimals.first! : nil,
                           noDecimals: "\(what) in dollars needs the route's offers in assets of known and equal decimals: give atomic units instead (e.g. \"1000000\")")
    }

    /// `deferredSettlement: { concurrency, lease, margin, retry: { initial, max }, poll, refresh, failedPayerHold }`.
    func deferredSettlementConfig(_ node: Node, facilitator: FacilitatorConfig?) -> DeferredSettlementConfig {
        var config = DeferredSettlementConfig()
        guard let m = mapping(node, "deferredSettlement", allowed: [
            "concurrency", "lease", "margin", "retry", "poll", "refresh", "failedPayerHold",
        ]) else { return config }
        if let n = m["concurrency"]?.value, let v = int(n, "deferredSettlement.concurrency", range: 1...4096) { config.concurrency = v }
        if let n = m["lease"]?.value, let v = duration(n, "deferredSettlement.lease") {
            let floor = (facilitator?.timeout ?? .seconds(10)) + .seconds(5)
            if v < floor {
                error(n, "deferredSettlement.lease must outlast a settle call: at least facilitator.timeout + 5s (\(Reconciler.text(floor)))")
            } else {
                config.lease = v
            }
        }
        if let n = m["margin"]?.value, let v = duration(n, "deferredSettlement.margin") {
            if v < .seconds(6) {
                error(n, "deferredSettlement.margin must be at least 6s: facilitators refuse an authorization that expires within 6 seconds")
            } else {
                config.margin = v
            }
        }
        if let n = m["retry"]?.value, let r = mapping(n, "deferredSettlement.retry", allowed: ["initial", "max"]) {
            if let i = r["initial"]?.value, let v = duration(i, "deferredSettlement.retry.initial") {
                if v < .milliseconds(10) { error(i, "deferredSettlement.retry.initial must be at least 10ms") } else { config.retryInitial = v }
            }
            if let x = r["max"]?.value, let v = duration(x, "deferredSettlement.retry.max") {
                if v < config.retryInitial { error(x, "deferredSettlement.retry.max cannot be less than retry.initial") } else { config.retryMax = v }
            }
        }
        if let n = m["poll"]?.value, let v = duration(n, "deferredSettlement.poll") {
            if v < .milliseconds(10) { error(n, "deferredSettlement.poll must be at least 10ms") } else { config.poll = v }
        }
        if let n = m["refresh"]?.value, let v = duration(n, "deferredSettlement.refresh") {
            if v < .milliseconds(100) { error(n, "deferredSettlement.refresh must be at least 100ms") } else { config.refresh = v }
        }
        if let n = m["failedPayerHold"]?.value, let text = string(n, "deferredSettlement.failedPayerHold") {
            if text == "off" {
                config.failedPayerHold = nil
            } else if let v = duration(n, "deferredSettlement.failedPayerHold") {
                config.failedPayerHold = v
            }
        }
        return config
    }
}
