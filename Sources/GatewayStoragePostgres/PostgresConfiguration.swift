import Foundation
import GatewayStorage

/// Where and how to reach the PostgreSQL ledger, read from a libpq-style URL:
/// `postgres://user:password@host:port/database?sslmode=require`.
///
/// Query parameters (the libpq names; any other is refused, so that a typo is not ignored):
/// - `sslmode`: `disable` (plain), `allow` and `prefer` (TLS when the server offers it), `require`
///   (TLS or fail), `verify-ca` (TLS and a certificate from a trusted CA), `verify-full` (that, and
///   the host's name in the certificate). As in libpq, `prefer` and `require` encrypt but do not
///   check the certificate. Default: `disable` for a loopback host (`localhost`, `127.0.0.1`,
///   `::1`), `prefer` otherwise.
/// - `sslrootcert`: a PEM file of the CAs to trust (instead of the system's) for `verify-*`.
/// - `connect_timeout`: seconds to wait for a connection (default 5).
/// - `application_name`: shown in `pg_stat_activity` (default `x402-gateway`).
/// - `options`: server options sent at startup, as libpq's (e.g. `-c search_path=ledger`).
public struct PostgresConfiguration: Sendable, Equatable, CustomStringConvertible {
    public enum TLSMode: String, Sendable, Equatable {
        case disable, allow, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var username: String
    /// Never printed: ``description`` and every error message leave it out.
    public var password: String?
    public var database: String
    public var tls: TLSMode
    public var rootCertificatePath: String?
    public var applicationName: String
    /// Server options sent at startup (libpq's `options`), e.g. `-c search_path=ledger`.
    public var serverOptions: String?
    /// How long to wait for one connection to open (TCP, TLS and authentication).
    public var connectTimeout: Duration
    /// Connections each ``PostgresDatabase`` may open (its pool's size).
    public var poolSize: Int
    /// How long a statement may wait for a pooled connection before failing with `unavailable`
    /// (the pool waits through refused connections otherwise, up to a minute).
    public var acquireTimeout: Duration
    /// How long the server lets one statement of the pool run before cancelling it (PostgreSQL's
    /// `statement_timeout`; nil: the server's own setting). A cancelled statement changed nothing:
    /// it fails with `unavailable` and the paid request fails closed, instead of waiting on a lock
    /// or a stalled disk for as long as the client does. Migrations are not bounded by it.
    public var statementTimeout: Duration?

    public init(host: String, port: Int = 5432, username: String, password: String?, database: String,
                tls: TLSMode? = nil, rootCertificatePath: String? = nil, applicationName: String = "x402-gateway",
                serverOptions: String? = nil, connectTimeout: Duration = .seconds(5), poolSize: Int = 8,
                acquireTimeout: Duration = .seconds(5), statementTimeout: Duration? = .seconds(10)) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls ?? (Self.isLoopback(host) ? .disable : .prefer)
        self.rootCertificatePath = rootCertificatePath
        self.applicationName = applicationName
        self.serverOptions = serverOptions
        self.connectTimeout = connectTimeout
        self.poolSize = poolSize
        self.acquireTimeout = acquireTimeout
        self.statementTimeout = statementTimeout
    }

    /// Reads a `postgres://` (or `postgresql://`) URL; a malformed one is a ``StorageError`` (`unavailable`)
    /// that does not repeat the URL (it may hold the password).
    public init(url: String, poolSize: Int = 8) throws(StorageError) {
        func invalid(_ why: String) -> StorageError {
            StorageError(.unavailable, "invalid PostgreSQL URL: \(why) (expected postgres://user:password@host:port/database)")
        }
        guard let components = URLComponents(string: url) else { throw invalid("not a URL") }
        guard let scheme = components.scheme?.lowercased(), scheme == "postgres" || scheme == "postgresql" else {
            throw invalid("the scheme must be postgres:// or postgresql://")
        }
        var host = components.host ?? ""
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw invalid("no host") }
        guard let username = components.user, !username.isEmpty else { throw invalid("no user name") }
        let port = components.port ?? 5432
        guard (1...65535).contains(port) else { throw invalid("port \(port) is out of range") }
        var database = components.path
        if database.hasPrefix("/") { database.removeFirst() }
        guard !database.contains("/") else { throw invalid("the path must be one database name") }
        guard poolSize >= 1 else { throw invalid("the pool size must be at least 1") }

        self.init(host: host, port: port, username: username, password: components.password,
                  database: database.isEmpty ? username : database, poolSize: poolSize)
        for item in components.queryItems ?? [] {
            let value = item.value ?? ""
            switch item.name {
            case "sslmode":
                guard let mode = TLSMode(rawValue: value) else {
                    throw invalid("sslmode must be disable, allow, prefer, require, verify-ca or verify-full")
                }
                tls = mode
            case "sslrootcert":
                rootCertificatePath = value
            case "connect_timeout":
                guard let seconds = Int(value), seconds > 0 else { throw invalid("connect_timeout must be a positive number of seconds") }
                connectTimeout = .seconds(seconds)
            case "pool_timeout":
                guard let seconds = Int(value), seconds > 0 else { throw invalid("pool_timeout must be a positive number of seconds") }
                acquireTimeout = .seconds(seconds)
            case "statement_timeout":
                guard let milliseconds = Int(value), milliseconds >= 0 else {
                    throw invalid("statement_timeout must be a number of milliseconds (0: the server's own setting)")
                }
                statementTimeout = milliseconds == 0 ? nil : .milliseconds(milliseconds)
            case "application_name":
                applicationName = value
            case "options":
                serverOptions = value
            default:
                throw invalid("unknown parameter \"\(item.name)\"")
            }
        }
    }

    /// `host:port/database`, for messages.
    public var target: String {
        let host = host.contains(":") ? "[\(host)]" : host
        return "\(host):\(port)/\(database)"
    }

    /// The URL without its password.
    public var description: String {
        "postgres://\(username)@\(target)?sslmode=\(tls.rawValue)"
    }

    static func isLoopback(_ host: String) -> Bool {
        ["localhost", "127.0.0.1", "::1"].contains(host.lowercased())
    }

    /// `message` with every occurrence of the password masked (a server or a library might echo it).
    func redacted(_ message: String) -> String {
        guard let password, password.count >= 3 else { return message }
        return message.replacingOccurrences(of: password, with: "•••")
    }
}
