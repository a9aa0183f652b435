import Foundation
import GatewayCore
import Yams

extension YAMLReader {
    /// `tls: { cert: PATH, key: PATH }`, paths relative to the configuration file's folder. The pair
    /// is loaded and checked now (``TLSCertificatePair``): a file that cannot be read, a key that is
    /// not the certificate's, or a certificate that is expired or not yet valid is reported at the
    /// file's key.
    func tlsConfig(_ node: Node) -> TLSConfig? {
        guard let m = mapping(node, "tls", allowed: ["cert", "key"]) else { return nil }
        guard let certNode = m["cert"]?.value, let keyNode = m["key"]?.value else {
            error(node, "tls needs cert (the PEM certificate chain, leaf first) and key (its PEM private key)")
            return nil
        }
        guard let cert = string(certNode, "tls.cert"), let key = string(keyNode, "tls.key") else { return nil }
        guard !cert.isEmpty, !key.isEmpty else {
            error(cert.isEmpty ? certNode : keyNode, "tls.cert and tls.key must be file paths")
            return nil
        }
        let config = TLSConfig(certificatePath: resolvePath(cert), keyPath: resolvePath(key))
        do throws(TLSPairError) {
            _ = try TLSCertificatePair.load(certificatePath: config.certificatePath, keyPath: config.keyPath)
        } catch {
            self.error(error.file == .certificate ? certNode : keyNode, "tls.\(error.file == .certificate ? "cert" : "key"): \(error)")
            return nil
        }
        return config
    }
}
