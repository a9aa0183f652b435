/// TLS on the main listener (`tls: { cert: PATH, key: PATH }`): a PEM certificate chain (leaf first,
/// then intermediates) and its PEM private key. Both files are watched and re-read when they change
/// (and on SIGHUP); the paths themselves are fixed until a restart.
public struct TLSConfig: Sendable, Hashable {
    public var certificatePath: String
    public var keyPath: String

    public init(certificatePath: String, keyPath: String) {
        self.certificatePath = certificatePath
        self.keyPath = keyPath
    }
}
