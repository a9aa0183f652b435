import BigInt
import Testing
import X402

@Suite("Exact money")
struct MoneyTests {
    @Test("dollar prices convert exactly to atomic units", arguments: [
        ("$0.01", 6, "10000"), ("$0.001", 6, "1000"), ("$0.000001", 6, "1"), ("$4.02", 6, "4020000"),
        ("$1.005", 6, "1005000"), ("$19.99", 6, "19990000"), ("0.01", 6, "10000"), ("$1000", 6, "1000000000"),
        ("$1", 18, "1000000000000000000"), ("$4.02", 18, "4020000000000000000"), ("$0.10", 6, "100000"),
        ("$.5", 6, "500000"), ("$123456789.123456", 6, "123456789123456"),
    ])
    func converts(text: String, decimals: Int, expected: String) throws {
        #expect(try Money.atomicUnits(fromDollars: text, decimals: decimals) == BigUInt(expected)!)
    }

    @Test("prices that are not plain exact amounts are refused", arguments: [
        ("$1,000", Money.ParseError.malformed("$1,000")), ("$0.0000001", .tooPrecise(decimals: 6)), ("$0", .zero),
        ("$0.000", .zero), ("", .empty), ("$", .empty), ("$-1", .malformed("$-1")), ("$1e3", .malformed("$1e3")),
        ("$ 1", .malformed("$ 1")), ("1.", .malformed("1.")), ("$1.2.3", .malformed("$1.2.3")),
        ("0.01 USDC", .malformed("0.01 USDC")), ("$١", .malformed("$١")),
    ])
    func refuses(text: String, error: Money.ParseError) {
        #expect(throws: error) { try Money.atomicUnits(fromDollars: text, decimals: 6) }
    }

    @Test("atomic amounts format back to human decimals", arguments: [
        ("4020000", 6, "4.02"), ("1", 6, "0.000001"), ("1000000", 6, "1"), ("0", 6, "0"), ("15", 0, "15"),
    ])
    func formats(amount: String, decimals: Int, expected: String) {
        #expect(Money.format(BigUInt(amount)!, decimals: decimals) == expected)
    }

    @Test("integer amount strings are strict", arguments: [("10000", true), ("0", true), ("010", false), ("-1", false), ("1.0", false), ("", false), (" 1", false)])
    func integers(text: String, ok: Bool) {
        #expect((Money.atomicUnits(fromInteger: text) != nil) == ok)
    }
}
