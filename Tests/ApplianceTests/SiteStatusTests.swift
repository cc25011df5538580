import Control
import Foundation
import Logging
import SiteModel
import Store
import Testing

@testable import Appliance

/// The site status as staff meet it: which alarms are listed, and what becomes of their
/// instructions across a restart, with a state store and without one.
@Suite("Site status: meter alarms after a start-up grace, instructions kept or dropped loudly")
struct SiteStatusTests {
  let folder = FileManager.default.temporaryDirectory.appendingPathComponent("site-status-\(UUID().uuidString)").path
  let site = SiteDescription.oneBus
  let meter = MeterSpec(id: "main", role: .buildingLoad, topic: "m/main", unit: .kilowatt, staleAfterSeconds: 10)

  func step() -> StepRecord {
    let snapshot = Snapshot(
      time: 0, localTime: LocalTime(seconds: 0), periodSeconds: 1, buildingDemandKW: 200, utilityAvailable: true,
      chargers: [ChargerReading(vehicle: nil, measuredKW: 0)])
    let decisions = Decisions(setpointsKW: [0], transferSwitch: .hold, mode: .gridConnected, demandTargetKW: 300)
    return StepRecord(
      snapshot: snapshot, proposal: decisions, decisions: decisions,
      applied: AppliedStep(gridKW: 200, servedKW: 200, chargerKW: [0]), wallTime: Date(), utilityStable: true,
      sequence: 0)
  }

  func alarm(_ status: SiteStatus, _ id: String) -> Alarm? { status.view.alarms.first { $0.id == id } }

  @Test("a meter that has not yet had its chance to report raises no alarm at start; one that misses it does")
  func meterStartupGrace() throws {
    // Just started: no reading yet, none due. The inputs are stale (no discharge on a
    // guess), but nothing is listed for staff to acknowledge.
    let fresh = MeterInputs(meters: [meter])
    let status = SiteStatus(site: site, meters: fresh, logger: Logger(label: "test"))
    status.observe(step())
    #expect(fresh.statuses().first?.stale == true)
    #expect(alarm(status, "meter-main-stale") == nil, "\(status.view.alarms)")
    // The first reading comes: nothing was ever listed.
    fresh.ingest(topic: "m/main", payload: Array("120".utf8))
    status.observe(step())
    #expect(status.view.alarms.isEmpty)

    // Started 11 s ago (its stale_after is 10 s) and never heard from: that is a fault.
    let silent = MeterInputs(meters: [meter], startedAt: .now - .seconds(11))
    let watching = SiteStatus(site: site, meters: silent, logger: Logger(label: "test"))
    watching.observe(step())
    let raised = try #require(alarm(watching, "meter-main-stale"))
    #expect(raised.active && raised.severity == .critical)
    #expect(raised.message.contains("no usable reading since the appliance started"))
    // Readings come back: the alarm clears and, being a fault, stays listed until someone
    // has seen it.
    silent.ingest(topic: "m/main", payload: Array("120".utf8))
    watching.observe(step())
    #expect(alarm(watching, "meter-main-stale")?.active == false)
  }

  @Test("without a state store, instructions in force are announced as kept in memory only and dropped loudly")
  func instructionsWithoutAStore() throws {
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let box = Outbox(
      Outbox.Configuration(store: RecordStore.Configuration(path: folder + "/store.db", siteID: "t")),
      summarizer: TelemetrySummary(), logger: Logger(label: "test"))
    let status = SiteStatus(
      site: site, meters: nil, recorder: Recorder(site: site, outbox: box), logger: Logger(label: "test"))
    status.observe(step())
    guard case .applied(let held) = status.execute(.control(.holdVehicle("BUS-1")), by: "lobby") else {
      Issue.record("hold_vehicle refused")
      return
    }
    #expect(held.contains("kept in memory only"), "the reply tells staff: \(held)")
    let standing = try #require(alarm(status, "instructions-not-kept"))
    #expect(standing.active && standing.severity == .warning && standing.message.contains("BUS-1 held"))
    // Released: nothing is in force, and the standing condition leaves the list at once.
    _ = status.execute(.control(.releaseVehicle("BUS-1")), by: "lobby")
    #expect(alarm(status, "instructions-not-kept") == nil, "\(status.view.alarms)")

    _ = status.execute(.control(.pauseV2X), by: "lobby")
    _ = status.execute(.control(.setDemandTarget(kW: 300)), by: "lobby")
    #expect(alarm(status, "instructions-not-kept")?.message.contains("V2X paused") == true)
    status.applianceStopping()
    box.flush()
    let batch = try #require(try box.store?.nextBatch(maxRecords: 100, maxBytes: 1 << 20))
    let dropped = batch.ndjson.split(separator: "\n").map {
      try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }.filter { $0["event"] as? String == "instruction_dropped" }.compactMap { $0["reason"] as? String }
    #expect(dropped.count == 2, "\(dropped)")
    #expect(dropped.contains { $0.contains("V2X paused") } && dropped.contains { $0.contains("demand target 300") })
  }

  @Test("with a state store, the target, the holds and the pause survive a restart, with no alarm")
  func instructionsWithAStore() throws {
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let path = folder + "/state.db"
    do {
      let status = SiteStatus(
        site: site, meters: nil, state: try SiteState(path: path, logger: Logger(label: "test")),
        logger: Logger(label: "test"))
      status.observe(step())
      guard case .applied(let text) = status.execute(.control(.holdVehicle("BUS-1")), by: "lobby") else {
        Issue.record("hold_vehicle refused")
        return
      }
      #expect(!text.contains("memory only"))
      _ = status.execute(.control(.pauseV2X), by: "lobby")
      _ = status.execute(.control(.setDemandTarget(kW: 300)), by: "lobby")
      #expect(alarm(status, "instructions-not-kept") == nil)
    }
    let restarted = SiteStatus(
      site: site, meters: nil, state: try SiteState(path: path, logger: Logger(label: "test")),
      logger: Logger(label: "test"))
    let overrides = restarted.view.overrides
    #expect(overrides.demandTargetKW == 300 && overrides.heldVehicles == ["BUS-1"] && overrides.dischargePaused)
    #expect(restarted.view.alarms.isEmpty)
  }
}
