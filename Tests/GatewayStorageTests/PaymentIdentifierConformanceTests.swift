import FixtureEditing
import Foundation
import GatewayStorage
import GatewayStorageSQLite
import Testing

/// The payment-identifier part of the storage contract, run against every backend.
@Suite("Payment identifier store contract")
struct PaymentIdentifierConformanceTests {
    typealias Contract = PaymentStoreConformanceTests

    static func request(id: String = "pay_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased(),
                        route: String = "weather", payment: String = "p1", binding: String = "b1",
                        expiresAt: Int64 = 1_800_000_000_000 + 3_600_000) -> IdentifierClaimRequest {
        let key = Contract.request().key
        return IdentifierClaimRequest(routeID: route, id: id, paymentHash: payment, bindingHash: binding, key: key,
                                      requestID: UUID().uuidString, expiresAt: expiresAt)
    }

    /// A response with every byte value in its body and the receipt among its headers.
    static let response = StoredResponse(
        status: 200,
        headers: [HeaderField("Content-Type", "application/json"), HeaderField("Date", "Tue, 01 Dec 2026 10:00:00 GMT"),
                  HeaderField("Set-Cookie", "a=b; Path=/"), HeaderField("Set-Cookie", "c=d"), HeaderField("X-Empty", ""),
                  HeaderField("PAYMENT-RESPONSE", "eyJzdWNjZXNzIjp0cnVlfQ==")],
        body: Array(0...255) + Array("{\"ok\":true}".utf8))

    static func ticket(_ claim: IdentifierClaim) throws -> IdentifierTicket {
        guard case .claimed(let ticket) = claim else {
            Issue.record("expected the identifier to be claimed, got \(claim)")
            throw StorageError(.outOfOrder, "not claimed")
        }
        return ticket
    }

    static func existing(_ claim: IdentifierClaim) throws -> IdentifierRecord {
        guard case .existing(let record) = claim else {
            Issue.record("expected an existing record, got \(claim)")
            throw StorageError(.outOfOrder, "claimed")
        }
        return record
    }

