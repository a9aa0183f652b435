import Foundation
import GatewayStorage
import GatewayStorageSQLite
import Testing
import Synchronization

/// A clock the tests move by hand (unix milliseconds).
final class TestClock: Sendable {
    private let now = Atomic<Int64>(1_800_000_000_000)
    var read: @Sendable () -> Int64 { { self.now.load(ordering: .relaxed) } }
    func advance(milliseconds: Int64) { now.add(milliseconds, ordering: .relaxed) }
}

/// One backend under test: opens stores that share one database (as several gateway instances do).
struct Backend: Sendable, CustomTestStringConvertible {
    let name: String
    /// A new shared database; returns an opener for instances on it.
    let makeShared: @Sendable () async throws -> Shared

    struct Shared: Sendable {
        let open: @Sendable (StoreSettings) async throws -> any PaymentStore
        let cleanup: @Sendable () async -> Void
    }

    var testDescription: String { name }

    /// Every "instance" is the one store object: the memory store is per process.
    static let memory = Backend(name: "memory") {
        let shared = Mutex<InMemoryPaymentStore?>(nil)
        return Shared(open: { settings in
            shared.withLock { store in
                if let store { return store }
                let made = InMemoryPaymentStore(settings: settings)
                store = made
                return made
            }
        }, cleanup: {})
    }

    static let sqlite = Backend(name: "sqlite") {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("x402-ledger-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/ledger.db"
        return Shared(open: { settings in
            try await SQLPaymentStore(database: try SQLiteDatabase(path: path), settings: settings)
        }, cleanup: { try? FileManager.default.removeItem(atPath: dir) })
    }

    static var all: [Backend] { [.memory, .sqlite] + PostgresBackend.all }
}
