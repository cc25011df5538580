import Appliance
import CentralUpload
import Control
import Foundation
import Logging
import SiteModel
import Simulation
import Store

/// `simulate --record`: every step of the controller's run goes through the appliance's own
/// Recorder into a record store, exactly as the daemon records a site, so that a report
/// made from the store can be checked against the simulator's report.json. Record times
/// are the scenario's local clock written as UTC (scenarios carry no time zone).
final class SimulationRecording {
  let outbox: Outbox
  let recorder: Recorder
  let path: String
  private var steps = 0

  init(path: String, siteID: String, site: SiteDescription) throws {
    guard !FileManager.default.fileExists(atPath: path) else {
      throw InputError(source: "--record", message: "\(path) exists; remove it or name another file")
    }
    self.path = path
    var store = RecordStore.Configuration(path: path, siteID: siteID)
    store.budgetBytes = 1 << 40  // a simulated year is kept whole, never thinned
    var logger = Logger(label: "microgrid-edge.simulate")
    logger.logLevel = .warning
    outbox = Outbox(Outbox.Configuration(store: store), summarizer: TelemetrySummary(), logger: logger)
    recorder = Recorder(site: site, outbox: outbox)
  }

  func observe(_ snapshot: Snapshot, _ decisions: Decisions, _ flows: SitePlant.Flows) {
    let step = StepRecord(
      snapshot: snapshot, proposal: decisions, decisions: decisions,
      applied: AppliedStep(gridKW: flows.gridKW, servedKW: flows.servedKW, chargerKW: flows.chargerKW),
      wallTime: Date(timeIntervalSince1970: snapshot.localTime.seconds), utilityStable: true, sequence: steps)
    recorder.observe(step)
    steps += 1
    // The daemon writes once a second; here a batch every few thousand steps keeps the
    // outbox's memory small.
    if steps % 2000 == 0 { outbox.flush() }
  }

  /// Writes what is queued; the store's counters, or why it could not.
  func finish() throws -> RecordStore.Counters {
    outbox.flush()
    let status = outbox.status
    if let problem = status.writeProblem {
      throw InputError(source: path, message: "the records could not all be written: \(problem)")
    }
    guard let counters = status.counters else { throw InputError(source: path, message: "no store") }
    return counters
  }
}

/// Sends a store's records to a central receiver in batches through the appliance's own
/// client (for `simulate --upload-url` and `bench-store`).
enum StoreUpload {
  /// Uploads every record not yet accepted to a central receiver, in batches, through the
  /// appliance's client.
  static func all(store: RecordStore, url: String, site: String, token: String, batch: Int = 1000) async throws
    -> Int
  {
    let client = HTTPCentralClient(
      HTTPCentralClient.Configuration(baseURL: url, siteID: site, token: { .success(token) }))
    var batches = 0
    do {
      while let next = try store.nextBatch(maxRecords: batch, maxBytes: 8 << 20) {
        switch await client.post(ndjson: next.ndjson, first: next.first, last: next.last, timeout: nil) {
        case .accepted(let through): try store.accept(through: through)
        case .alreadyStored: try store.accept(through: next.last)
        case let other:
          throw InputError(source: url, message: "upload failed at seqs \(next.first)-\(next.last): \(other)")
        }
        batches += 1
      }
    } catch {
      await client.shutdown()
      throw error
    }
    await client.shutdown()
    return batches
  }
}
