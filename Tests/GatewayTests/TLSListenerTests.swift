import Foundation
import Gateway
import GatewayCore
import GatewayTestSupport
import HTTPTypes
import NIOHTTP1
import NIOSSL
import Synchronization
import Testing
import X402

/// TLS on the main listener, over real sockets, with a CA and certificates the test makes itself
/// and clients that verify the chain (NIOSSL, full verification against that CA only).
@Suite("TLS on the main listener")
struct TLSListenerTests {
    static func yaml(_ files: CertificateFiles, extra: String = "") -> String {
        """
        listen: 127.0.0.1:0
        payTo: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C"
        network: eip155:84532
        tls: { cert: "\(files.certificatePath)", key: "\(files.keyPath)" }
        reload: { interval: 100ms }
        \(extra)upstreams:
          api: { url: "{{UPSTREAM}}", timeout: 5s }
        routes:
          - match: "GET /paid"
            price: "$0.01"
          - match: "/free/*"
            free: true
        """
    }

    /// Runs `body` with a gateway serving `leaf` (and `chain`) from fresh files.
    func withTLSGateway(
        _ ca: TestCertificateAuthority, leaf: TestCertificateAuthority.Leaf, chain: [TestCertificateAuthority] = [],
        extra: String = "", _ body: @Sendable (LiveGateway, CertificateFiles) async throws -> Void
    ) async throws {
        let files = try CertificateFiles()
        defer { files.remove() }
        try files.write(leaf, chain: chain)
        try await TestHarness.withGateway(yaml: Self.yaml(files, extra: extra)) { gw in try await body(gw, files) }
    }

