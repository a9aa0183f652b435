import ArgumentParser
import Foundation
import Gateway
import GatewayCore
import GatewayStorage

/// `x402-gateway revenue`: settled payments summed per day, route, payer or asset.
struct Revenue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sum what was paid, per day, route, payer or asset (exact, in each asset's atomic units).",
        discussion: "Counts settled and reconciled-settled payments in the ledger named by the configuration. A table on a terminal, JSON when piped or with --json.")

    @Option(name: .shortAndLong, help: "Path to gateway.yaml (read for storage).")
    var config: String = "gateway.yaml"

    @Option(help: "Group by: day, route, payer or asset.")
    var by: RevenueReport.Grouping = .day

    @Option(help: "Only payments claimed in this window: 30m, 24h, 30d.")
    var since: String?

    @Flag(help: "JSON even on a terminal.")
    var json = false

    func run() async throws {
        let loaded = try loadConfig(config)
        var query = PaymentQuery(states: [.settled, .reconciledSettled], limit: 10_000_000)
        if let since {
            guard let window = Payments.window(since) else { throw ValidationError("--since takes a duration like 30m, 24h or 30d") }
            query.since = StoreSettings.systemClock() - window
        }
        var report = RevenueReport(by: by)
        do {
            report.add(try await PaymentStoreOpener.read(loaded.storage) { try await $0.payments(query) })
        } catch {
            FileHandle.standardError.write(Data("\(config): storage: \(error)\n".utf8))
            throw ExitCode(1)
        }
        print(json || isatty(STDOUT_FILENO) == 0 ? report.json : report.table, terminator: json ? "\n" : "")
    }
}

extension RevenueReport.Grouping: ExpressibleByArgument {}
