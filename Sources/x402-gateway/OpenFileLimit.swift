import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Every client connection holds a descriptor, and so does each upstream connection it uses: the
/// soft limit on open files (often 1024) would refuse connections long before
/// `limits.maxConnections`. Raised to the hard limit at start, as nginx's `worker_rlimit_nofile`
/// or Go's runtime do; a hard limit still too low for the configured bound is reported.
enum OpenFileLimit {
    static func raise(forConnections maxConnections: Int?, logger: Logger) {
        var limit = rlimit()
        guard getrlimit(RLIMIT_NOFILE_VALUE, &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(RLIMIT_NOFILE_VALUE, &raised) == 0 { limit = raised }
        }
        // Each client connection needs one descriptor (and one more while it is proxied, for its
        // upstream connection), plus a few for the rest.
        let available = Int(clamping: limit.rlim_cur)  // RLIM_INFINITY is the largest value
        if let maxConnections, maxConnections + 64 > available {
            logger.warning("the open-file limit is below limits.maxConnections: connections beyond it fail to open instead of getting a 503",
                           metadata: ["openFileLimit": "\(available)", "maxConnections": "\(maxConnections)"])
        } else {
            logger.debug("open-file limit", metadata: ["openFileLimit": "\(available)"])
        }
    }

    /// `RLIMIT_NOFILE` as the type `getrlimit` takes on this platform.
    #if os(Linux)
    private static let RLIMIT_NOFILE_VALUE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    private static let RLIMIT_NOFILE_VALUE = RLIMIT_NOFILE
    #endif
}
