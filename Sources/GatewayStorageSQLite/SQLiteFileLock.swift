#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GatewayStorage

/// An exclusive lock on a file beside the database, held while the gateway runs: one SQLite ledger
/// belongs to one gateway process (several instances share PostgreSQL instead). A second process on
/// the same file is refused at start rather than sharing claims it cannot see in flight.
final class SQLiteFileLock: Sendable {
    private let descriptor: Int32

    init(path: String) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw StorageError(.unavailable, "\(path): cannot open the lock file: \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno == EWOULDBLOCK ? "another gateway process uses this database" : String(cString: strerror(errno))
            close(fd)
            throw StorageError(.unavailable, "\(path): \(reason)")
        }
        descriptor = fd
    }

    deinit {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
