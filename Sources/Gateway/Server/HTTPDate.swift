import Foundation
import GatewayCore
import Logging
import NIOCore
import NIOHTTP1
import Synchronization
import X402

/// The `Date` header value, formatted once per second.
enum HTTPDate {
    private static let cache = Mutex<(second: Int, value: String)>((-1, ""))

    static func now() -> String {
        let second = Int(Date().timeIntervalSince1970)
        if let hit = cache.withLock({ $0.second == second ? $0.value : nil }) { return hit }
        var t = time_t(second)
        var parts = tm()
        gmtime_r(&t, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        let value = "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
        cache.withLock { $0 = (second, value) }
        return value
    }
}
