import Foundation

/// The statements of the payment-identifier records (`x402_payment_identifiers`, migration 2).
/// Stored answers keep their headers as `name: value` lines and their body as base64 text, so both
/// databases store them in plain `TEXT` columns.
extension LedgerSQL {
    private static let identifierMatch = "route_id = $1 AND id = $2"

    /// Inserts an in-flight record, or takes over a claimable one (released, in flight past its
    /// lease, completed past its expiry); returns `attempt` when claimed, no row otherwise.
    public static func claimIdentifier(_ r: IdentifierClaimRequest, instance: String, now: Int64, leaseUntil: Int64) -> SQLStatement {
        SQLStatement("""
            INSERT INTO x402_payment_identifiers (route_id, id, payment_hash, binding_hash, network, asset, payer, nonce, request_id,
              state, attempt, instance_id, lease_until, created_at, expires_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'in_flight', 1, $10, $11, $12, $13, $12)
            ON CONFLICT (route_id, id) DO UPDATE SET
              payment_hash = excluded.payment_hash, binding_hash = excluded.binding_hash, network = excluded.network,
              asset = excluded.asset, payer = excluded.payer, nonce = excluded.nonce, request_id = excluded.request_id,
              state = 'in_flight', attempt = x402_payment_identifiers.attempt + 1, instance_id = excluded.instance_id,
              lease_until = excluded.lease_until, response_status = NULL, response_headers = NULL, response_body = NULL,
              created_at = excluded.created_at, completed_at = NULL, expires_at = excluded.expires_at, updated_at = excluded.updated_at
            WHERE x402_payment_identifiers.state = 'released'
               OR (x402_payment_identifiers.state = 'in_flight' AND x402_payment_identifiers.lease_until <= $12)
               OR (x402_payment_identifiers.state = 'completed' AND x402_payment_identifiers.expires_at <= $12)
            RETURNING attempt
            """,
            [.text(r.routeID), .text(r.id), .text(r.paymentHash), .text(r.bindingHash), .text(r.key.network), .text(r.key.asset),
             .text(r.key.payer), .text(r.key.nonce), .text(r.requestID), .text(instance), .integer(leaseUntil), .integer(now),
             .integer(r.expiresAt)])
    }

    /// Marks the ticket's record completed with its answer; returns `attempt` when applied.
    public static func completeIdentifier(_ ticket: IdentifierTicket, _ response: StoredResponse, now: Int64) -> SQLStatement {
        SQLStatement("""
            UPDATE x402_payment_identifiers SET state = 'completed', response_status = $4, response_headers = $5,
              response_body = $6, completed_at = $7, lease_until = $7, updated_at = $7
            WHERE \(identifierMatch) AND attempt = $3 AND state = 'in_flight'
            RETURNING attempt
            """,
            [.text(ticket.routeID), .text(ticket.id), .integer(Int64(ticket.attempt)), .integer(Int64(response.status)),
             .text(encodeHeaders(response.headers)), SQLValue(response.body.map { Data($0).base64EncodedString() }), .integer(now)])
    }

    /// Lets the ticket's in-flight record go (kept as `released`, so attempts keep counting).
    public static func releaseIdentifier(_ ticket: IdentifierTicket, now: Int64) -> SQLStatement {
        SQLStatement("""
            UPDATE x402_payment_identifiers SET state = 'released', lease_until = $4, updated_at = $4
            WHERE \(identifierMatch) AND attempt = $3 AND state = 'in_flight'
            """, [.text(ticket.routeID), .text(ticket.id), .integer(Int64(ticket.attempt)), .integer(now)])
    }

    /// The columns ``identifierRecord(from:)`` reads, in order.
    public static let identifierColumns = """
        route_id, id, payment_hash, binding_hash, network, asset, payer, nonce, request_id, state, attempt, instance_id, \
        lease_until, response_status, response_headers, response_body, created_at, completed_at, expires_at, updated_at
        """

