import BigInt
import Foundation
import Paywall

/// One asset's revenue over the window as an SVG bar chart, the largest routes stacked, drawn by
/// the gateway. Heights are integer fractions of a round top value (BigUInt arithmetic): the
/// amounts are never turned into floating point. Every bar segment has a `<title>` with the exact amount.
package struct RevenueChart {
    package static let width = 720, height = 240
    package static let left = 78, right = 8, top = 12, bottom = 34
    package static var plotWidth: Int { width - left - right }
    package static var plotHeight: Int { height - top - bottom }

    package let chart: RevenueView.Chart
    package let buckets: [Int64]
    package let window: DashboardWindow
    package let assets: AssetDirectory

    package init(chart: RevenueView.Chart, buckets: [Int64], window: DashboardWindow, assets: AssetDirectory) {
        self.chart = chart
        self.buckets = buckets
        self.window = window
        self.assets = assets
    }

    /// The smallest 1, 2 or 5 × 10ⁿ at or above `value` (1 for zero).
    package static func roundTop(_ value: BigUInt) -> BigUInt {
        guard value > 1 else { return 1 }
        var power = BigUInt(1)
        while power * 10 < value { power *= 10 }
        for step in [1, 2, 5, 10] as [BigUInt] where power * step >= value { return power * step }
        return power * 10
    }

    /// The bucket's label on the time axis (UTC): `14:30` within a day, `12-07` beyond.
    static func timeLabel(_ ms: Int64, window: DashboardWindow) -> String {
        let stamp = LedgerReport.timestamp(ms)  // 2026-12-07T14:30:00.000Z
        let chars = Array(stamp)
        switch window {
        case .hour, .day: return String(chars[11..<16])
        case .week: return String(chars[5..<10]) + " " + String(chars[11..<13]) + "h"
        case .month: return String(chars[5..<10])
        }
    }

    package var svg: String {
        let e = PaywallEscape.html
        let network = chart.total.network, asset = chart.total.asset
        let n = max(1, buckets.count)
        var stacked = Array(repeating: BigUInt(0), count: n)
        for series in chart.series {
            for (i, value) in series.buckets.enumerated() where i < n { stacked[i] += value }
        }
        let top = Self.roundTop(stacked.max() ?? 0)
        let h = BigUInt(Self.plotHeight)
        let slot = Self.plotWidth / n
        let gap = slot >= 4 ? 1 : 0
        var out = """
            <svg class="chart" viewBox="0 0 \(Self.width) \(Self.height)" role="img" aria-label="\(e("Revenue in \(assets.label(network: network, asset: asset)) over time"))" xmlns="http://www.w3.org/2000/svg">
            """
        // Grid and amounts: 0, the middle (when it is a whole number of units), the top.
        var ticks: [BigUInt] = [0, top]
        if top % 2 == 0 { ticks.insert(top / 2, at: 1) }
        for tick in ticks {
            let y = Self.top + Self.plotHeight - Int(h * tick / top)
            out += "<line class=\"grid\" x1=\"\(Self.left)\" x2=\"\(Self.width - Self.right)\" y1=\"\(y)\" y2=\"\(y)\"/>"
            let label = assets.units(tick, network: network, asset: asset) ?? String(tick)
            out += "<text class=\"axis\" x=\"\(Self.left - 6)\" y=\"\(y + 4)\" text-anchor=\"end\">\(e(label))</text>"
        }
        for i in buckets.indices {
            var below = BigUInt(0)
            let x = Self.left + i * slot
            for (k, series) in chart.series.enumerated() {
                let value = series.buckets[i]
                guard value > 0 else { continue }
                let y0 = Int(h * below / top)
                below += value
                let y1 = max(Int(h * below / top), y0 + 1)  // a payment is never invisible
                let route = series.routeID ?? "other routes"
                let title = "\(LedgerReport.timestamp(buckets[i]).prefix(16).replacingOccurrences(of: "T", with: " ")) UTC · \(route) · "
                    + assets.format(value, network: network, asset: asset)
                out += "<rect class=\"k\(series.routeID == nil ? "o" : String(k))\" x=\"\(x)\" y=\"\(Self.top + Self.plotHeight - y1)\" "
                    + "width=\"\(max(1, slot - gap))\" height=\"\(y1 - y0)\"><title>\(e(title))</title></rect>"
            }
        }
        // Time axis: first, middle and last bucket.
        let labelled = Set([0, buckets.count / 2, buckets.count - 1].filter { $0 >= 0 })
        for i in labelled.sorted() {
            let anchor = i == 0 ? "start" : i == buckets.count - 1 ? "end" : "middle"
            let x = Self.left + i * slot + (i == buckets.count - 1 ? slot : i == 0 ? 0 : slot / 2)
            out += "<text class=\"axis\" x=\"\(x)\" y=\"\(Self.height - 8)\" text-anchor=\"\(anchor)\">\(e(Self.timeLabel(buckets[i], window: window)))</text>"
        }
        out += "<line class=\"base\" x1=\"\(Self.left)\" x2=\"\(Self.width - Self.right)\" y1=\"\(Self.top + Self.plotHeight)\" y2=\"\(Self.top + Self.plotHeight)\"/>"
        return out + "</svg>"
    }
}
