/// A strict RFC 8259 JSON reader for untrusted input (payment headers), producing a small value tree.
///
/// Refused: anything outside the RFC 8259 grammar (trailing commas, leading zeros, `NaN`, comments,
/// single quotes, unquoted keys, bare control characters in strings, unknown escapes, trailing data),
/// invalid UTF-8 (overlong forms, encoded surrogates, beyond U+10FFFF), `\u` escapes that leave a
/// surrogate unpaired, nesting deeper than `maxDepth`, and duplicate keys in one object (compared as
/// Swift strings, i.e. by canonical equivalence). A leading UTF-8 byte order mark is skipped, as
/// RFC 8259 §8.1 allows (and as `JSONDecoder` does).
///
/// It never traps on any input: every read is bounds-checked against the buffer, and recursion is
/// bounded by `maxDepth`.
///
/// Stricter than Foundation's `JSONDecoder` (swift-foundation), which accepts trailing commas, keeps
/// the first of duplicate keys, reads UTF-16/UTF-32 input, and checks numbers, escapes, control
/// characters and UTF-8 only in the parts it decodes (so anything goes inside an ignored member).
public enum JSONReader {
    /// The nesting limit of Foundation's `JSONDecoder`: 512 nested arrays/objects parse, 513 do not.
    public static let defaultMaxDepth = 512

    public static func parse(_ bytes: [UInt8], maxDepth: Int = defaultMaxDepth) throws(JSONReaderError) -> JSONNode {
        let result = bytes.withUnsafeBufferPointer { buffer in
            var parser = JSONParser(buffer, maxDepth: maxDepth)
            return Result { () throws(JSONReaderError) -> JSONNode in try parser.document() }
        }
        return try result.get()
    }

    public static func parse(_ bytes: UnsafeRawBufferPointer, maxDepth: Int = defaultMaxDepth) throws(JSONReaderError) -> JSONNode {
        var parser = JSONParser(bytes.assumingMemoryBound(to: UInt8.self), maxDepth: maxDepth)
        return try parser.document()
    }
}

/// A parsed JSON value. Numbers keep their literal text (already checked against the RFC 8259
/// number grammar), so nothing is rounded until a caller picks a numeric type.
public enum JSONNode: Sendable, Hashable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONNode])
    /// Members in document order; keys are unique.
    case object([JSONMember])

    /// The value of `key` when this is an object that has it.
    public subscript(key: String) -> JSONNode? {
        guard case .object(let members) = self else { return nil }
        for member in members where member.key == key { return member.value }
        return nil
    }
}

public struct JSONMember: Sendable, Hashable {
    public var key: String
    public var value: JSONNode

    public init(key: String, value: JSONNode) {
        self.key = key
        self.value = value
    }
}

/// Where and why a document was refused. `offset` is the byte offset of the offending byte.
public struct JSONReaderError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case unexpectedEnd = "unexpected end of input"
        case unexpectedCharacter = "unexpected character"
        case invalidNumber = "invalid number"
        case invalidEscape = "invalid escape sequence"
        case unpairedSurrogate = "\\u escape leaves a surrogate unpaired"
        case controlCharacter = "unescaped control character in string"
        case invalidUTF8 = "invalid UTF-8"
        case trailingComma = "trailing comma"
        case duplicateKey = "duplicate key"
        case tooDeep = "nesting too deep"
        case trailingData = "data after the JSON value"
    }

    public var kind: Kind
    public var offset: Int

    public init(_ kind: Kind, at offset: Int) {
        self.kind = kind
        self.offset = offset
    }

    public var description: String { "\(kind.rawValue) at byte \(offset)" }
}

private enum ASCII {
    static let quote = UInt8(ascii: "\"")
    static let backslash = UInt8(ascii: "\\")
    static let slash = UInt8(ascii: "/")
    static let comma = UInt8(ascii: ",")
    static let colon = UInt8(ascii: ":")
    static let openBrace = UInt8(ascii: "{")
    static let closeBrace = UInt8(ascii: "}")
    static let openBracket = UInt8(ascii: "[")
    static let closeBracket = UInt8(ascii: "]")
    static let minus = UInt8(ascii: "-")
    static let plus = UInt8(ascii: "+")
    static let dot = UInt8(ascii: ".")
    static let zero = UInt8(ascii: "0")
    static let nine = UInt8(ascii: "9")
    static let lowerE = UInt8(ascii: "e")
    static let upperE = UInt8(ascii: "E")
}

