import FixtureEditing
import Foundation
import GatewayStorage
import GatewayStoragePostgres
import Synchronization
import Testing

/// PostgreSQL joins the suite when `X402_TEST_POSTGRES_URL` names a server whose user may create
/// databases (`scripts/postgres-test-server.sh` starts one). `X402_REQUIRE_POSTGRES=1` makes a
/// missing URL a failure rather than a skip.
enum PostgresBackend {
    static let url: String? = ProcessInfo.processInfo.environment["X402_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : patient($0) }

    /// `url` with a 30 s pool timeout unless it names one. A full test run opens dozens of pools at
    /// once while ~700 tests start, and on a loaded two-core machine the 5 s default failed whole
    /// suites with "no connection within 5.0 seconds"; the tests of the timeout set their own.
    static func patient(_ url: String) -> String {
        guard var components = URLComponents(string: url),
              !(components.queryItems ?? []).contains(where: { $0.name == "pool_timeout" }) else { return url }
        components.queryItems = (components.queryItems ?? []) + [URLQueryItem(name: "pool_timeout", value: "30")]
        return components.string ?? url
    }
    static let required = ProcessInfo.processInfo.environment["X402_REQUIRE_POSTGRES"] == "1"

    static var all: [Backend] { url == nil ? [] : [.postgres] }
}

extension Backend {
    /// Every shared database is a new database on the server; every `open` is a new
    /// ``PostgresDatabase`` (its own pool) on it, as a separate gateway instance would be.
    static let postgres = Backend(name: "postgres") {
        let database = try await TestDatabase.create()
        let pools = Mutex<[Task<Void, Never>]>([])
        return Shared(open: { settings in
            let db = try PostgresDatabase(url: database.url)
            pools.withLock { $0.append(Task { await db.run() }) }
            return try await SQLPaymentStore(database: db, settings: settings)
        }, cleanup: {
            for pool in pools.withLock({ $0 }) {
                pool.cancel()
                await pool.value
            }
            await database.drop()
        })
    }
}

/// A database of its own on the test server, for one test.
struct TestDatabase: Sendable {
    let name: String
    let url: String

    static func create() async throws -> TestDatabase {
        let server = try #require(PostgresBackend.url, "X402_TEST_POSTGRES_URL is not set")
        let name = "x402_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try await PostgresDatabase.withDatabase(url: server, poolSize: 1) { admin in
            _ = try await admin.query(SQLStatement("CREATE DATABASE \(name)"))
        }
        return TestDatabase(name: name, url: try url(server, database: name))
    }

    /// `url` with another database (and the same credentials).
    static func url(_ url: String, database: String? = nil, password: String? = nil, query: String? = nil) throws -> String {
        var components = try #require(URLComponents(string: url))
        if let database { components.path = "/" + database }
        if let password { components.password = password }
        if let query { components.query = query }
        return try #require(components.string)
    }

    func drop() async {
        guard let server = PostgresBackend.url else { return }
        _ = try? await PostgresDatabase.withDatabase(url: server, poolSize: 1) { admin in
            try await admin.query(SQLStatement("DROP DATABASE IF EXISTS \(name) WITH (FORCE)"))
        }
    }

    /// Runs `body` on a fresh database, dropped afterwards.
    static func with(_ body: (TestDatabase) async throws -> Void) async throws {
        let database = try await create()
        do {
            try await body(database)
        } catch {
            await database.drop()
            throw error
        }
        await database.drop()
    }
}
