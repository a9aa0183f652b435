#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import FuzzDriver

/// Runs one fuzz target under libFuzzer. A target's `main.swift` calls ``run(_:)`` with a closure
/// that takes one input and checks its properties with ``require(_:_:file:line:)``; libFuzzer's
/// flags (`-max_total_time`, `-runs`, a corpus folder, a crash file to replay…) are the program's
/// arguments. A broken property aborts the process, which libFuzzer reports as a crash with the
/// input saved.
public enum Fuzzer {
    /// The target; set once before the fuzzing loop starts, only read by it.
    nonisolated(unsafe) static var target: (([UInt8]) -> Void)?

    public static func run(_ target: @escaping ([UInt8]) -> Void) -> Never {
        Self.target = target
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzerTestOneInput))
    }
}

/// libFuzzer's callback. Also exported under its standard name: compiler-rt's own `main` (linked in
/// by `-sanitize=fuzzer`) refers to it, whichever `main` the linker ends up keeping.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let target = Fuzzer.target else {
        printToStandardError("fuzz target not registered: call Fuzzer.run from main.swift")
        abort()
    }
    target(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

/// Checks a property of the current input; when it does not hold, prints `message` and aborts
/// (libFuzzer saves the input as a crash).
public func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                    file: StaticString = #fileID, line: UInt = #line) {
    guard !condition() else { return }
    printToStandardError("PROPERTY FAILED at \(file):\(line): \(message())")
    abort()
}

/// Writes a line to standard error, unbuffered (the process may abort right after).
func printToStandardError(_ text: String) {
    var line = text + "\n"
    line.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}
