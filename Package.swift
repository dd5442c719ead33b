// swift-tools-version:6.1
import PackageDescription

// Layers, dependencies pointing down only (see README "Architecture"):
//   outpost (executable) -> OutpostCLI -> CustomerArchive -> Replication
// Replication imports no I/O library; its only C dependency is zlib for the
// change-set codec's compression.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "Outpost",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "outpost", targets: ["outpost"]),
        .library(name: "Replication", targets: ["Replication"]),
        .library(name: "CustomerArchive", targets: ["CustomerArchive"]),
        .library(name: "OutpostTesting", targets: ["OutpostTesting"]),
    ],
    dependencies: [
        .package(url: "https://github.com/groue/GRDB.swift", exact: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", providers: [.apt(["zlib1g-dev"])]),
        .target(
            name: "Replication",
            dependencies: ["CZlib"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "CustomerArchive",
            dependencies: [
                "Replication",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "OutpostCLI",
            dependencies: [
                "CustomerArchive",
                "Replication",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "outpost",
            dependencies: ["OutpostCLI"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "OutpostTesting",
            dependencies: ["CustomerArchive", "Replication"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "outpost-bench",
            dependencies: [
                "CustomerArchive",
                "Replication",
                "OutpostTesting",
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ReplicationTests",
            dependencies: ["Replication", "OutpostTesting"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CustomerArchiveTests",
            dependencies: ["CustomerArchive", "Replication", "OutpostTesting", .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "OutpostCLITests",
            dependencies: ["OutpostCLI", "OutpostTesting", "Replication"],
            swiftSettings: swiftSettings
        ),
    ]
)
