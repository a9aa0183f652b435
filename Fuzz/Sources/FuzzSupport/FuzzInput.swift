/// Reads structured values off the front of a fuzz input. Every read succeeds: past the end, bytes
/// read as zero and strings as empty, so that any input is a valid test case.
public struct FuzzInput {
    private let bytes: [UInt8]
    private var position = 0

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    public var isAtEnd: Bool { position >= bytes.count }

    public mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func bool() -> Bool { byte() & 1 == 1 }

    /// One of `choices` (which must not be empty), picked by the next byte.
    public mutating func pick<T>(_ choices: [T]) -> T {
        choices[Int(byte()) % choices.count]
    }

    /// Up to `maxCount` bytes: a length byte, then that many bytes (fewer at the end).
    public mutating func chunk(maxCount: Int = 255) -> [UInt8] {
        let count = min(Int(byte()), maxCount, bytes.count - min(position, bytes.count))
        defer { position += count }
        return Array(bytes[position..<(position + count)])
    }

    /// A length-prefixed string (invalid UTF-8 repaired with U+FFFD, as a decoder that accepts any
    /// bytes would).
    public mutating func string(maxBytes: Int = 255) -> String {
        String(decoding: chunk(maxCount: maxBytes), as: UTF8.self)
    }

    /// Everything not read yet.
    public mutating func rest() -> [UInt8] {
        defer { position = bytes.count }
        return position < bytes.count ? Array(bytes[position...]) : []
    }
}