    public static func readIdentifier(routeID: String, id: String) -> SQLStatement {
        SQLStatement("SELECT \(identifierColumns) FROM x402_payment_identifiers WHERE \(identifierMatch)", [.text(routeID), .text(id)])
    }

    /// At the start of an instance that alone uses its id: the records its previous run left in
    /// flight are released (the payments they belong to are recovered by ``recoverInstance(_:now:)``).
    public static func recoverIdentifiers(_ instance: String, now: Int64) -> SQLStatement {
        SQLStatement("""
            UPDATE x402_payment_identifiers SET state = 'released', lease_until = $2, updated_at = $2
            WHERE instance_id = $1 AND state = 'in_flight'
            """, [.text(instance), .integer(now)])
    }

    /// Forgets records past their expiry that no live request holds.
    public static func purgeIdentifiers(now: Int64) -> SQLStatement {
        SQLStatement("""
            DELETE FROM x402_payment_identifiers WHERE expires_at <= $1 AND (state <> 'in_flight' OR lease_until <= $1)
            """, [.integer(now)])
    }

    /// A record from the values of ``identifierColumns``, in order.
    public static func identifierRecord(from v: [SQLValue]) throws(StorageError) -> IdentifierRecord {
        func text(_ i: Int) throws(StorageError) -> String {
            guard i < v.count, let value = v[i].text else {
                throw StorageError(.corrupt, "x402_payment_identifiers: column \(i) is not text")
            }
            return value
        }
        func int(_ i: Int) throws(StorageError) -> Int64 {
            guard i < v.count, let value = v[i].integer else {
                throw StorageError(.corrupt, "x402_payment_identifiers: column \(i) is not an integer")
            }
            return value
        }
        func optionalText(_ i: Int) -> String? { i < v.count ? v[i].text : nil }
        func optionalInt(_ i: Int) -> Int64? { i < v.count ? v[i].integer : nil }
        guard let state = IdentifierState(rawValue: try text(9)) else {
            throw StorageError(.corrupt, "x402_payment_identifiers: unknown state")
        }
        var response: StoredResponse?
        if state == .completed, let status = optionalInt(13) {
            var body: [UInt8]?
            if let encoded = optionalText(15) {
                guard let data = Data(base64Encoded: encoded) else {
                    throw StorageError(.corrupt, "x402_payment_identifiers: response_body is not base64")
                }
                body = Array(data)
            }
            response = StoredResponse(status: Int(status), headers: try decodeHeaders(optionalText(14) ?? ""), body: body)
        }
        return IdentifierRecord(
            routeID: try text(0), id: try text(1), paymentHash: try text(2), bindingHash: try text(3),
            key: PaymentKey(network: try text(4), asset: try text(5), payer: try text(6), nonce: try text(7)),
            requestID: try text(8), state: state, attempt: Int(try int(10)), instanceID: try text(11), leaseUntil: try int(12),
            response: response, createdAt: try int(16), completedAt: optionalInt(17), expiresAt: try int(18), updatedAt: try int(19))
    }

    /// `name: value` lines, LF-terminated. Fields with a CR or LF are never stored (the caller drops them).
    static func encodeHeaders(_ headers: [HeaderField]) -> String {
        var out = ""
        for field in headers {
            out += field.name
            out += ": "
            out += field.value
            out += "\n"
        }
        return out
    }

    static func decodeHeaders(_ text: String) throws(StorageError) -> [HeaderField] {
        var fields: [HeaderField] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let colon = line.firstIndex(of: ":"), line[line.index(after: colon)...].hasPrefix(" ") else {
                throw StorageError(.corrupt, "x402_payment_identifiers: a stored header is not 'name: value'")
            }
            fields.append(HeaderField(String(line[..<colon]), String(line[line.index(colon, offsetBy: 2)...])))
        }
        return fields
    }
}
