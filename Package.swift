// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "warbler",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "warbler", targets: ["warbler"]),
        .library(name: "IMClient", targets: ["IMClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.0.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "5.0.1"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.1.0"),
    ],
    targets: [
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(name: "CArchive", pkgConfig: "libarchive", providers: [.apt(["libarchive-dev"])]),
        // The one file-writing layer: atomic, durable replace and create (O_EXCL|O_NOFOLLOW, mode at creation, fsync,
        // rename, fsync of the directory). Foundation and libc only, so every target can use it.
        .target(
            name: "DurableFiles",
            dependencies: ["CHostShims"],
            swiftSettings: strict
        ),
        .target(
            name: "IMCore",
            dependencies: [],
            swiftSettings: strict
        ),
        .target(
            name: "IMStorage",
            dependencies: [
                "IMCore",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "IMStorageSQLite",
            dependencies: [
                "IMStorage",
                // For the SQLite library it compiles in (VaporCSQLite), which our own connection threads call
                // directly; the one copy of SQLite in the process (Backup uses SQLiteNIO itself).
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "IMStoragePostgres",
            dependencies: [
                "IMStorage",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "SystemdSupport",
            dependencies: [
                "CSystemd",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // The server's config (warbler.yaml), the release's version and the one way to open its database: what
        // the installer's tools need of the server without linking it.
        .target(
            name: "WarblerConfig",
            dependencies: [
                "IMCore", "IMStorage", "IMStorageSQLite", "IMStoragePostgres", "Payload",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "IMServer",
            dependencies: [
                "WarblerConfig", "IMCore", "IMStorage", "IMStorageSQLite", "IMStoragePostgres", "SystemdSupport", "DurableFiles",
                "Payload",   // compliance exports are signed archives
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                // The chat socket's own channel (SocketChannel.swift): NIO's WebSocket upgrader and frame codec, and
                // HTTP/1 requests in Hummingbird's types.
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "HeapModule", package: "swift-collections"),   // the hub's token expiries
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),  // web: GET /v1/admin/alerts proxies alertd
            ],
            swiftSettings: strict
        ),
        .target(
            name: "IMClient",
            dependencies: [
                "IMCore", "DurableFiles", "CHostShims",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "LoadGen",
            dependencies: ["IMClient", "IMCore", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        // Renders templates/ (the server config, the systemd units) from typed contexts.
        .target(
            name: "Templates",
            dependencies: [
                .product(name: "Mustache", package: "swift-mustache"),
            ],
            swiftSettings: strict
        ),
        // libc calls Swift's Glibc module does not expose (adjtimex).
        .target(name: "CHostShims"),
        // The install engine: preflight, desired state, plan and apply, journal, secrets, internal CA.
        .target(
            name: "Installer",
            dependencies: [
                "Templates", "CHostShims", "DurableFiles",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        // Operating an install: `status` (unit or supervisor state, readiness, figures, certificate expiry).
        .target(
            name: "Operations",
            dependencies: [
                "Installer", "WarblerConfig", "IMCore", "IMStorage", "IMStoragePostgres", "DurableFiles", "Payload",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strict
        ),
        // The installer file's payload: libarchive tar.gz with a manifest, the trailer, signatures.
        .target(
            name: "Payload",
            dependencies: [
                "CArchive", "DurableFiles",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // `warbler upgrade` and `rollback`: verify, back up, install beside, switch, self-check, roll back on failure.
        .target(
            name: "Upgrade",
            dependencies: [
                "Installer", "Payload", "WarblerConfig", "IMStorage", "IMClient", "IMCore", "Operations", "Backup", "DurableFiles",
                "SystemdSupport",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Logging", package: "swift-log"),
                // The upgrade receiver: a TLS listener like the IM server's, and its client.
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // `warbler backup` / `restore`: online snapshot (SQLite VACUUM INTO, pg_dump), config, secrets (optionally
        // encrypted) and attachments in a checksummed tar.gz; restore verifies first and swaps into place.
        .target(
            name: "Backup",
            dependencies: [
                "Payload", "Installer", "WarblerConfig", "IMStorage", "IMStorageSQLite", "IMStoragePostgres", "DurableFiles", "Operations",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Alerting: `warbler alertd` (scrape, rules, alert state machine, control API) and `warbler alerts …`.
        .target(
            name: "Alerting",
            dependencies: [
                "AlertReceivers", "SystemdSupport", "DurableFiles",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        // The monitoring exporter: host, component, database, TLS and backup collectors, Prometheus text out.
        .target(
            name: "Monitoring",
            dependencies: [
                "WarblerConfig", "IMStorage", "IMStoragePostgres", "Installer", "Operations", "SystemdSupport", "CHostShims", "DurableFiles",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "BackupTests",
            dependencies: [
                "Backup", "Payload", "Installer", "IMServer", "IMCore", "IMStorage", "IMStorageSQLite", "IMStoragePostgres",
                "WarblerTestSupport", "Operations", "IMClient",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "AlertingTests",
            dependencies: [
                "Alerting", "AlertReceivers", "Templates",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "MonitoringTests",
            dependencies: [
                "Monitoring", "IMServer", "IMStorage", "IMStorageSQLite", "IMStoragePostgres", "Installer", "Operations", "WarblerTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            exclude: ["Fixtures"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "warbler",
            dependencies: [
                "IMServer", "LoadGen", "Installer", "Payload", "Operations", "Upgrade", "Backup",
                "Alerting", "AlertReceivers", "Monitoring",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "UpgradeTests",
            dependencies: ["Upgrade", "Backup", "Installer", "Payload", "WarblerConfig", "IMStorage", "DurableFiles",
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "NIOSSL", package: "swift-nio-ssl")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PayloadTests",
            dependencies: ["Payload", "CArchive", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "DurableFilesTests",
            dependencies: ["DurableFiles"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IMCoreTests",
            dependencies: ["IMCore"],
            swiftSettings: strict
        ),
        // Test infrastructure shared by the test targets: a real PostgreSQL server started on demand.
        .target(
            name: "WarblerTestSupport",
            dependencies: ["IMStorage", "IMStoragePostgres"],
            path: "Tests/WarblerTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "IMStorageTests",
            dependencies: ["IMStorage", "IMStorageSQLite", "IMStoragePostgres", "WarblerTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TemplatesTests",
            dependencies: ["Templates", "WarblerConfig", "DurableFiles"],
            exclude: ["Golden"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "InstallerTests",
            dependencies: [
                "Installer", "Templates", "DurableFiles",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "OperationsTests",
            dependencies: [
                "Operations", "Installer", "IMServer", "IMClient", "IMCore", "DurableFiles",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IMServerTests",
            dependencies: [
                "IMServer", "IMClient", "IMStorage", "IMStoragePostgres", "LoadGen", "WarblerTestSupport", "DurableFiles",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // Alert notification receivers (webhook, Slack, DingTalk, WeCom, Feishu, SMTP) and the dispatcher.
        .target(
            name: "AlertReceivers",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "AlertReceiversTests",
            dependencies: [
                "AlertReceivers",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
    ]
)
