import Foundation
import GatewayCore
import GatewayStorage
import GatewayStoragePostgres
import GatewayStorageSQLite
import Logging

/// An open payment store, and the work that must run beside it while it is used (PostgreSQL's
/// connection pool); the executable runs `background` as a service until shutdown.
public struct OpenPaymentStore: Sendable {
    public var store: any PaymentStore
    /// Rate-limit and free-allowance counters in the same database (nil in memory).
    public var counters: (any LimitCounterStore)?
    public var background: (@Sendable () async -> Void)?
}

/// Opens the configured payment store at start: the database is reached and migrated, or the
/// gateway does not start.
public enum PaymentStoreOpener {
    public static func open(_ config: StorageConfig, logger: Logger) async throws -> OpenPaymentStore {
        let lease = Int64(config.lease.components.seconds) * 1000
        switch config.backend {
        case .memory:
            logger.warning("payment state is kept in memory: it is neither durable nor shared; a restart forgets every claim and the ledger")
            return OpenPaymentStore(store: InMemoryPaymentStore(settings: StoreSettings(instanceID: config.instance ?? "memory", leaseMilliseconds: lease)))
        case .sqlite(let path):
            let store = try await SQLPaymentStore(
                database: try SQLiteDatabase(path: path, exclusive: true),
                settings: StoreSettings(instanceID: config.instance ?? "gw-" + randomHex(4), leaseMilliseconds: lease),
                keepInstanceID: config.instance == nil)
            // This process alone holds the file (the lock): claims its earlier run left in flight died with it.
            let recovered = try await store.recoverInstance()
            if recovered.unknown + recovered.released + recovered.requeued > 0 {
                logger.warning("claims left in flight by the previous run were recovered",
                               metadata: ["x402.unknown": "\(recovered.unknown)", "x402.released": "\(recovered.released)",
                                          "x402.requeued": "\(recovered.requeued)"])
            }
            logger.info("payment ledger open", metadata: ["storage": "sqlite", "path": "\(path)", "x402.instance": "\(store.instanceID)"])
            return OpenPaymentStore(store: store, counters: SQLLimitCounters(database: store.database, shared: false))
        case .postgres(let url):
            let database = try PostgresDatabase(url: url, poolSize: config.poolSize)
            // Several instances share the database: without a configured id, one per process
            // (claims a dead process left are then taken over when their lease ends).
            let instance = config.instance ?? "\(ProcessInfo.processInfo.hostName)-\(randomHex(3))"
            let store = try await SQLPaymentStore(database: database, settings: StoreSettings(instanceID: instance, leaseMilliseconds: lease))
            try await checkClock(database, lease: lease, local: StoreSettings.systemClock, logger: logger)
            logger.info("payment ledger open", metadata: ["storage": "postgres", "database": "\(database.configuration.target)",
                                                         "x402.instance": "\(store.instanceID)"])
            return OpenPaymentStore(store: store, counters: SQLLimitCounters(database: database, shared: true),
                                    background: { await database.run() })
        }
    }

    /// Instances sharing a database judge each other's leases by their own clocks: one whose clock
    /// runs ahead by a good part of the lease would take over claims whose requests still run. The
    /// clock is compared with the database server's at start: a gap of a tenth of the lease or more
    /// (30 s by default) refuses to start, one of a second or more is logged.
    package static func checkClock(_ database: PostgresDatabase, lease: Int64, local: @escaping @Sendable () -> Int64, logger: Logger) async throws {
        let (gap, roundTrip) = try await database.clockGap(local: local)
        if abs(gap) >= max(1000, lease / 10) {
            throw StorageError(.unavailable, "this machine's clock differs from the database server's by \(gap) ms (round trip \(roundTrip) ms): "
                + "claims are leased for \(lease / 1000) s and judged by each instance's clock, so another instance could take over a claim "
                + "whose request still runs; synchronise the clocks (NTP)")
        }
        if abs(gap) >= 1000 {
            logger.warning("this machine's clock differs from the database server's", metadata: ["x402.clock_gap_ms": "\(gap)"])
        }
    }

    /// Opens the configured store for reading beside a running gateway (no lock, no recovery, no
    /// migration: a schema other than this binary's is refused).
    public static func read<T: Sendable>(_ config: StorageConfig, _ body: (any PaymentStore) async throws -> T) async throws -> T {
        switch config.backend {
        case .memory:
            throw StorageError(.unavailable, "storage is in memory: only the running gateway's admin listener (/payments) can list it")
        case .sqlite(let path):
            guard FileManager.default.fileExists(atPath: path) else { throw StorageError(.unavailable, "\(path): no ledger here yet") }
            return try await body(try await SQLPaymentStore(database: try SQLiteDatabase(path: path),
                                                            settings: StoreSettings(instanceID: config.instance ?? "reader"), migrate: false))
        case .postgres(let url):
            return try await PostgresDatabase.withDatabase(url: url, poolSize: 2) { database in
                try await body(try await SQLPaymentStore(database: database, settings: StoreSettings(instanceID: config.instance ?? "reader"),
                                                         migrate: false))
            }
        }
    }

    static func randomHex(_ bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }
}