    @Test("of 300 concurrent claims on one identifier, split across two instances, exactly one wins", arguments: Backend.all)
    func atomicClaim(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, b, _ in
            let request = Self.request()
            let results = try await withThrowingTaskGroup(of: IdentifierClaim.self) { group in
                for i in 0..<300 {
                    let store = i % 2 == 0 ? a : b
                    group.addTask { try await store.claimIdentifier(request) }
                }
                return try await group.reduce(into: [IdentifierClaim]()) { $0.append($1) }
            }
            let winners = results.compactMap { if case .claimed(let t) = $0 { t } else { nil } }
            #expect(winners.count == 1)
            #expect(winners.first?.attempt == 1)
            let others = results.compactMap { if case .existing(let r) = $0 { r } else { nil } }
            #expect(others.count == 299)
            #expect(others.allSatisfy { $0.state == .inFlight && $0.paymentHash == "p1" && $0.bindingHash == "b1" })
        }
    }

    @Test("a completed identifier gives back its answer byte for byte, on any instance; completing twice changes nothing",
          arguments: Backend.all)
    func replayCompleted(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, b, _ in
            let request = Self.request()
            let ticket = try Self.ticket(try await a.claimIdentifier(request))
            try await a.completeIdentifier(ticket, Self.response)
            try await a.completeIdentifier(ticket, Self.response)
            let record = try Self.existing(try await b.claimIdentifier(request))
            #expect(record.state == .completed)
            #expect(record.response == Self.response)
            #expect(record.paymentHash == request.paymentHash && record.bindingHash == request.bindingHash)
            #expect(record.key == request.key && record.requestID == request.requestID)
            #expect(record.completedAt != nil && record.attempt == 1 && record.instanceID == a.instanceID)
            #expect(try await b.identifier(routeID: request.routeID, id: request.id) == record)
        }
    }

    @Test("an answer too large to store is kept as completed without a body", arguments: Backend.all)
    func notReplayable(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, _, _ in
            let request = Self.request()
            let ticket = try Self.ticket(try await a.claimIdentifier(request))
            let receiptOnly = StoredResponse(status: 200, headers: [HeaderField("PAYMENT-RESPONSE", "x")], body: nil)
            try await a.completeIdentifier(ticket, receiptOnly)
            let record = try #require(try await a.identifier(routeID: request.routeID, id: request.id))
            #expect(record.response == receiptOnly)
            // An empty body is a body: it is replayable.
            let empty = Self.request()
            let emptyTicket = try Self.ticket(try await a.claimIdentifier(empty))
            try await a.completeIdentifier(emptyTicket, StoredResponse(status: 204, headers: [], body: []))
            #expect(try await a.identifier(routeID: empty.routeID, id: empty.id)?.response?.body == [])
        }
    }

    @Test("a claim with another payment or request never replaces the record: the first hashes stay for the caller to compare",
          arguments: Backend.all)
    func conflictKeepsFirst(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, b, _ in
            let first = Self.request()
            var otherPayment = first
            otherPayment.paymentHash = "p2"
            var otherRequest = first
            otherRequest.bindingHash = "b2"
            let ticket = try Self.ticket(try await a.claimIdentifier(first))
            // In flight…
            for request in [otherPayment, otherRequest] {
                let record = try Self.existing(try await b.claimIdentifier(request))
                #expect(record.state == .inFlight && record.paymentHash == "p1" && record.bindingHash == "b1")
            }
            // …and completed.
            try await a.completeIdentifier(ticket, Self.response)
            for request in [otherPayment, otherRequest] {
                let record = try Self.existing(try await b.claimIdentifier(request))
                #expect(record.state == .completed && record.paymentHash == "p1" && record.bindingHash == "b1")
            }
        }
    }

    @Test("an in-flight identifier whose holder died is taken over after its lease; the old ticket can no longer complete",
          arguments: Backend.all)
    func leaseExpiry(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, b, clock in
            let request = Self.request()
            let first = try Self.ticket(try await a.claimIdentifier(request))
            clock.advance(milliseconds: Contract.lease - 1)
            #expect(try Self.existing(try await b.claimIdentifier(request)).state == .inFlight)
            clock.advance(milliseconds: 1)
            let second = try Self.ticket(try await b.claimIdentifier(request))
            #expect(second.attempt == first.attempt + 1)
            await #expect(throws: StorageError.self) { try await a.completeIdentifier(first, Self.response) }
            // A late release by the old holder leaves the new claim alone.
            try await a.releaseIdentifier(first)
            let record = try Self.existing(try await a.claimIdentifier(request))
            #expect(record.state == .inFlight && record.instanceID == b.instanceID && record.attempt == second.attempt)
            try await b.completeIdentifier(second, Self.response)
            #expect(try await a.identifier(routeID: request.routeID, id: request.id)?.response == Self.response)
        }
    }

    @Test("a released identifier is free again (attempts keep counting); a completed one only once it expires",
          arguments: Backend.all)
    func releaseAndExpiry(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, b, clock in
            let request = Self.request(expiresAt: 1_800_000_000_000 + 2 * Contract.lease)
            let first = try Self.ticket(try await a.claimIdentifier(request))
            try await a.releaseIdentifier(first)
            #expect(try await b.identifier(routeID: request.routeID, id: request.id) == nil)
            await #expect(throws: StorageError.self) { try await a.completeIdentifier(first, Self.response) }
            let second = try Self.ticket(try await b.claimIdentifier(request))
            #expect(second.attempt == 2)
            try await b.completeIdentifier(second, Self.response)
            clock.advance(milliseconds: 2 * Contract.lease - 1)
            #expect(try Self.existing(try await a.claimIdentifier(request)).state == .completed)
            clock.advance(milliseconds: 1)
            #expect(try await a.identifier(routeID: request.routeID, id: request.id) == nil)
            #expect(try Self.ticket(try await a.claimIdentifier(request)).attempt == 3)
        }
    }

    @Test("identifiers are scoped by route", arguments: Backend.all)
    func scopedByRoute(_ backend: Backend) async throws {
        try await Contract.withInstances(backend) { a, _, _ in
            let weather = Self.request(route: "weather")
            var news = weather
            news.routeID = "news"
            _ = try Self.ticket(try await a.claimIdentifier(weather))
            _ = try Self.ticket(try await a.claimIdentifier(news))
        }
    }
}

