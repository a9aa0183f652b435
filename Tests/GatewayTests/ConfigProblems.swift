import Gateway

/// What `check` says of a small configuration, for the tests of one key's diagnostics.
enum ConfigProblems {
    /// A valid configuration up to `routes:`; tests append route lines (line 6 is the first route).
    static let head = """
        payTo: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        network: eip155:84532
        upstreams: { api: "http://127.0.0.1:9" }
        routes:

        """

    /// The loader's error as text, or "" when the configuration is valid.
    static func of(_ yaml: String) -> String { with(yaml, environment: [:]) }

    /// The same with `${NAME}` values.
    static func with(_ yaml: String, environment: [String: String]) -> String {
        do {
            _ = try ConfigLoader.parse(yaml: yaml, file: "g.yaml", environment: environment)
            return ""
        } catch {
            return "\(error)"
        }
    }
}
