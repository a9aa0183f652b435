import ArgumentParser
import Foundation
import Gateway
import GatewayCore
import GatewayStorage

/// `x402-gateway payments`: the ledger named by the configuration, newest first.
struct Payments: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the payments in the ledger (newest first).",
        discussion: "Reads the storage named by the configuration; works while the gateway runs. A table on a terminal, JSON when piped or with --json.")

    @Option(name: .shortAndLong, help: "Path to gateway.yaml (read for storage).")
    var config: String = "gateway.yaml"

    @Option(help: "Only payments claimed in this window: 30m, 1h, 7d.")
    var since: String?

    @Option(help: "Only this route id.")
    var route: String?

    @Option(help: "Only this state (claimed, verified, forwarded, settling, settled, refused, released, unknown, reconciled_settled, reconciled_unsettled, settlement_pending, settle_failed_after_delivery); repeatable.")
    var state: [String] = []

    @Option(help: "Only this payer address.")
    var payer: String?

    @Option(help: "At most this many rows.")
    var limit: Int = 100

    @Flag(help: "JSON even on a terminal.")
    var json = false

    @Flag(help: "The deferred settlements instead: pending and unknown per route, exposure, oldest pending, failures after delivery.")
    var deferred = false

    func run() async throws {
        let loaded = try loadConfig(config)
        if deferred {
            let hold = loaded.deferredSettlement.failedPayerHold.map { Int64($0.components.seconds) * 1000 } ?? 0
            let now = StoreSettings.systemClock()
            let summary: DeferredSummary
            do {
                summary = try await PaymentStoreOpener.read(loaded.storage) { try await $0.deferredSummary(failuresSince: now - hold) }
            } catch {
                FileHandle.standardError.write(Data("\(config): storage: \(error)\n".utf8))
                throw ExitCode(1)
            }
            print(json || isatty(STDOUT_FILENO) == 0 ? LedgerReport.deferredJSON(summary, now: now) : LedgerReport.deferredTable(summary, now: now),
                  terminator: json ? "\n" : "")
            return
        }
        var states: [PaymentState]?
        if !state.isEmpty {
            states = try state.map { name in
                guard let parsed = PaymentState(rawValue: name) else { throw ValidationError("unknown state \"\(name)\"") }
                return parsed
            }
        }
        var sinceMs: Int64?
        if let since {
            guard let window = Self.window(since) else { throw ValidationError("--since takes a duration like 30m, 1h or 7d") }
            sinceMs = StoreSettings.systemClock() - window
        }
        let query = PaymentQuery(since: sinceMs, routeID: route, states: states, payer: payer, limit: max(1, limit))
        let rows: [PaymentRecord]
        do {
            rows = try await PaymentStoreOpener.read(loaded.storage) { try await $0.payments(query) }
        } catch {
            FileHandle.standardError.write(Data("\(config): storage: \(error)\n".utf8))
            throw ExitCode(1)
        }
        print(json || isatty(STDOUT_FILENO) == 0 ? LedgerReport.json(rows) : LedgerReport.table(rows), terminator: json ? "\n" : "")
    }

    /// `30m`, `1h`, `7d`, `45s` in milliseconds.
    static func window(_ text: String) -> Int64? {
        guard let unit = text.last, let count = Int64(text.dropLast()), count >= 0 else { return nil }
        let scale: Int64? = switch unit {
        case "s": 1000
        case "m": 60_000
        case "h": 3_600_000
        case "d": 86_400_000
        default: nil
        }
        return scale.map { count * $0 }
    }
}
