// swift-tools-version:6.1
import PackageDescription

// Layers (see docs/architecture.md). Imports point down only; the build uses
// `--explicit-target-dependency-import-check error` so a cross-layer import fails to compile.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "x402-gateway",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "x402-gateway", targets: ["x402-gateway"]),
        .executable(name: "example-upstream", targets: ["ExampleUpstream"]),
        // For the fuzz targets only (Fuzz/, a package of its own that depends on this one by path):
        // nothing else uses these, and the normal build is the same with or without them.
        .library(name: "X402", targets: ["X402"]),
        .library(name: "X402Crypto", targets: ["X402Crypto"]),
        .library(name: "GatewayCore", targets: ["GatewayCore"]),
        .library(name: "X402Facilitator", targets: ["X402Facilitator"]),
        .library(name: "Gateway", targets: ["Gateway"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/attaswift/BigInt.git", from: "6.0.1"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        // The CDP facilitator's per-request JWT (ES256 and EdDSA).
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        // HMAC-SHA256 for route passes, and in tests an independent check of the CDP JWTs' signatures
        // (already in the graph through postgres-nio and jwt-kit).
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        // TLS on the main listener: reading and checking the certificate and key (X.509, PEM).
        // Already in the graph through jwt-kit.
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        // Tests only: property-based tests (the route index against the first-match scan).
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
    ],
    targets: [
        // Layer 0: wire + domain model.
        .target(
            name: "X402",
            dependencies: [.product(name: "BigInt", package: "BigInt")],
            swiftSettings: swiftSettings
        ),
        // Layer 0: libsecp256k1 through pkg-config.
        .systemLibrary(
            name: "CSecp256k1",
            pkgConfig: "libsecp256k1",
            providers: [.apt(["libsecp256k1-dev"])]
        ),
        // Layer 1: Keccak-256, EIP-55, EIP-712, EIP-3009, signature recovery.
        .target(
            name: "X402Crypto",
            dependencies: ["X402", "CSecp256k1", .product(name: "BigInt", package: "BigInt")],
            swiftSettings: swiftSettings
        ),
        // Layer 2: pure policy (config model, routes, canonical paths, offers, payment flow, route
        // passes: their format, HMAC signing and verification).
        .target(
            name: "GatewayCore",
            dependencies: [
                "X402", "X402Crypto", .product(name: "BigInt", package: "BigInt"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // Layer 2: facilitator HTTP client (/verify, /settle, /supported) and the EVM JSON-RPC
        // reader for reconciliation (Keccak for its selector and event topics).
        .target(
            name: "X402Facilitator",
            dependencies: [
                "X402", "X402Crypto",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Layer 2: the browser paywall page (escaped, self-contained, per-response CSP nonce).
        .target(
            name: "Paywall",
            dependencies: ["X402", "GatewayCore"],
            swiftSettings: swiftSettings
        ),
        // Layer 2: durable payment state (replay claims and the ledger) behind one protocol, the
        // SQL both databases share, and the in-memory store.
        .target(
            name: "GatewayStorage",
            swiftSettings: swiftSettings
        ),
        // Layer 2: the embedded SQLite ledger (GRDB, WAL).
        .target(
            name: "GatewayStorageSQLite",
            dependencies: ["GatewayStorage", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "GRDBSQLite", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        // Layer 2: the shared PostgreSQL ledger (PostgresNIO's pooled client; its API speaks
        // swift-log's Logger, NIOCore's TimeAmount and NIOSSL's TLS configuration).
        .target(
            name: "GatewayStoragePostgres",
            dependencies: [
                "GatewayStorage",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        // Layer 3: the HTTP gateway (NIO listener and reverse proxy, Hummingbird admin listener,
        // YAML loading).
        .target(
            name: "Gateway",
            dependencies: [
                "X402", "X402Crypto", "GatewayCore", "X402Facilitator", "GatewayStorage", "GatewayStorageSQLite", "GatewayStoragePostgres", "Paywall",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "BigInt", package: "BigInt"),
            ],
            swiftSettings: swiftSettings
        ),
        // Layer 4: the executable (@main, CLI, bootstrap).
        .executableTarget(
            name: "x402-gateway",
            dependencies: [
                "Gateway", "GatewayCore", "GatewayStorage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // A small upstream API for the quick start, the demo and the tests.
        .executableTarget(
            name: "ExampleUpstream",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GatewayTestSupport",
            dependencies: [
                "X402", "X402Crypto", "GatewayCore", "Gateway", "X402Facilitator", "GatewayStorage",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Tests only: fixture edits by text that fail when the text to replace is missing.
        .target(name: "FixtureEditing", swiftSettings: swiftSettings),
        // Tests only: the `.cpuHeavy` trait, which runs long computations off the shared pool.
        .target(name: "TestScheduling", swiftSettings: swiftSettings),
        .testTarget(
            name: "GatewayStorageTests",
            dependencies: ["FixtureEditing", "GatewayStorage", "GatewayStorageSQLite", "GatewayStoragePostgres", .product(name: "BigInt", package: "BigInt")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "X402Tests",
            dependencies: ["FixtureEditing", "TestScheduling", "X402", "X402Crypto", .product(name: "BigInt", package: "BigInt")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "X402CryptoTests",
            dependencies: ["X402", "X402Crypto"],
            resources: [.copy("Vectors")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GatewayCoreTests",
            dependencies: [
                "FixtureEditing", "TestScheduling",
                "GatewayCore", "X402", "X402Crypto", .product(name: "BigInt", package: "BigInt"),
                .product(name: "PropertyBased", package: "swift-property-based"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PaywallTests",
            dependencies: ["Paywall", "GatewayCore", "X402", .product(name: "BigInt", package: "BigInt")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "FixtureEditing", "TestScheduling",
                "Gateway", "GatewayCore", "GatewayTestSupport", "X402", "X402Crypto", "X402Facilitator", "GatewayStorage",
                "GatewayStorageSQLite", "GatewayStoragePostgres", .product(name: "BigInt", package: "BigInt"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: swiftSettings
        ),
    ]
)
