import Appliance
import ArgumentParser
import CentralUpload
import Foundation
import Store

/// The store's and the upload's throughput on this machine, for scripts/bench: writes
/// telemetry-sized records in batches (as the appliance does, WAL, synchronous=FULL),
/// then uploads them to a central receiver. Prints one JSON object.
struct BenchStore: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-store",
    abstract: "Measure records written per second and uploaded per second (for scripts/bench).")

  @Option(help: "A folder for the benchmark's database (created; must not hold a store of another site).")
  var dir: String

  @Option(help: "Records to write.")
  var records = 100_000

  @Option(help: "Records per transaction (the appliance writes once a second).")
  var batch = 100

  @Option(help: "The central receiver's base URL; without it nothing is uploaded.")
  var uploadURL: String?

  @Option(help: "Site id at the receiver.")
  var site = "bench-site"

  @Option(help: "Bearer token for the receiver.")
  var token = "bench-token"

  @Option(help: "Records per upload batch.")
  var uploadBatch = 1000

  func run() async throws {
    guard records > 0, batch > 0, uploadBatch > 0 else {
      throw ValidationError("--records, --batch and --upload-batch must be above 0")
    }
    var configuration = RecordStore.Configuration(
      path: (dir as NSString).appendingPathComponent("bench.db"), siteID: site)
    configuration.budgetBytes = 1 << 40
    let store = try RecordStore(configuration, summarizer: TelemetrySummary())
    let body = Self.telemetryBody()
    let start = Date().timeIntervalSince1970
    let clock = ContinuousClock()
    let began = clock.now
    var written = 0
    while written < records {
      let n = min(batch, records - written)
      let drafts = (0..<n).map { i in
        RecordDraft(kind: .telemetry, time: Date(timeIntervalSince1970: start + Double(written + i)), body: body)
      }
      try store.append(drafts)
      written += n
    }
    let writeSeconds = Self.seconds(clock.now - began)
    var result: [String: Any] = [
      "records": records, "batch": batch, "write_seconds": writeSeconds,
      "written_per_s": Double(records) / writeSeconds,
      "database_mb": Double(try store.counters().usedBytes) / 1_048_576,
      "bytes_per_record": Double(try store.counters().usedBytes) / Double(records),
    ]
    if let uploadURL {
      let upStart = clock.now
      let batches = try await StoreUpload.all(
        store: store, url: uploadURL, site: site, token: token, batch: uploadBatch)
      let upSeconds = Self.seconds(clock.now - upStart)
      result["upload_seconds"] = upSeconds
      result["uploaded_per_s"] = Double(records) / upSeconds
      result["upload_batches"] = batches
    }
    store.close()
    let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
  }

  static func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
  }

  /// A telemetry body the size the example school's (four chargers) has.
  static func telemetryBody() -> String {
    let chargers = (1...4).map { i in
      RecordJSON.object([
        ("id", RecordJSON.string("C\(i)")), ("kw", "-23.45"), ("setpoint_kw", "-23.5"), ("online", "true"),
        ("vehicle", RecordJSON.string("BUS-\(i)")), ("energy_kwh", "101.25"),
      ])
    }
    return RecordJSON.object([
      ("mode", RecordJSON.string("grid-connected")), ("grid_kw", "412.5"), ("grid_kw_max", "415.1"),
      ("grid_kw_min", "410.2"), ("building_kw", "506.3"), ("target_kw", "420"), ("month_peak_kw", "431.2"),
      ("utility", "true"), ("switch", RecordJSON.string("utility")), ("shed", "false"), ("inputs_fresh", "true"),
      ("steps", "1"), ("chargers", "[" + chargers.joined(separator: ",") + "]"),
    ])
  }
}