/// Recursive descent over a byte buffer. Members and elements of the containers being read are
/// collected on two shared stacks, so each finished container costs one exactly-sized array.
private struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    var index = 0
    var members: [JSONMember] = []
    var elements: [JSONNode] = []
    /// Reused for strings that contain escapes.
    var scratch: [UInt8] = []

    init(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    mutating func document() throws(JSONReaderError) -> JSONNode {
        if bytes.count >= 3, bytes[0] == 0xEF, bytes[1] == 0xBB, bytes[2] == 0xBF { index = 3 }
        skipWhitespace()
        let value = try value(depth: 0)
        skipWhitespace()
        guard index == bytes.count else { throw JSONReaderError(.trailingData, at: index) }
        return value
    }

    // MARK: - Helpers

    /// The byte at `index`, or nil at the end.
    @inline(__always) func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    @inline(__always) mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x0A, 0x0D, 0x09: index += 1
            default: return
            }
        }
    }

    func error(_ kind: JSONReaderError.Kind) -> JSONReaderError {
        JSONReaderError(index < bytes.count ? kind : .unexpectedEnd, at: index)
    }

    @inline(__always) static func isDigit(_ byte: UInt8) -> Bool {
        byte >= ASCII.zero && byte <= ASCII.nine
    }

    // MARK: - Values

    mutating func value(depth: Int) throws(JSONReaderError) -> JSONNode {
        guard let byte = peek() else { throw error(.unexpectedEnd) }
        switch byte {
        case ASCII.openBrace: return try object(depth: depth + 1)
        case ASCII.openBracket: return try array(depth: depth + 1)
        case ASCII.quote: return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case ASCII.minus, ASCII.zero...ASCII.nine: return .number(try number())
        default: throw error(.unexpectedCharacter)
        }
    }

    mutating func literal(_ word: StaticString) throws(JSONReaderError) {
        let count = word.utf8CodeUnitCount
        let start = word.utf8Start
        for offset in 0..<count {
            guard index < bytes.count else { throw error(.unexpectedEnd) }
            guard bytes[index] == start[offset] else { throw error(.unexpectedCharacter) }
            index += 1
        }
    }

    mutating func object(depth: Int) throws(JSONReaderError) -> JSONNode {
        guard depth <= maxDepth else { throw error(.tooDeep) }
        index += 1  // {
        skipWhitespace()
        if peek() == ASCII.closeBrace {
            index += 1
            return .object([])
        }
        let base = members.count
        defer { members.removeSubrange(base...) }
        // Small objects are checked for duplicate keys by scanning; large ones through a set, so
        // a hostile object with thousands of keys stays linear.
        var keys: Set<String> = []
        var usesSet = false
        while true {
            guard peek() == ASCII.quote else { throw error(.unexpectedCharacter) }
            let keyOffset = index
            let key = try string()
            if usesSet {
                guard keys.insert(key).inserted else { throw JSONReaderError(.duplicateKey, at: keyOffset) }
            } else {
                for i in base..<members.count where members[i].key == key {
                    throw JSONReaderError(.duplicateKey, at: keyOffset)
                }
                if members.count - base >= 16 {
                    keys = Set(members[base...].lazy.map(\.key))
                    keys.insert(key)
                    usesSet = true
                }
            }
            skipWhitespace()
            guard peek() == ASCII.colon else { throw error(.unexpectedCharacter) }
            index += 1
            skipWhitespace()
            let value = try value(depth: depth)
            members.append(JSONMember(key: key, value: value))
            skipWhitespace()
            switch peek() {
            case ASCII.comma:
                index += 1
                skipWhitespace()
                if peek() == ASCII.closeBrace { throw error(.trailingComma) }
            case ASCII.closeBrace:
                index += 1
                return .object(Array(members[base...]))
            default:
                throw error(.unexpectedCharacter)
            }
        }
    }

    mutating func array(depth: Int) throws(JSONReaderError) -> JSONNode {
        guard depth <= maxDepth else { throw error(.tooDeep) }
        index += 1  // [
        skipWhitespace()
        if peek() == ASCII.closeBracket {
            index += 1
            return .array([])
        }
        let base = elements.count
        defer { elements.removeSubrange(base...) }
        while true {
            elements.append(try value(depth: depth))
            skipWhitespace()
            switch peek() {
            case ASCII.comma:
                index += 1
                skipWhitespace()
                if peek() == ASCII.closeBracket { throw error(.trailingComma) }
            case ASCII.closeBracket:
                index += 1
                return .array(Array(elements[base...]))
            default:
                throw error(.unexpectedCharacter)
            }
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`, returned as written.
    mutating func number() throws(JSONReaderError) -> String {
        let start = index
        if peek() == ASCII.minus { index += 1 }
        guard let first = peek(), Self.isDigit(first) else { throw JSONReaderError(.invalidNumber, at: index) }
        index += 1
        if first == ASCII.zero {
            if let next = peek(), Self.isDigit(next) { throw JSONReaderError(.invalidNumber, at: index) }  // leading zero
        } else {
            skipDigits()
        }
        if peek() == ASCII.dot {
            index += 1
            guard let digit = peek(), Self.isDigit(digit) else { throw JSONReaderError(.invalidNumber, at: index) }
            skipDigits()
        }
        if let e = peek(), e == ASCII.lowerE || e == ASCII.upperE {
            index += 1
            if let sign = peek(), sign == ASCII.plus || sign == ASCII.minus { index += 1 }
            guard let digit = peek(), Self.isDigit(digit) else { throw JSONReaderError(.invalidNumber, at: index) }
            skipDigits()
        }
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
    }

    @inline(__always) mutating func skipDigits() {
        while index < bytes.count, Self.isDigit(bytes[index]) { index += 1 }
    }

    // MARK: - Strings

    /// A string starting at the opening quote. Plain strings are copied once from the input;
    /// strings with escapes are assembled in `scratch`.
    mutating func string() throws(JSONReaderError) -> String {
        index += 1  // "
        let start = index
        while index < bytes.count {
            let byte = bytes[index]
            if byte == ASCII.quote {
                let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
                index += 1
                return text
            } else if byte == ASCII.backslash {
                scratch.removeAll(keepingCapacity: true)
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
                return try escapedString()
            } else if byte < 0x20 {
                throw error(.controlCharacter)
            } else if byte < 0x80 {
                index += 1
            } else {
                index += try utf8SequenceLength()
            }
        }
        throw error(.unexpectedEnd)
    }

    /// The rest of a string once an escape was met; `scratch` holds what came before it.
    mutating func escapedString() throws(JSONReaderError) -> String {
        while index < bytes.count {
            let byte = bytes[index]
            if byte == ASCII.quote {
                index += 1
                return String(decoding: scratch, as: UTF8.self)
            } else if byte == ASCII.backslash {
                try escape()
            } else if byte < 0x20 {
                throw error(.controlCharacter)
            } else if byte < 0x80 {
                scratch.append(byte)
                index += 1
            } else {
                let length = try utf8SequenceLength()
                scratch.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[index..<(index + length)]))
                index += length
            }
        }
        throw error(.unexpectedEnd)
    }

    /// One escape sequence starting at the backslash, appended to `scratch` as UTF-8.
    mutating func escape() throws(JSONReaderError) {
        let escapeOffset = index
        index += 1
        guard let byte = peek() else { throw error(.unexpectedEnd) }
        let simple: UInt8
        switch byte {
        case ASCII.quote: simple = ASCII.quote
        case ASCII.backslash: simple = ASCII.backslash
        case ASCII.slash: simple = ASCII.slash
        case UInt8(ascii: "b"): simple = 0x08
        case UInt8(ascii: "f"): simple = 0x0C
        case UInt8(ascii: "n"): simple = 0x0A
        case UInt8(ascii: "r"): simple = 0x0D
        case UInt8(ascii: "t"): simple = 0x09
        case UInt8(ascii: "u"):
            index += 1
            let unit = try hex4()
            var scalarValue = UInt32(unit)
            if (0xDC00...0xDFFF).contains(unit) {
                throw JSONReaderError(.unpairedSurrogate, at: escapeOffset)
            }
            if (0xD800...0xDBFF).contains(unit) {
                guard index + 1 < bytes.count, bytes[index] == ASCII.backslash, bytes[index + 1] == UInt8(ascii: "u") else {
                    throw JSONReaderError(.unpairedSurrogate, at: escapeOffset)
                }
                index += 2
                let low = try hex4()
                guard (0xDC00...0xDFFF).contains(low) else { throw JSONReaderError(.unpairedSurrogate, at: escapeOffset) }
                scalarValue = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
            }
            // Not a surrogate, or a valid pair: always a Unicode scalar.
            guard let scalar = Unicode.Scalar(scalarValue) else { throw JSONReaderError(.unpairedSurrogate, at: escapeOffset) }
            scratch.append(contentsOf: scalar.utf8)
            return
        default:
            throw error(.invalidEscape)
        }
        scratch.append(simple)
        index += 1
    }

    mutating func hex4() throws(JSONReaderError) -> UInt16 {
        var value: UInt16 = 0
        for _ in 0..<4 {
            guard let byte = peek() else { throw error(.unexpectedEnd) }
            let digit: UInt8
            switch byte {
            case ASCII.zero...ASCII.nine: digit = byte - ASCII.zero
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error(.invalidEscape)
            }
            value = value << 4 | UInt16(digit)
            index += 1
        }
        return value
    }

    /// The length of the well-formed UTF-8 sequence at `index` (whose first byte is ≥ 0x80), per
    /// Unicode table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF.
    func utf8SequenceLength() throws(JSONReaderError) -> Int {
        let lead = bytes[index]
        let length: Int
        var low: UInt8 = 0x80
        var high: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; high = 0x9F
        case 0xF0: length = 4; low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; high = 0x8F
        default: throw JSONReaderError(.invalidUTF8, at: index)
        }
        guard index + length <= bytes.count else { throw JSONReaderError(.invalidUTF8, at: index) }
        let second = bytes[index + 1]
        guard second >= low && second <= high else { throw JSONReaderError(.invalidUTF8, at: index) }
        for offset in 2..<max(length, 2) where bytes[index + offset] & 0xC0 != 0x80 {
            throw JSONReaderError(.invalidUTF8, at: index)
        }
        return length
    }
}
