import Foundation
import Logging
import X402

/// One JSON object per line on standard error: `ts`, `level`, `logger`, `msg`, then the metadata
/// (flattened; values as strings). The gateway never puts payment headers or secrets in metadata.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let write: @Sendable (String) -> Void

    public init(label: String, level: Logger.Level = .info, write: @escaping @Sendable (String) -> Void = JSONLogHandler.standardError) {
        self.label = label
        self.logLevel = level
        self.write = write
    }

    /// One `write(2)` per line (lines up to PIPE_BUF bytes are not interleaved with other writers).
    public static let standardError: @Sendable (String) -> Void = { line in writeAll(STDERR_FILENO, line) }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "{\"ts\":\(JSONString.quoted(Self.timestamp()))"
        line += ",\"level\":\(JSONString.quoted(event.level.rawValue))"
        line += ",\"logger\":\(JSONString.quoted(label))"
        line += ",\"msg\":\(JSONString.quoted(event.message.description))"
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        for key in merged.keys.sorted() where !["ts", "level", "logger", "msg"].contains(key) {
            line += ",\(JSONString.quoted(key)):\(JSONString.quoted(Self.flatten(merged[key]!)))"
        }
        line += "}\n"
        write(line)
    }

    private static func flatten(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let s): return s
        case .stringConvertible(let c): return c.description
        default: return value.description
        }
    }

    /// UTC, millisecond precision: `2026-11-21T06:13:00.123Z`.
    static func timestamp(_ date: Date = Date()) -> String {
        let seconds = date.timeIntervalSince1970
        var t = time_t(seconds.rounded(.down))
        var parts = tm()
        gmtime_r(&t, &parts)
        let millis = Int((seconds - seconds.rounded(.down)) * 1000)
        func pad(_ n: Int32, _ width: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
    }
}

private func writeAll(_ fd: Int32, _ line: String) {
    var line = line
    line.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return }
            offset += written
        }
    }
}
