// swift-tools-version:6.1
import Foundation
import PackageDescription

// The libFuzzer targets (see docs/reliability.md). A package of its own so that the normal build
// never sees them; built by scripts/fuzz.sh with `-sanitize=fuzzer,address`, which instruments
// every Swift module (this package's, the gateway's and its dependencies') for coverage and ASan.
// `@testable import` reaches internal types: debug builds of the gateway's modules allow it.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// The gateway package, as SwiftPM names a package given by path: its folder's name, lower case
/// (the checkout may be called anything).
let gateway = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()

func fuzzTarget(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .executableTarget(name: name, dependencies: ["FuzzSupport"] + dependencies, swiftSettings: swiftSettings)
}

let nio: [Target.Dependency] = [
    .product(name: "NIOCore", package: "swift-nio"),
    .product(name: "NIOEmbedded", package: "swift-nio"),
    .product(name: "NIOHTTP1", package: "swift-nio"),
]

let package = Package(
    name: "x402-gateway-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/attaswift/BigInt.git", from: "6.0.1"),
    ],
    targets: [
        // Declares libFuzzer's `LLVMFuzzerRunDriver` for Swift.
        .target(name: "FuzzDriver"),
        .target(
            name: "FuzzSupport",
            dependencies: ["FuzzDriver", .product(name: "X402", package: gateway)],
            swiftSettings: swiftSettings
        ),
        fuzzTarget("FuzzCanonicalPath", [.product(name: "GatewayCore", package: gateway)]),
        fuzzTarget("FuzzPaymentHeader", [
            .product(name: "GatewayCore", package: gateway), .product(name: "X402", package: gateway),
            .product(name: "BigInt", package: "BigInt"),
        ]),
        fuzzTarget("FuzzFacilitatorAnswer", [
            .product(name: "X402Facilitator", package: gateway), .product(name: "X402", package: gateway),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
        fuzzTarget("FuzzFacilitatorHTTP", nio + [
            .product(name: "X402Facilitator", package: gateway), .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        fuzzTarget("FuzzUpstreamResponse", nio + [
            .product(name: "Gateway", package: gateway), .product(name: "GatewayCore", package: gateway),
        ]),
        fuzzTarget("FuzzConfig", [
            .product(name: "Gateway", package: gateway), .product(name: "GatewayCore", package: gateway),
        ]),
        fuzzTarget("FuzzRoundTrip", [
            .product(name: "GatewayCore", package: gateway), .product(name: "X402", package: gateway),
            .product(name: "BigInt", package: "BigInt"),
        ]),
    ]
)
