import BigInt
import Foundation
import GatewayStorage
import X402

/// What was paid, grouped: totals of settled payments (`settled` and `reconciled_settled`) in each
/// asset's atomic units, exact (BigUInt), and in the asset's own unit where the gateway knows it.
public struct RevenueReport: Sendable {
    public enum Grouping: String, Sendable, CaseIterable {
        case day, route, payer, asset
    }

    public struct Line: Sendable, Equatable {
        public var group: String
        public var network: String
        public var asset: String
        public var payments: Int
        public var total: BigUInt
    }

    public private(set) var lines: [Line] = []
    private let grouping: Grouping

    public init(by grouping: Grouping) {
        self.grouping = grouping
    }

    /// Adds the rows that count as revenue.
    public mutating func add(_ rows: [PaymentRecord]) {
        for row in rows where row.state.isSpent {
            let amount = BigUInt(row.revenueAmount) ?? 0
            let group: String = switch grouping {
            case .day: String(LedgerReport.timestamp(row.finishedAt ?? row.claimedAt).prefix(10))
            case .route: row.routeID
            case .payer: row.key.payer
            case .asset: "\(row.key.network) \(row.key.asset)"
            }
            if let i = lines.firstIndex(where: { $0.group == group && $0.network == row.key.network && $0.asset == row.key.asset }) {
                lines[i].payments += 1
                lines[i].total += amount
            } else {
                lines.append(Line(group: group, network: row.key.network, asset: row.key.asset, payments: 1, total: amount))
            }
        }
    }

    /// Groups in order (days oldest first; others by total, largest first).
    public var sorted: [Line] {
        grouping == .day ? lines.sorted { ($0.group, $0.asset) < ($1.group, $1.asset) } : lines.sorted { $0.total > $1.total }
    }

    /// `1.234 USDC` when the asset is its network's known stablecoin, else nil.
    static func inUnits(_ line: Line) -> String? {
        guard let known = Networks.named(line.network)?.defaultAsset, known.address.lowercased() == line.asset.lowercased() else { return nil }
        return "\(Money.format(line.total, decimals: known.decimals)) \(known.symbol)"
    }

    public var json: String {
        let items = sorted.map { line in
            var fields = ["\"\(grouping.rawValue)\":\(JSONString.quoted(line.group))", "\"network\":\(JSONString.quoted(line.network))",
                          "\"asset\":\(JSONString.quoted(line.asset))", "\"payments\":\(line.payments)",
                          "\"total\":\(JSONString.quoted(String(line.total)))"]
            if let units = Self.inUnits(line) { fields.append("\"totalInUnits\":\(JSONString.quoted(units))") }
            return "{" + fields.joined(separator: ",") + "}"
        }
        return "{\"revenue\":[\(items.joined(separator: ","))]}"
    }

    public var table: String {
        let header = [grouping.rawValue.uppercased(), "NETWORK", "ASSET", "PAYMENTS", "TOTAL (ATOMIC)", "TOTAL"]
        let rows = sorted.map { [$0.group, $0.network, $0.asset, "\($0.payments)", String($0.total), Self.inUnits($0) ?? ""] }
        let widths = header.indices.map { i in ([header] + rows).map { $0[i].count }.max() ?? 0 }
        return ([header] + rows).map { cells in
            cells.enumerated().map { i, cell in
                i == cells.count - 1 ? cell
                    : i == 3 || i == 4 ? String(repeating: " ", count: widths[i] - cell.count) + cell
                    : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n") + "\n"
    }
}
