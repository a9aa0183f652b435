import GatewayCore

/// The certificate a TLS configuration serves, as `check` shows it.
public enum TLSCheck {
    /// A line about the certificate of `config`, or why it cannot be served.
    public static func describe(_ config: TLSConfig) -> String {
        do throws(TLSPairError) {
            let pair = try TLSCertificatePair.load(certificatePath: config.certificatePath, keyPath: config.keyPath)
            return "TLS \(pair.info)"
        } catch {
            return "TLS: \(error)"
        }
    }
}