    /// Waits (bounded) until a fresh connection is served the certificate with `serial`.
    func awaitServed(_ serial: String, port: Int, ca: TestCertificateAuthority) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while clock.now < deadline {
            let (_, handshake) = try await TLSTestConnection.get(port: port, path: "/paid", trustRoots: ca.trustRootPEM)
            if handshake.serverSerial == serial { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("certificate \(serial) not served within 10 s")
    }

    @Test("a client verifying against the test CA gets the gateway over TLS: the served leaf, ALPN http/1.1, a 402 whose resource URL is https")
    func servesVerifiedTLS() async throws {
        let ca = try TestCertificateAuthority()
        let leaf = try ca.leaf()
        try await withTLSGateway(ca, leaf: leaf) { gw, _ in
            let connection = try await TLSTestConnection.connect(port: gw.port, trustRoots: ca.trustRootPEM)
            #expect(connection.handshake.serverSerial == leaf.serial)
            #expect(connection.handshake.alpn == "http/1.1")
            let challenge = try await connection.get("/paid")
            #expect(challenge.status == 402)
            let header = try #require(challenge.headers.first(name: "PAYMENT-REQUIRED"))
            let v2 = try JSONDecoder().decode(PaymentRequired.self, from: Data(try #require(Base64.decode(header))))
            #expect(v2.resource.url == "https://localhost/paid")
            // Keep-alive over TLS: a second request on the same connection reaches the upstream.
            let free = try await connection.get("/free/hello")
            #expect(free.status == 200)
            #expect(gw.upstream.requests.last?.headers[HTTPField.Name("X-Forwarded-Proto")!] == "https")
            await connection.close()
        }
    }

    @Test("the chain file's intermediate is sent: a client trusting only the root verifies leaf → intermediate → root")
    func servesChain() async throws {
        let root = try TestCertificateAuthority()
        let intermediate = try root.intermediate()
        let leaf = try intermediate.leaf()
        try await withTLSGateway(intermediate, leaf: leaf, chain: [intermediate]) { gw, _ in
            let (response, handshake) = try await TLSTestConnection.get(port: gw.port, path: "/paid", trustRoots: root.trustRootPEM)
            #expect(response.status == 402 && handshake.serverSerial == leaf.serial)
        }
        // Without the intermediate in the file, the same client cannot build the chain.
        try await withTLSGateway(intermediate, leaf: leaf) { gw, _ in
            await #expect(throws: (any Error).self) {
                _ = try await TLSTestConnection.get(port: gw.port, path: "/paid", trustRoots: root.trustRootPEM)
            }
        }
    }

    @Test("clients are refused: one that trusts another CA, one naming another host, one capped at TLS 1.1")
    func refusals() async throws {
        let ca = try TestCertificateAuthority()
        let stranger = try TestCertificateAuthority(commonName: "another CA")
        // No IP address among the names: NIOSSL accepts a name mismatch when the address it
        // connected to is one of the certificate's IP addresses.
        try await withTLSGateway(ca, leaf: try ca.leaf(ipAddresses: [])) { gw, _ in
            await #expect(throws: (any Error).self) {
                _ = try await TLSTestConnection.get(port: gw.port, path: "/paid", trustRoots: stranger.trustRootPEM)
            }
            await #expect(throws: (any Error).self) {
                _ = try await TLSTestConnection.get(port: gw.port, path: "/paid", trustRoots: ca.trustRootPEM, serverName: "other.example")
            }
            await #expect(throws: (any Error).self) {
                _ = try await TLSTestConnection.connect(port: gw.port, trustRoots: ca.trustRootPEM, maximumVersion: .tlsv11)
            }
            // The listener still serves after those.
            let (response, _) = try await TLSTestConnection.get(port: gw.port, path: "/paid", trustRoots: ca.trustRootPEM)
            #expect(response.status == 402)
        }
    }

    @Test("a rotated certificate is served to new connections while a connection opened before keeps working; SIGHUP's reload reads the files at once")
    func rotation() async throws {
        let ca = try TestCertificateAuthority()
        let first = try ca.leaf(), second = try ca.leaf(), third = try ca.leaf()
        try await withTLSGateway(ca, leaf: first) { gw, files in
            let before = try await TLSTestConnection.connect(port: gw.port, trustRoots: ca.trustRootPEM)
            #expect(try await before.get("/paid").status == 402)
            try files.write(second)
            try await awaitServed(second.serial, port: gw.port, ca: ca)
            // Opened on the first certificate, still served after the rotation.
            #expect(before.handshake.serverSerial == first.serial)
            #expect(try await before.get("/paid").status == 402)
            await before.close()
        }
        // Without polling, a reload (SIGHUP's) picks the files up.
        let files = try CertificateFiles()
        defer { files.remove() }
        try files.write(first)
        let yaml = Self.yaml(files).replacingOccurrences(of: "reload: { interval: 100ms }", with: "reload: { watch: false }")
        try await TestHarness.withGateway(yaml: yaml) { gw in
            try files.write(third)
            let (_, stale) = try await TLSTestConnection.get(port: gw.port, path: "/paid", trustRoots: ca.trustRootPEM)
            #expect(stale.serverSerial == first.serial)
            await gw.server.reload(trigger: "test")
            let (_, fresh) = try await TLSTestConnection.get(port: gw.port, path: "/paid", trustRoots: ca.trustRootPEM)
            #expect(fresh.serverSerial == third.serial)
        }
    }

    @Test("rotation under load: four rotations while clients keep making requests on new and kept-alive connections, none fails")
    func rotationUnderLoad() async throws {
        let ca = try TestCertificateAuthority()
        let leaves = try (0..<5).map { _ in try ca.leaf() }
        try await withTLSGateway(ca, leaf: leaves[0]) { gw, files in
            let load = LoadRecord()
            // Kept-alive connections, opened before the first rotation (inside the task group, a
            // loaded run opened one after it) and used until the end.
            var keptAlive: [TLSTestConnection] = []
            for _ in 0..<2 { keptAlive.append(try await TLSTestConnection.connect(port: gw.port, trustRoots: ca.trustRootPEM)) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                // Fresh connections: each handshake takes the certificate current at that moment.
                for _ in 0..<3 {
                    group.addTask {
                        while !load.stop.load(ordering: .relaxed) {
                            do {
                                let (response, handshake) = try await TLSTestConnection.get(port: gw.port, path: "/paid", trustRoots: ca.trustRootPEM)
                                if response.status != 402 { load.failures.withLock { $0.append("status \(response.status)") } }
                                load.served.withLock { _ = $0.insert(handshake.serverSerial) }
                                load.requests.add(1, ordering: .relaxed)
                            } catch {
                                load.failures.withLock { $0.append("\(error)") }
                            }
                        }
                    }
                }
                for connection in keptAlive {
                    group.addTask {
                        while !load.stop.load(ordering: .relaxed) {
                            do {
                                let response = try await connection.get("/free/kept")
                                if response.status != 200 { load.failures.withLock { $0.append("kept-alive status \(response.status)") } }
                                load.requests.add(1, ordering: .relaxed)
                            } catch {
                                load.failures.withLock { $0.append("kept-alive: \(error)") }
                                break
                            }
                        }
                        if connection.handshake.serverSerial != leaves[0].serial { load.failures.withLock { $0.append("kept-alive changed certificate") } }
                        await connection.close()
                    }
                }
                // The load's own handshakes take each certificate before the next rotation (and
                // before the end): in a loaded run 300 ms were not always enough.
                func loadServed(_ serial: String) async throws {
                    try await Task.sleep(for: .milliseconds(300))
                    let deadline = ContinuousClock.now + .seconds(10)
                    while !load.served.withLock({ $0.contains(serial) }) && ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                for (previous, leaf) in zip(leaves, leaves.dropFirst()) {
                    try await loadServed(previous.serial)
                    try files.write(leaf)
                    try await awaitServed(leaf.serial, port: gw.port, ca: ca)
                }
                try await loadServed(leaves[leaves.count - 1].serial)
                load.stop.store(true, ordering: .relaxed)
                try await group.waitForAll()
            }
            print("TLS rotation under load: \(load.requests.load(ordering: .relaxed)) requests, 4 rotations, \(load.failures.withLock { $0.count }) failures")
            #expect(load.failures.withLock { $0 } == [])
            #expect(load.served.withLock { $0 } == Set(leaves.map(\.serial)))
            #expect(load.requests.load(ordering: .relaxed) > 50)
        }
    }

    @Test("changed files that cannot be served (a key that is not the certificate's, then an expired certificate) leave the previous certificate serving; /readyz says which is served and why the files are not")
    func refusedRotation() async throws {
        let ca = try TestCertificateAuthority()
        let first = try ca.leaf(), second = try ca.leaf()
        let expired = try ca.leaf(notBefore: Date() - 10 * 86_400, notAfter: Date() - 86_400)
        try await withTLSGateway(ca, leaf: first, extra: "admin: { listen: 127.0.0.1:0 }\n") { gw, files in
            let adminPort = try #require(gw.adminPort)
            try files.write(second, key: first.keyPEM)  // the new certificate with the old key
            try await waitUntil { try await readiness(adminPort).contains("does not belong to the certificate") }
            let (_, kept) = try await TLSTestConnection.get(port: gw.port, path: "/paid", trustRoots: ca.trustRootPEM)
            #expect(kept.serverSerial == first.serial)
            let ready = try await readiness(adminPort)
            #expect(ready.contains("\"tls\":\"ok (serving CN=localhost; names localhost, 127.0.0.1; valid until"))
            #expect(ready.contains("serial \(first.serial); the files as they are now are not served: "))

            try files.write(expired)
            try await waitUntil { try await readiness(adminPort).contains("expired on") }
            let (_, stillKept) = try await TLSTestConnection.get(port: gw.port, path: "/paid", trustRoots: ca.trustRootPEM)
            #expect(stillKept.serverSerial == first.serial)

            try files.write(second)
            try await awaitServed(second.serial, port: gw.port, ca: ca)
            let after = try await readiness(adminPort)
            #expect(after.contains("serial \(second.serial)") && !after.contains("are not served"))
        }
    }

    /// What the clients of the load test saw.
    final class LoadRecord: Sendable {
        let stop = Atomic<Bool>(false)
        let failures = Mutex<[String]>([])
        let served = Mutex<Set<String>>([])
        let requests = Atomic<Int>(0)
    }

    func readiness(_ port: Int) async throws -> String {
        let r = try await RawHTTP.send(port: port, raw: "GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        return String(decoding: r.body, as: UTF8.self)
    }

    func waitUntil(_ condition: () async throws -> Bool) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while clock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("condition not met within 10 s")
    }

    // MARK: check

    @Test("check validates the pair: each problem reported at the file it is in, with line and column")
    func checkDiagnostics() throws {
        let ca = try TestCertificateAuthority()
        let leaf = try ca.leaf(), other = try ca.leaf()
        let files = try CertificateFiles()
        defer { files.remove() }
        func problems(cert: String? = nil, key: String? = nil) throws -> String {
            try files.replace(files.certificatePath, with: cert ?? leaf.certificatePEM)
            try files.replace(files.keyPath, with: key ?? leaf.keyPEM)
            return ConfigProblems.of("tls: { cert: \"\(files.certificatePath)\", key: \"\(files.keyPath)\" }\n" + ConfigProblems.head + "  - { match: /a, price: $0.01 }\n")
        }
        let certColumn = 14, keyColumn = 23 + files.certificatePath.count
        #expect(try problems() == "")
        #expect(try problems(key: other.keyPEM)
            == "g.yaml:1:\(keyColumn): tls.key: the private key in \(files.keyPath) does not belong to the certificate in \(files.certificatePath) (CN=localhost); the certificate must come first in its file")
        let expired = try ca.leaf(notBefore: Date(timeIntervalSince1970: 1_700_000_000), notAfter: Date(timeIntervalSince1970: 1_735_689_600))
        #expect(try problems(cert: expired.certificatePEM, key: expired.keyPEM)
            == "g.yaml:1:\(certColumn): tls.cert: the certificate in \(files.certificatePath) (CN=localhost) expired on 2025-01-01T00:00:00Z")
        let future = try ca.leaf(notBefore: Date(timeIntervalSince1970: 4_102_444_800), notAfter: Date(timeIntervalSince1970: 4_133_980_800))
        #expect(try problems(cert: future.certificatePEM, key: future.keyPEM)
            == "g.yaml:1:\(certColumn): tls.cert: the certificate in \(files.certificatePath) (CN=localhost) is not valid before 2100-01-01T00:00:00Z")
        #expect(try problems(cert: "not a certificate\n") == "g.yaml:1:\(certColumn): tls.cert: \(files.certificatePath) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        #expect(try problems(key: leaf.certificatePEM) == "g.yaml:1:\(keyColumn): tls.key: \(files.keyPath) holds no PEM private key (-----BEGIN PRIVATE KEY-----)")
        #expect(try problems(key: "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
            == "g.yaml:1:\(keyColumn): tls.key: \(files.keyPath) is encrypted: the gateway needs the key without a passphrase (keep the file readable by its user only)")
        // The key of the chain's second certificate is not the leaf's.
        #expect(try problems(cert: other.certificatePEM + leaf.certificatePEM)
            .contains("tls.key: the private key in \(files.keyPath) does not belong to the certificate"))
        #expect(ConfigProblems.of("tls: { cert: /nonexistent/cert.pem, key: /nonexistent/key.pem }\n" + ConfigProblems.head + "  - { match: /a, price: $0.01 }\n")
            .hasPrefix("g.yaml:1:14: tls.cert: cannot read /nonexistent/cert.pem"))
        #expect(ConfigProblems.of("tls: { cert: a.pem }\n" + ConfigProblems.head + "  - { match: /a, price: $0.01 }\n")
            == "g.yaml:1:6: tls needs cert (the PEM certificate chain, leaf first) and key (its PEM private key)")
    }

    @Test("check shows the certificate served: subject, names, expiry")
    func checkDescribes() throws {
        let ca = try TestCertificateAuthority()
        let leaf = try ca.leaf(commonName: "api.example.com", dnsNames: ["api.example.com", "*.api.example.com"], ipAddresses: [[127, 0, 0, 1]])
        let files = try CertificateFiles()
        defer { files.remove() }
        try files.write(leaf)
        let line = TLSCheck.describe(TLSConfig(certificatePath: files.certificatePath, keyPath: files.keyPath))
        #expect(line.hasPrefix("TLS CN=api.example.com; names api.example.com, *.api.example.com, 127.0.0.1; valid until "))
        #expect(line.hasSuffix("; serial \(leaf.serial)"))
    }
}
