// YAML configuration loading (`gateway.yaml`): Yams's parser, then the gateway's reader and checks.
//
// Input: the file's text. Properties:
// - loading never traps, whatever the text;
// - a refused file has at least one diagnostic, each with the file name, a line inside the text
//   (lines ended as YAML ends them, CR alone included) and a column from 1, in position order;
// - an accepted file loads the same way twice, and its route table builds and answers a lookup.
// Inputs naming a `caFile` are skipped: checking one reads that file, and the fuzzer could name
// a device that never ends.
import Gateway
import GatewayCore
import FuzzSupport

let environment = ["FUZZ_UPSTREAM": "http://127.0.0.1:9", "FUZZ_PAY_TO": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"]

/// Lines as YAML counts them: CR LF, CR, LF, NEL, LS and PS each end one.
func lines(_ text: String) -> Int {
    var breaks = 0
    var afterCR = false
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\r": breaks += 1
        case "\n": if !afterCR { breaks += 1 }
        case "\u{85}", "\u{2028}", "\u{2029}": breaks += 1
        default: break
        }
        afterCR = scalar == "\r"
    }
    return breaks + 1
}

Fuzzer.run { bytes in
    let text = String(decoding: bytes, as: UTF8.self)
    guard !text.contains("caFile") else { return }
    let lineCount = lines(text)
    do throws(ConfigErrors) {
        let config = try ConfigLoader.parse(yaml: text, file: "fuzz.yaml", environment: environment)
        let again = try? ConfigLoader.parse(yaml: text, file: "fuzz.yaml", environment: environment)
        require(again?.routes == config.routes, "the same text loaded twice gave different routes")
        let table = RouteTable(config: config)
        _ = table.match(method: "GET", path: "/", host: "example.com")
    } catch {
        let diagnostics = error.diagnostics
        require(!diagnostics.isEmpty, "refused without a diagnostic")
        var previous = (line: 0, column: 0)
        for diagnostic in diagnostics {
            let location = diagnostic.location
            require(location.file == "fuzz.yaml", "diagnostic for file \(location.file): \(diagnostic)")
            require(location.line >= 1 && location.line <= lineCount + 1,
                    "diagnostic at line \(location.line) of \(lineCount): \(diagnostic)")
            require(location.column >= 1, "diagnostic at column \(location.column): \(diagnostic)")
            require(!diagnostic.message.isEmpty, "diagnostic without a message at \(location)")
            require((previous.line, previous.column) <= (location.line, location.column), "diagnostics out of order: \(diagnostics)")
            previous = (location.line, location.column)
        }
    }
}
