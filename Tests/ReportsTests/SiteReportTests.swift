import Control
import Foundation
import Logging
import SiteModel
import Store
import Synchronization
import Testing

@testable import Appliance
@testable import Reports

/// A day of a small site driven through the appliance's own Recorder into a real store,
/// then reported from the store and from the NDJSON the store uploads. Expected figures
/// come from a separate minute-by-minute reckoning in the test, not from the engine.
@Suite("Reports: figures from the appliance's records")
struct SiteReportTests {
  static let start = 1_784_000_000.0 - 1_784_000_000.0.truncatingRemainder(dividingBy: 86_400)  // a UTC midnight
  static let chargeKW = 20.0
  static let efficiency = 0.9

  let folder = FileManager.default.temporaryDirectory.appendingPathComponent("reports-\(UUID().uuidString)").path

  static var site: SiteDescription {
    SiteDescription(
      name: "test-school", importLimitKW: 500, criticalLoadFraction: 0.4,
      tariff: Tariff(demandChargePerKWMonth: 20, demandResponsePaymentPerKW: 200),
      chargers: [
        ChargerSpec(id: "C1", maxChargeKW: chargeKW, maxDischargeKW: 20, efficiency: efficiency, gridForming: true)
      ],
      vehicles: [VehicleSpec(id: "BUS-1", batteryKWh: 150, reserveKWh: 20)])
  }

  /// The day's plan, minute by minute: building load, the charger's power, the utility.
  struct Minute {
    var building: Double
    var charger: Double
    var utility: Bool
    var plugged: Bool
  }

  /// Plugged 06:00–20:00, arrives with 50 kWh, needs 120. Charges 8 kW in the morning,
  /// discharges 15 kW in an event 14:00–15:00, an outage 16:00–16:30 on the island.
  static func day() -> [Minute] {
    (0..<1440).map { m in
      let building = 100 + 80 * sin(Double(m) / 1440 * .pi)  // peaks at noon
      let plugged = m >= 360 && m < 1200
      let utility = !(m >= 960 && m < 990)
      var charger = 0.0
      if plugged {
        if m < 840 { charger = 8 }
        if m >= 840 && m < 900 { charger = -15 }
        if !utility { charger = -building * 0.4 }  // the island carries the critical load
        if m >= 990 { charger = 15 }
      }
      return Minute(building: building, charger: charger, utility: utility, plugged: plugged)
    }
  }

  /// Drives the day through a Recorder into a store at `path`; returns the store.
  func record(to path: String, skipMinute: Int? = nil) throws -> Outbox {
    let outbox = Outbox(
      Outbox.Configuration(store: RecordStore.Configuration(path: path, siteID: "test-school")),
      summarizer: TelemetrySummary(), logger: Logger(label: "test"))
    var configuration = Recorder.Configuration()
    configuration.telemetryEverySeconds = 60
    let recorder = Recorder(site: Self.site, outbox: outbox, configuration: configuration)
    var energy = 50.0
    let event = DemandResponseEvent(id: "E1", notifyTime: 0, startTime: 840 * 60, endTime: 900 * 60)
    for (m, minute) in Self.day().enumerated() {
      let t = Double(m) * 60
      let vehicle =
        minute.plugged
        ? PluggedVehicle(
          vehicleID: "BUS-1", batteryKWh: 150, reserveKWh: 20, energyKWh: energy, arrivalEnergyKWh: 50,
          departureTime: 1200 * 60, departureNeedKWh: 120) : nil
      let snapshot = Snapshot(
        time: t, localTime: LocalTime(seconds: Self.start + t), periodSeconds: 60, buildingDemandKW: minute.building,
        utilityAvailable: minute.utility, chargers: [ChargerReading(vehicle: vehicle)], events: [event])
      let served = minute.utility ? minute.building : minute.building * 0.4
      let grid = minute.utility ? minute.building + minute.charger : 0
      let decisions = Decisions(setpointsKW: [minute.charger], mode: .gridConnected, demandTargetKW: 250)
      let step = StepRecord(
        snapshot: snapshot, proposal: decisions, decisions: decisions,
        applied: AppliedStep(gridKW: grid, servedKW: served, chargerKW: [minute.charger]),
        wallTime: Date(timeIntervalSince1970: Self.start + t), utilityStable: true, sequence: m)
      if m != skipMinute { recorder.observe(step) }
      if minute.plugged {
        energy += minute.charger > 0 ? minute.charger / 60 * Self.efficiency : minute.charger / 60 / Self.efficiency
      }
    }
    // The vehicle leaves at 20:00: one more step without it closes its session.
    outbox.flush()
    return outbox
  }

