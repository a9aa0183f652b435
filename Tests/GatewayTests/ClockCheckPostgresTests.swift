import Foundation
import Gateway
import GatewayStorage
import GatewayStoragePostgres
import Logging
import Testing

/// Instances on one PostgreSQL judge leases by their own clocks: at start the gateway compares its
/// clock with the database server's, against a real server (`scripts/postgres-test-server.sh`), with
/// this process's clock moved by hand.
@Suite("Clock against the database at start", .timeLimit(.minutes(1)))
struct ClockCheckPostgresTests {
    static let server = ProcessInfo.processInfo.environment["X402_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 }
    static let required = ProcessInfo.processInfo.environment["X402_REQUIRE_POSTGRES"] == "1"

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    @Test("in step: opens; a gap of a tenth of the lease or more: refused with the gap named; a smaller gap of a second or more: opens")
    func gap() async throws {
        guard let server = Self.server else {
            if Self.required { Issue.record("X402_REQUIRE_POSTGRES=1 but X402_TEST_POSTGRES_URL is not set") }
            return
        }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        try await PostgresDatabase.withDatabase(url: server, poolSize: 1) { database in
            try await PaymentStoreOpener.checkClock(database, lease: 300_000, local: { Self.now() }, logger: logger)
            do {
                try await PaymentStoreOpener.checkClock(database, lease: 300_000, local: { Self.now() - 60_000 }, logger: logger)
                Issue.record("a clock a minute behind the database's was accepted with a 5-minute lease")
            } catch let error as StorageError {
                #expect(error.message.contains("differs from the database server's"), "\(error)")
                #expect(error.message.contains("NTP"))
            }
            // The same gap under a one-hour lease is within a tenth of it: logged, not refused.
            try await PaymentStoreOpener.checkClock(database, lease: 3_600_000, local: { Self.now() - 60_000 }, logger: logger)
        }
    }
}
