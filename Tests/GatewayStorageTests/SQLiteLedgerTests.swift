import Foundation
import GatewayStorage
import GatewayStorageSQLite
import Testing

@Suite("SQLite ledger file")
struct SQLiteLedgerTests {
    static func folder() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("x402-sqlite-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func open(_ path: String, instance: String = "a", keep: Bool = false) async throws -> SQLPaymentStore<SQLiteDatabase> {
        try await SQLPaymentStore(database: try SQLiteDatabase(path: path), settings: StoreSettings(instanceID: instance), keepInstanceID: keep)
    }

    @Test("rows and claims survive closing and reopening the file")
    func survivesReopen() async throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let request = PaymentStoreConformanceTests.request()
        do {
            let store = try await Self.open(dir + "/ledger.db")
            let ticket = try PaymentStoreConformanceTests.ticket(try await store.claim(request))
            try await store.record(ticket, .verified(payer: request.key.payer))
            try await store.record(ticket, .settling)
            try await store.record(ticket, .settled(transaction: "0x1234"))
        }
        let reopened = try await Self.open(dir + "/ledger.db")
        let row = try await PaymentStoreConformanceTests.row(reopened, request.key)
        #expect(row.state == .settled)
        #expect(row.transaction == "0x1234")
        #expect(try await reopened.claim(request) == .taken)
    }

    @Test("the writer commits with synchronous = FULL (a commit is on disk before the statement returns), not GRDB's NORMAL")
    func writerSyncsEveryCommit() async throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let database = try SQLiteDatabase(path: dir + "/ledger.db")
        // Not a SELECT: it runs on the writer connection, the one that commits.
        let rows = try await database.query(SQLStatement("PRAGMA synchronous"))
        #expect(rows == [[.integer(2)]], "synchronous is \(rows) on the writer (2 = FULL, 1 = NORMAL)")
        let mode = try await database.query(SQLStatement("PRAGMA journal_mode"))
        #expect(mode == [[.text("wal")]])
    }

    @Test("a generated instance id is kept in the database across restarts")
    func instanceIDKept() async throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try await Self.open(dir + "/ledger.db", instance: "gw-first", keep: true).instanceID
        let second = try await Self.open(dir + "/ledger.db", instance: "gw-second", keep: true).instanceID
        #expect(first == "gw-first")
        #expect(second == "gw-first")
    }

    @Test("at restart, claims the previous run left in flight end: settling ones as unknown, the others released")
    func recoversOwnClaims() async throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let settling = PaymentStoreConformanceTests.request(), verified = PaymentStoreConformanceTests.request()
        let done = PaymentStoreConformanceTests.request()
        do {
            let store = try await Self.open(dir + "/ledger.db")
            let a = try PaymentStoreConformanceTests.ticket(try await store.claim(settling))
            try await store.record(a, .verified(payer: settling.key.payer))
            try await store.record(a, .settling)
            let b = try PaymentStoreConformanceTests.ticket(try await store.claim(verified))
            try await store.record(b, .verified(payer: verified.key.payer))
            let c = try PaymentStoreConformanceTests.ticket(try await store.claim(done))
            try await store.record(c, .released(reason: "client_gone"))
        }
        let restarted = try await Self.open(dir + "/ledger.db")
        let recovered = try await restarted.recoverInstance()
        #expect(recovered.unknown == 1 && recovered.released == 1)
        #expect(try await PaymentStoreConformanceTests.row(restarted, settling.key).state == .unknown)
        #expect(try await PaymentStoreConformanceTests.row(restarted, settling.key).reason == "instance_restarted")
        #expect(try await PaymentStoreConformanceTests.row(restarted, verified.key).state == .released)
        #expect(try await PaymentStoreConformanceTests.row(restarted, done.key).reason == "client_gone")
        guard case .claimedAfterUnknownOutcome = try await restarted.claim(settling) else {
            Issue.record("an unknown outcome is claimed only as a retry")
            return
        }
    }

    @Test("a schema newer than the binary is refused")
    func newerSchemaRefused() async throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try await Self.open(dir + "/ledger.db")
        _ = try await store.database.query(LedgerSQL.writeVersion(LedgerSQL.schemaVersion + 1))
        await #expect(throws: StorageError.self) {
            do { _ = try await Self.open(dir + "/ledger.db") } catch let error as StorageError {
                #expect(error.code == .schemaTooNew)
                throw error
            }
        }
    }

    @Test("a reader (migrate: false) reads a ledger at this binary's schema, and refuses an older one without migrating it")
    func readerNeverMigrates() async throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/ledger.db"
        let writer = try await Self.open(path)
        let request = PaymentStoreConformanceTests.request()
        _ = try PaymentStoreConformanceTests.ticket(try await writer.claim(request))
        let reader = try await SQLPaymentStore(database: try SQLiteDatabase(path: path), settings: StoreSettings(instanceID: "r"), migrate: false)
        #expect(try await reader.payments(PaymentQuery()).map(\.key) == [request.key])
        // As if an older gateway had written it: the reader refuses, and the version stays.
        _ = try await writer.database.query(LedgerSQL.writeVersion(LedgerSQL.schemaVersion - 1))
        await #expect(throws: StorageError.self) {
            do {
                _ = try await SQLPaymentStore(database: try SQLiteDatabase(path: path), settings: StoreSettings(instanceID: "r"), migrate: false)
            } catch let error as StorageError {
                #expect(error.code == .schemaTooOld && error.message.contains("version \(LedgerSQL.schemaVersion - 1)"))
                throw error
            }
        }
        #expect(try await writer.database.query(LedgerSQL.readVersion).first?.first == .text(String(LedgerSQL.schemaVersion - 1)))
    }

    @Test("a file that is not a SQLite database is refused as corrupt, and left as it was")
    func corruptFileRefused() async throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/ledger.db"
        let junk = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        try junk.write(to: URL(fileURLWithPath: path))
        await #expect(throws: StorageError.self) {
            do { _ = try await Self.open(path) } catch let error as StorageError {
                #expect(error.code == .corrupt)
                #expect(error.message.contains(path))
                throw error
            }
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == junk)
    }

    @Test("a folder that cannot be written is reported as unavailable, with the path")
    func unwritableFolder() async throws {
        let path = "/proc/x402-no-such-folder/ledger.db"
        await #expect(throws: StorageError.self) {
            do { _ = try await Self.open(path) } catch let error as StorageError {
                #expect(error.code == .unavailable)
                #expect(error.message.contains(path))
                throw error
            }
        }
    }

    @Test("a second process on one ledger file is refused by the lock; the first keeps it")
    func oneProcessPerFile() throws {
        let dir = try Self.folder()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let first = try SQLiteDatabase(path: dir + "/ledger.db", exclusive: true)
        // flock locks belong to open file descriptions: a second open in this process conflicts like another process.
        #expect(throws: StorageError.self) { _ = try SQLiteDatabase(path: dir + "/ledger.db", exclusive: true) }
        // A reader (the payments and revenue commands) opens it beside the running gateway.
        _ = try SQLiteDatabase(path: dir + "/ledger.db")
        // Other paths to the same file take the same lock: a symbolic link to it, one to its folder, `..`.
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.db", withDestinationPath: dir + "/ledger.db")
        try FileManager.default.createSymbolicLink(atPath: dir + "/folder", withDestinationPath: dir)
        for other in [dir + "/link.db", dir + "/folder/ledger.db", dir + "/folder/../" + (dir as NSString).lastPathComponent + "/ledger.db"] {
            #expect(throws: StorageError.self, "\(other)") { _ = try SQLiteDatabase(path: other, exclusive: true) }
        }
        withExtendedLifetime(first) {}
    }
}