  /// The expected figures, reckoned minute by minute on their own.
  static func expected() -> (peak: Double, without: Double, building: Double, eventKW: Double) {
    var unmanagedEnergy = 50.0
    var intervals: [(grid: Double, without: Double, building: Double)] = []
    var sums = (grid: 0.0, without: 0.0, building: 0.0)
    for (m, minute) in day().enumerated() {
      var unmanaged = 0.0
      if minute.plugged && minute.utility && unmanagedEnergy < 120 - 1e-9 {
        unmanaged = min(chargeKW, (120 - unmanagedEnergy) / (efficiency / 60))
        unmanagedEnergy += unmanaged * efficiency / 60
      }
      sums.grid += minute.utility ? minute.building + minute.charger : 0
      sums.without += (minute.utility ? minute.building : 0) + unmanaged
      sums.building += minute.building
      if m % 15 == 14 {
        intervals.append((sums.grid / 15, sums.without / 15, sums.building / 15))
        sums = (0, 0, 0)
      }
    }
    return (
      intervals.map(\.grid).max()!, intervals.map(\.without).max()!, intervals.map(\.building).max()!, 15
    )
  }

  func ndjson(of outbox: Outbox, to path: String) throws -> [String] {
    let store = try #require(outbox.store)
    let batch = try #require(try store.nextBatch(maxRecords: 100_000, maxBytes: 1 << 26))
    let lines = batch.ndjson.split(separator: "\n").map(String.init)
    try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    return lines
  }

