// swift-tools-version:6.0
import PackageDescription

// Microgrid Edge: an on-site energy manager for buildings that use parked V2X vehicles
// as their battery. The folder layout follows ARCHITECTURE: a pure core (SiteModel,
// Control) with adapters around it (SiteFiles, Simulation, Appliance) and one executable.
let package = Package(
  name: "microgrid-edge",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "microgrid-edge", targets: ["microgrid-edge"])
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    .package(url: "https://github.com/adam-fowler/compress-nio", from: "1.5.0"),
    .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    // HTTPTypes (the upstream CSMS link's request headers); already resolved through
    // hummingbird-websocket, declared because Chargers imports it.
    .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    // The metrics endpoint: swift-metrics is the API the control loop records through,
    // swift-prometheus the registry and text format, Hummingbird serves /metrics.
    .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
    // PBKDF2-SHA512 for mosquitto's password hashes (provision); already resolved through
    // the WebSocket and HTTP packages, declared because Provisioning imports it.
    .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
  ],
  targets: [
    // Value types only: units by name, ids, the site description, snapshots, decisions.
    .target(name: "SiteModel"),
    // The controller: a pure function of (snapshot, memory). No clock, no I/O.
    .target(name: "Control", dependencies: ["SiteModel"]),
    // Reading the files people write (site configuration, scenarios) with errors that
    // name file, line and key.
    .target(
      name: "SiteFiles",
      dependencies: ["SiteModel", .product(name: "Yams", package: "Yams")]
    ),
    // Plant model, scenario reader, trace/report/chart writers: runs Control faster than
    // real time.
    .target(name: "Simulation", dependencies: ["SiteModel", "Control", "SiteFiles"]),
    // libmosquitto 2.0 from Debian (libmosquitto-dev), for the MQTT target only.
    .systemLibrary(
      name: "CMosquitto", pkgConfig: "libmosquitto", providers: [.apt(["libmosquitto-dev"])]
    ),
    // The libmosquitto binding (one audited type owns the handle) and topic filters.
    .target(
      name: "MQTT",
      dependencies: ["CMosquitto", .product(name: "Logging", package: "swift-log")]
    ),
    // libgpiod from Debian (libgpiod-dev 1.6: the v1 API of bookworm), for the GPIO target only.
    .systemLibrary(name: "CGPIOD", pkgConfig: "libgpiod", providers: [.apt(["libgpiod-dev"])]),
    // GPIO lines behind one interface (libgpiod v1 or simulated), debounce, and the pulse
    // meter. The v1-specific code is one file, LibgpiodBackend.swift.
    .target(name: "GPIO", dependencies: ["CGPIOD"]),
    // OCPP 2.1 / 2.0.1 as data: OCPP-J frames, the official JSON schemas (from the Open
    // Charge Alliance, shipped unmodified under Schemas/) and a validator for them. No I/O.
    .target(name: "OCPP", resources: [.copy("Schemas")]),
    // OpenADR 2.0b (profile B) as data: VTN documents in, typed values out; typed values in,
    // the VEN's documents out (docs/openadr-study.md). No I/O. Foundation and FoundationXML
    // only: FoundationXML's XMLParser is the toolchain's own namespace-aware parser (it links
    // Debian's libxml2, libxml2-dev at build time), so no package is added for XML.
    .target(name: "OpenADR"),
    // The chargers behind one small interface (`Charger`), with drivers for OCPP (a CSMS
    // endpoint on SwiftNIO's WebSocket, optionally a Local Controller for an upstream CSMS
    // through Hummingbird's WebSocket client), MQTT adapters and the simulated plant.
    .target(
      name: "Chargers",
      dependencies: [
        "SiteModel", "SiteFiles", "OCPP", "MQTT",
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOWebSocket", package: "swift-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
        .product(name: "HTTPTypes", package: "swift-http-types"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]
    ),
    // The outbox: every record the site creates, in SQLite (GRDB), numbered by a gapless
    // per-site seq, until the central program has it.
    .target(
      name: "Store",
      dependencies: [
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "Logging", package: "swift-log"),
      ]
    ),
    // Store-and-forward to the central program: gzip NDJSON batches over HTTP.
    .target(
      name: "CentralUpload",
      dependencies: [
        "Store",
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "CompressNIO", package: "compress-nio"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]
    ),
    // The OpenADR 2.0b VEN (profile B, simpleHttp pull): the event book (pure), the
    // registration/poll/answer/report sequence, and the VTN over AsyncHTTPClient with a TLS
    // client certificate. The XML is the OpenADR target's.
    .target(
      name: "VEN",
      dependencies: [
        "OpenADR",
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
        .product(name: "Crypto", package: "swift-crypto"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "NIOSSL", package: "swift-nio-ssl"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]
    ),
    // The kernel's word on the system clock (adjtimex): a Raspberry Pi has no real-time
    // clock, so the appliance waits for NTP before it keeps time by the wall clock.
    .target(name: "CClockStatus"),
    // Wiring for the daemon: configuration, the control loop service, the site I/O.
    .target(
      name: "Appliance",
      dependencies: [
        "SiteModel", "Control", "SiteFiles", "MQTT", "Store", "CentralUpload", "GPIO", "Chargers", "CClockStatus",
        "VEN",
        .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "Metrics", package: "swift-metrics"),
        .product(name: "Prometheus", package: "swift-prometheus"),
        .product(name: "Hummingbird", package: "hummingbird"),
      ]
    ),
    // Setting up an appliance's secrets (`microgrid-edge provision`): the broker's users and
    // their mosquitto password hashes, the appliance's and the chargers' password files, the
    // central token. A pure plan of what to create or fix, then the file-system effects.
    .target(
      name: "Provisioning",
      dependencies: ["SiteModel", "SiteFiles", .product(name: "CryptoExtras", package: "swift-crypto")]
    ),
    // Reports: what V2X did, from records (the appliance's store or the program's uploaded
    // NDJSON), as HTML with inline SVG, JSON and CSV. Pure apart from reading its inputs.
    .target(name: "Reports", dependencies: ["SiteModel", "Store"]),
    // The simulated plant behind the appliance's `SiteIO`, for demos and tests: a site
    // configuration's scenario, checked against the site.
    .target(name: "SimulatedSite", dependencies: ["SiteModel", "Simulation", "Appliance"]),
    .executableTarget(
      name: "microgrid-edge",
      dependencies: [
        "SiteModel", "Control", "SiteFiles", "Simulation", "SimulatedSite", "Appliance", "Store", "CentralUpload",
        "GPIO", "Chargers", "Provisioning", "VEN", "Reports",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ],
      // What the appliance's RSS is made of, on a board where 40 MiB is the budget
      // (docs/metrics.md, "Memory"). Linked by the toolchain's lld rather than gold:
      // - `-z pack-relative-relocs` (RELR, glibc 2.36 and later, as in Debian 12): the
      //   150,000 relocations of a position-independent executable take 29 KiB instead
      //   of 3.4 MiB that the loader reads at every start;
      // - `--no-export-dynamic` undoes the `-export-dynamic` that the static Swift
      //   runtime's link arguments add: nothing loads plugins into this process, and the
      //   4.7 MiB dynamic symbol table of every Swift symbol is then a few KiB.
      linkerSettings: [
        .unsafeFlags(
          ["-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs", "-Xlinker", "--no-export-dynamic"],
          .when(platforms: [.linux]))
      ]
    ),
    // What randomized tests share (a seeded generator); test targets cannot import each other.
    .target(name: "TestKit", path: "Tests/TestKit"),
    .testTarget(name: "SiteModelTests", dependencies: ["SiteModel"]),
    .testTarget(name: "GPIOTests", dependencies: ["GPIO"]),
    .testTarget(name: "ProvisioningTests", dependencies: ["Provisioning", "SiteModel"]),
    .testTarget(name: "OCPPTests", dependencies: ["OCPP"]),
    .testTarget(name: "OpenADRTests", dependencies: ["OpenADR"]),
    .testTarget(
      name: "ChargersTests",
      dependencies: ["Chargers", "OCPP", "SiteModel", "MQTT", .product(name: "Logging", package: "swift-log")]
    ),
    .testTarget(name: "MQTTTests", dependencies: ["MQTT", .product(name: "Logging", package: "swift-log")]),
    .testTarget(
      name: "StoreTests",
      dependencies: [
        "Store", "CentralUpload", .product(name: "GRDB", package: "GRDB.swift"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
      ]
    ),
    .testTarget(
      name: "VENTests",
      dependencies: ["VEN", "OpenADR", .product(name: "Logging", package: "swift-log")]
    ),
    .testTarget(
      name: "ReportsTests",
      dependencies: [
        "Reports", "Store", "SiteModel", "Control", "Appliance", "Simulation",
        .product(name: "Logging", package: "swift-log"),
      ]
    ),
    .testTarget(name: "ControlTests", dependencies: ["SiteModel", "Control", "TestKit"]),
    .testTarget(name: "SimulationTests", dependencies: ["SiteModel", "Control", "SiteFiles", "Simulation", "TestKit"]),
    .testTarget(
      name: "ApplianceTests",
      dependencies: [
        "SiteModel", "Control", "MQTT", "SiteFiles", "Simulation", "SimulatedSite", "Appliance", "Store", "GPIO",
        "TestKit", "VEN", "OpenADR",
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
      ]
    ),
  ],
  swiftLanguageModes: [.v6]
)
