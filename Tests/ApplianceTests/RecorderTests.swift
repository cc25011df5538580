import Control
import Foundation
import Logging
import SiteModel
import Store
import Testing

@testable import Appliance

@Suite("Recorder: telemetry on its period, one event per change, a session when a vehicle leaves")
struct RecorderTests {
  let folder = FileManager.default.temporaryDirectory.appendingPathComponent("recorder-\(UUID().uuidString)").path
  let site = SiteDescription.oneBus

  func outbox() -> Outbox {
    Outbox(
      Outbox.Configuration(store: RecordStore.Configuration(path: folder + "/store.db", siteID: "t")),
      summarizer: TelemetrySummary(), logger: Logger(label: "test"))
  }

  func step(
    _ t: Double, mode: OperatingMode = .gridConnected, command: TransferSwitchCommand = .hold,
    utility: Bool = true, vehicleKWh: Double? = 50, kw: Double = 30
  ) -> StepRecord {
    let vehicle = vehicleKWh.map {
      PluggedVehicle(
        vehicleID: "BUS-1", batteryKWh: 150, reserveKWh: 20, energyKWh: $0, arrivalEnergyKWh: 50,
        departureTime: 10_000, departureNeedKWh: 60)
    }
    let snapshot = Snapshot(
      time: t, localTime: LocalTime(seconds: 0), periodSeconds: 1, buildingDemandKW: 200, utilityAvailable: utility,
      chargers: [ChargerReading(vehicle: vehicle, measuredKW: kw)])
    let decisions = Decisions(setpointsKW: [kw], transferSwitch: command, mode: mode, demandTargetKW: 300)
    return StepRecord(
      snapshot: snapshot, proposal: decisions, decisions: decisions,
      applied: AppliedStep(gridKW: 230, servedKW: 200, chargerKW: [kw]),
      wallTime: Date(timeIntervalSince1970: 1_784_000_000 + t), utilityStable: utility, sequence: Int(t))
  }

  func records(_ box: Outbox) throws -> [[String: Any]] {
    box.flush()
    let store = try #require(box.store)
    let batch = try #require(try store.nextBatch(maxRecords: 10_000, maxBytes: 1 << 24))
    return batch.ndjson.split(separator: "\n").map {
      try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
  }

  @Test func telemetryComesOnItsPeriodWithTheWindowsMeans() throws {
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let box = outbox()
    var c = Recorder.Configuration()
    c.telemetryEverySeconds = 5
    let recorder = Recorder(site: site, outbox: box, configuration: c)
    for t in 0..<20 { recorder.observe(step(Double(t))) }
    let telemetry = try records(box).filter { $0["kind"] as? String == "telemetry" }
    #expect(telemetry.count == 4)
    #expect(telemetry.first?["steps"] as? Int == 5)
    #expect(telemetry.first?["grid_kw"] as? Double == 230)
    let chargers = try #require(telemetry.first?["chargers"] as? [[String: Any]])
    #expect(chargers.first?["vehicle"] as? String == "BUS-1" && chargers.first?["setpoint_kw"] as? Double == 30)
  }

  @Test func eventsAreEdgesNotLevels() throws {
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let box = outbox()
    let recorder = Recorder(site: site, outbox: box)
    recorder.observe(step(0))
    // The outage: the controller repeats its switch command until the contacts answer.
    for t in 1...30 {
      recorder.observe(step(Double(t), mode: .islanded, command: .toIsland, utility: false, kw: -40))
    }
    for t in 31...40 { recorder.observe(step(Double(t), utility: true)) }
    let events = try records(box).compactMap { $0["event"] as? String }
    // The site first: what a report needs to read the rest (tariff, calendar, equipment).
    #expect(
      events == ["site", "mode", "utility_lost", "mode", "transfer_switch_command", "utility_restored", "mode"],
      "\(events)")
  }

  @Test func aSessionRecordSaysWhatTheVehicleGotAndGave() throws {
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let box = outbox()
    let recorder = Recorder(site: site, outbox: box)
    // 1 h charging at 30 kW, 1 h giving 20 kW, then unplugged.
    for t in 0..<3600 { recorder.observe(step(Double(t), vehicleKWh: 50 + Double(t) / 120, kw: 30)) }
    for t in 3600..<7200 { recorder.observe(step(Double(t), vehicleKWh: 80 - Double(t - 3600) / 180, kw: -20)) }
    recorder.observe(step(7200, vehicleKWh: nil, kw: 0))
    let session = try #require(try records(box).first { $0["kind"] as? String == "session" })
    #expect(session["vehicle"] as? String == "BUS-1" && session["charger"] as? String == "C1")
    #expect(abs((session["charged_kwh"] as? Double ?? 0) - 30) < 0.01)
    #expect(abs((session["discharged_kwh"] as? Double ?? 0) - 20) < 0.01)
    #expect(session["energy_at_arrival_kwh"] as? Double == 50)
    // The last reading (60.006 kWh) is from its step's start: the vehicle leaves with that
    // step's discharge taken too, as the simulator's plant and the vehicle count it.
    let eta = site.chargers[0].efficiency
    let departure = session["energy_at_departure_kwh"] as? Double ?? 0
    #expect(abs(departure - (80 - 3599.0 / 180 - 20.0 / 3600 / eta)) < 0.006, "\(departure)")
    // ... which takes it to 59.99 kWh, just under its 60 kWh need: not met.
    #expect(session["need_met"] as? Bool == false)
  }

  @Test func alarmsAndCommandsBecomeRecords() throws {
    defer { try? FileManager.default.removeItem(atPath: folder) }
    let box = outbox()
    let recorder = Recorder(site: site, outbox: box)
    let status = SiteStatus(site: site, meters: nil, recorder: recorder, logger: Logger(label: "test"))
    status.setAlarm("store-write", .critical, "disk full", active: true)
    status.setAlarm("store-write", .critical, "disk full", active: true)  // already up: no second record
    status.setAlarm("store-write", .critical, "", active: false)
    recorder.command(user: "panel-lobby", name: "hold_vehicle", requestID: "r1", outcome: "applied", reason: "held")
    let all = try records(box)
    #expect(
      all.map { $0["event"] as? String ?? $0["kind"] as? String } == ["alarm_raised", "alarm_cleared", "command"])
    #expect(all[0]["message"] as? String == "disk full" && all[0]["severity"] as? String == "critical")
    #expect(all[2]["user"] as? String == "panel-lobby" && all[2]["request_id"] as? String == "r1")
  }
}