  @Test("the store and its uploaded NDJSON give the same figures, and they are the expected ones")
  func figuresFromStoreAndNDJSON() throws {
    let outbox = try record(to: folder + "/store.db")
    _ = try ndjson(of: outbox, to: folder + "/test-school.ndjson")
    let fromStore = try Report.build(sources: [.store(path: folder + "/store.db")])
    let fromNDJSON = try Report.build(sources: try RecordSource.records(at: folder))
    let expected = Self.expected()
    for report in [fromStore, fromNDJSON] {
      let site = try #require(report.sites.first)
      #expect(site.site == "test-school")
      #expect(!site.flagged, "\(site.seqGaps)")
      let period = try #require(site.periods.first)
      #expect(site.periods.count == 1)
      // Telemetry carries kW to 0.01: interval means agree to that.
      #expect(abs(period.peakKW - expected.peak) < 0.01)
      #expect(abs(period.peakWithoutV2XKW - expected.without) < 0.01)
      #expect(abs(period.buildingPeakKW - expected.building) < 0.01)
      #expect(abs(period.demandChargeSaved - 20 * (expected.without - expected.peak)) < 0.5)
      #expect(
        period.peakWithoutV2XKW > period.peakKW + 5, "charging on arrival lifts the morning above the managed day")
      let event = try #require(period.events.first)
      #expect(event.id == "E1")
      #expect(abs(event.meanDeliveredKW - expected.eventKW) < 0.01)
      #expect(abs(event.expectedPayment - 200 * 15) < 0.01, "the only event earns the whole season's payment")
      #expect(abs(event.measuredShare - 1) < 0.02)
      let outage = try #require(period.outages.first)
      #expect(abs(outage.hours - 0.5) < 0.02)
      #expect(outage.criticalUnservedKWh < 0.01, "the island carried the critical load")
      // 30 minutes of about 40 % of a ~170 kW building.
      #expect(outage.criticalLoadKWh > 30 && outage.criticalLoadKWh < 36)
      #expect(abs(outage.vehicleEnergyKWh - outage.criticalLoadKWh) < 0.5)
      // About 33 kWh above the reserve at 0.9 against a 68 kW load.
      #expect((outage.couldHaveCarriedHours ?? 0) > 0.3 && (outage.couldHaveCarriedHours ?? 0) < 0.6)
    }
    #expect(fromStore.sites[0].periods[0].peakKW == fromNDJSON.sites[0].periods[0].peakKW)
  }

  @Test("a vehicle that leaves short is a missed departure with its cause")
  func missedDepartureWithCause() throws {
    let outbox = try record(to: folder + "/store.db")
    let lines = try ndjson(of: outbox, to: folder + "/test-school.ndjson")
    // The day's vehicle leaves at 20:00 with about 100 of its 120 kWh: its session says so.
    let session = try #require(lines.first { $0.contains("\"kind\":\"session\"") })
    #expect(session.contains("\"need_met\":false"))
    let report = try Report.build(sources: [.store(path: folder + "/store.db")])
    let period = try #require(report.sites.first?.periods.first)
    #expect(period.departuresMet == 0)
    let missed = try #require(period.departuresMissed.first)
    #expect(missed.vehicle == "BUS-1")
    #expect(missed.shortKWh > 1)
    #expect(missed.cause.contains("outage"), "an outage fell inside the stay: \(missed.cause)")
    let vehicle = try #require(period.vehicles.first)
    #expect(vehicle.sessions == 1)
    #expect(vehicle.dischargedKWh > 14)
    #expect(vehicle.chargedKWh > 60)
    #expect((vehicle.equivalentFullCycles ?? 0) > 0.2)
  }

  @Test("a seq gap flags the site and names the missing seqs; nothing missing counts as zero")
  func seqGapFlagsTheSite() throws {
    let outbox = try record(to: folder + "/store.db")
    var lines = try ndjson(of: outbox, to: folder + "/site.ndjson")
    let cut = lines.count / 2
    let seq = try #require(
      (try JSONSerialization.jsonObject(with: Data(lines[cut].utf8)) as? [String: Any])?["seq"] as? Int)
    lines.remove(at: cut)
    try (lines.joined(separator: "\n") + "\n").write(toFile: folder + "/site.ndjson", atomically: true, encoding: .utf8)
    let report = try Report.build(sources: [.ndjson(path: folder + "/site.ndjson", site: "site")])
    let site = try #require(report.sites.first)
    #expect(site.flagged)
    #expect(site.seqGaps == [SiteReport.SeqGap(from: Int64(seq), to: Int64(seq))])
    #expect(site.problems.contains { $0.contains("\(seq)–\(seq) are missing") })
    #expect(report.program.flaggedSites == ["site"])
  }

  @Test("a truncated line, a foreign kind and an empty month are warnings; the report is still made")
  func badInputIsNamed() throws {
    let outbox = try record(to: folder + "/store.db")
    var lines = try ndjson(of: outbox, to: folder + "/site.ndjson")
    let foreign = #"{"seq":\#(lines.count + 1),"kind":"weather","time":"2026-07-14T00:00:00.000Z","temp_c":31}"#
    lines.append(foreign)
    let truncated = String(lines[0].prefix(30))
    lines.insert(truncated, at: 1)  // an interrupted write in the middle
    try lines.joined(separator: "\n").write(toFile: folder + "/site.ndjson", atomically: true, encoding: .utf8)
    let report = try Report.build(sources: [.ndjson(path: folder + "/site.ndjson", site: "site")])
    let problems = report.problems
    #expect(problems.contains { $0.contains("site.ndjson:2: not a JSON object") }, "\(problems)")
    #expect(problems.contains { $0.contains("kind 'weather'") && $0.contains(":\(lines.count):") }, "\(problems)")
    #expect(report.sites[0].periods.count == 1, "the rest is reported")

    var options = Report.Options()
    options.range = ReportRange.month("2020-02")!
    let empty = try Report.build(sources: [.store(path: folder + "/store.db")], options: options)
    #expect(empty.sites[0].periods.isEmpty)
    #expect(empty.problems.contains { $0.contains("no records from 2020-02-01 to 2020-03-01") }, "\(empty.problems)")
    let files = try ReportFiles.write(empty, to: folder + "/out")
    #expect(files.count == 8)
    #expect(
      try String(contentsOfFile: folder + "/out/report.html", encoding: .utf8).contains("No records in this range"))
  }

  @Test("a file that is not there, or not a store, is an error naming it")
  func unreadableInputs() throws {
    #expect(throws: ReportInputError.self) { try RecordSource.records(at: folder + "/nothing") }
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    try "not sqlite".write(toFile: folder + "/x.db", atomically: true, encoding: .utf8)
    do {
      _ = try Report.build(sources: [.store(path: folder + "/x.db")])
      Issue.record("a text file read as a store")
    } catch {
      #expect(error.description.contains("x.db"))
    }
  }

  @Test("the panel's live figures agree with the report's over the same steps")
  func liveFiguresAgreeWithTheReport() throws {
    _ = try record(to: folder + "/store.db")
    let report = try Report.build(sources: [.store(path: folder + "/store.db")])
    let period = try #require(report.sites.first?.periods.first)
    let views = Mutex<[PeriodFigures.View]>([])
    let live = PeriodFigures(site: Self.site, billingCycleDay: 1, state: nil) { v in views.withLock { $0.append(v) } }
    var energy = 50.0
    let event = DemandResponseEvent(id: "E1", notifyTime: 0, startTime: 840 * 60, endTime: 900 * 60)
    // One step past midnight closes the day's last interval.
    let steps =
      Self.day().enumerated().map { ($0.offset, $0.element) } + [
        (1440, Minute(building: 100, charger: 0, utility: true, plugged: false))
      ]
    for (m, minute) in steps {
      let t = Double(m) * 60
      let vehicle =
        minute.plugged
        ? PluggedVehicle(
          vehicleID: "BUS-1", batteryKWh: 150, reserveKWh: 20, energyKWh: energy, arrivalEnergyKWh: 50,
          departureTime: 1200 * 60, departureNeedKWh: 120) : nil
      let snapshot = Snapshot(
        time: t, localTime: LocalTime(seconds: Self.start + t), periodSeconds: 60,
        buildingDemandKW: minute.building, utilityAvailable: minute.utility,
        chargers: [ChargerReading(vehicle: vehicle)],
        events: [event])
      let grid = minute.utility ? minute.building + minute.charger : 0
      let decisions = Decisions(setpointsKW: [minute.charger], mode: .gridConnected, demandTargetKW: 250)
      let step = StepRecord(
        snapshot: snapshot, proposal: decisions, decisions: decisions,
        applied: AppliedStep(gridKW: grid, servedKW: minute.building, chargerKW: [minute.charger]),
        wallTime: Date(timeIntervalSince1970: Self.start + t), utilityStable: true, sequence: m)
      live.observe(step)
      if minute.plugged {
        energy += minute.charger > 0 ? minute.charger / 60 * Self.efficiency : minute.charger / 60 / Self.efficiency
      }
    }
    let view = try #require(live.view)
    #expect(abs(view.peakKW - period.peakKW) < 0.01)
    #expect(abs(view.peakWithoutV2XKW - period.peakWithoutV2XKW) < 0.01)
    #expect(abs(view.demandChargeSaved - period.demandChargeSaved) < 0.5)
    #expect(view.lastEvent?.id == "E1")
    #expect(abs((view.lastEvent?.meanDeliveredKW ?? 0) - 15) < 0.01)
    #expect(view.lastEvent?.active == false)
  }
}

