/// Counts a streamed `upto` answer as it is relayed: its length (for `perKiB`), and the data of its
/// last server-sent event whose data is a JSON object (for `perUnit`: streaming APIs put the usage
/// in a final event, possibly followed by a non-JSON one such as `[DONE]`). Works on any body:
/// lines are SSE fields only when they look like them, so a plain body just gets counted.
public struct StreamMeter: Sendable {
    /// Bytes seen.
    public private(set) var bytes = 0
    /// The data of the last complete event whose data starts with `{` (at most ``maxEventBytes``).
    public private(set) var lastJSONEvent: [UInt8]?

    /// An event's data longer than this is not kept (a usage event is small).
    public static let maxEventBytes = 64 * 1024

    private var line: [UInt8] = []
    private var lineTooLong = false
    private var data: [UInt8] = []
    private var dataTooLong = false
    private var hasData = false

    public init() {}

    public mutating func feed(_ chunk: some Sequence<UInt8>) {
        for byte in chunk {
            bytes += 1
            if byte == 0x0A {
                endLine()
            } else if line.count < Self.maxEventBytes + 8 {
                line.append(byte)
            } else {
                lineTooLong = true
            }
        }
    }

    private mutating func endLine() {
        if line.last == 0x0D { line.removeLast() }
        defer {
            line.removeAll(keepingCapacity: true)
            lineTooLong = false
        }
        if line.isEmpty {
            // The blank line ends an event (SSE).
            if hasData, !dataTooLong, data.first == UInt8(ascii: "{") { lastJSONEvent = data }
            data.removeAll(keepingCapacity: true)
            hasData = false
            dataTooLong = false
            return
        }
        guard line.starts(with: Array("data:".utf8)) else { return }
        var value = line.dropFirst(5)
        if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
        if hasData { data.append(0x0A) }
        hasData = true
        if lineTooLong || data.count + value.count > Self.maxEventBytes {
            dataTooLong = true
        } else {
            data.append(contentsOf: value)
        }
    }
}
