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

    /// The lock file of the database at `path`: beside the file the path resolves to, so that two
    /// paths to one database (a symbolic link to it or to its folder, `..`) take the same lock.
    /// Hard links to one file still have two names, and two locks.
    static func path(forDatabase path: String) -> String {
        if let resolved = realpath(path, nil) {
            defer { free(resolved) }
            return String(cString: resolved) + ".lock"
        }
        // Not created yet: resolve its folder.
        let slash = path.lastIndex(of: "/")
        let folder = slash.map { String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard let resolved = realpath(folder.isEmpty ? "/" : folder, nil) else { return path + ".lock" }
        defer { free(resolved) }
        let base = String(cString: resolved)
        return (base == "/" ? "" : base) + "/" + name + ".lock"
    }

    deinit {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }
}