@Suite("Charge on arrival: the reference a report bills against")
struct ChargeOnArrivalTests {
  @Test("full rate from plug-in until the need, paused while the utility is away")
  func pausesInOutages() {
    // 10 kWh missing at 10 kW and 100 % efficiency: one hour, with a 30-minute outage inside.
    let spans = ChargeOnArrival.charging(
      from: 0, to: 10_000, arrivalKWh: 0, needKWh: 10, maxChargeKW: 10, efficiency: 1,
      outages: [(start: 1800, end: 3600)])
    #expect(spans.count == 2)
    #expect(spans[0].start == 0 && spans[0].end == 1800)
    #expect(spans[1].start == 3600 && spans[1].end == 5400)
  }

  @Test("nothing when the vehicle arrives with its need; cut at unplugging")
  func edges() {
    #expect(
      ChargeOnArrival.charging(
        from: 0, to: 100, arrivalKWh: 10, needKWh: 10, maxChargeKW: 10, efficiency: 1, outages: []
      ).isEmpty)
    let cut = ChargeOnArrival.charging(
      from: 0, to: 600, arrivalKWh: 0, needKWh: 10, maxChargeKW: 10, efficiency: 0.5, outages: [])
    #expect(cut.count == 1 && cut[0].end == 600)
  }
}