@Suite("SQLite ledger: schema and restarts")
struct SQLiteLedgerSchemaTests {
    static func withFile(_ body: (String) async throws -> Void) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("x402-ledger-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await body(dir + "/ledger.db")
    }

    @Test("a ledger at schema 1 is migrated to the current schema, its rows kept, and takes identifiers")
    func migratesFromVersion1() async throws {
        try await Self.withFile { path in
            let database = try SQLiteDatabase(path: path)
            for sql in LedgerSQL.migrations[0] { _ = try await database.query(SQLStatement(sql)) }
            _ = try await database.query(LedgerSQL.writeVersion(1))
            let clock = TestClock()
            // A settled row written by a version-1 gateway (its claim statement, before migrations 3 and 4).
            let claim = PaymentStoreConformanceTests.request()
            let k = claim.key
            _ = try await database.query(SQLStatement("""
                INSERT INTO x402_payments (network, asset, payer, nonce, scheme, pay_to, amount, route_id, method, path, request_id,
                  state, attempt, instance_id, lease_until, valid_before, transaction_hash, charged_amount, claimed_at, updated_at)
                VALUES ($1, $2, $3, $4, 'exact', $5, '1000', 'weather', 'GET', '/weather', 'r1', 'settled', 1, 'old', 0, 1900000000,
                  '0xabc', '1000', $6, $6)
                """, [.text(k.network), .text(k.asset), .text(k.payer), .text(k.nonce), .text(claim.offer.payTo), .integer(clock.read())]))
            let store = try await SQLPaymentStore(database: database, settings: StoreSettings(instanceID: "new", clock: clock.read))
            let version = try await database.query(LedgerSQL.readVersion).first?.first
            #expect(version == .text(String(LedgerSQL.schemaVersion)))
            #expect(LedgerSQL.schemaVersion >= 4)
            let rows = try await store.payments(PaymentQuery())
            #expect(rows.map(\.key) == [claim.key])
            // Migration 3: older rows were settled before delivery, never queued.
            #expect(rows.first?.deferred == false && rows.first?.settleAttempts == 0)
            // Migration 4: older rows are EIP-3009 payments, their charge the amount.
            #expect(rows.first?.offer.transferMethod == "eip3009")
            #expect(rows.first?.chargedAmount == "1000" && rows.first?.chargeBasis == nil)
            let request = PaymentIdentifierConformanceTests.request()
            _ = try PaymentIdentifierConformanceTests.ticket(try await store.claimIdentifier(request))
        }
    }

    @Test("at start, identifiers the previous run of this instance left in flight are released")
    func recoverReleasesIdentifiers() async throws {
        try await Self.withFile { path in
            let clock = TestClock()
            let settings = StoreSettings(instanceID: "gw-1", clock: clock.read)
            let before = try await SQLPaymentStore(database: try SQLiteDatabase(path: path), settings: settings)
            let held = PaymentIdentifierConformanceTests.request()
            let done = PaymentIdentifierConformanceTests.request()
            _ = try PaymentIdentifierConformanceTests.ticket(try await before.claimIdentifier(held))
            let ticket = try PaymentIdentifierConformanceTests.ticket(try await before.claimIdentifier(done))
            try await before.completeIdentifier(ticket, PaymentIdentifierConformanceTests.response)

            let after = try await SQLPaymentStore(database: try SQLiteDatabase(path: path), settings: settings)
            _ = try await after.recoverInstance()
            #expect(try await after.identifier(routeID: held.routeID, id: held.id) == nil)
            #expect(try PaymentIdentifierConformanceTests.ticket(try await after.claimIdentifier(held)).attempt == 2)
            #expect(try await after.identifier(routeID: done.routeID, id: done.id)?.response == PaymentIdentifierConformanceTests.response)
        }
    }
}
