import Appliance
import ArgumentParser
import Chargers
import Control
import Foundation
import Logging
import SiteModel

/// One control step at the field site, timed: the snapshot from the drivers (a grid meter,
/// N chargers with vehicles), the controller's proposal and the safety filter, actuation,
/// the demand meter and the state store, as `run` does them. The clock is a manual one
/// that moves a second per step, so a day of steps runs in seconds. Prints one JSON object
/// (for scripts/bench): step time percentiles and the state database's size.
struct BenchField: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-field",
    abstract: "Time the field site's control step with N chargers (for scripts/bench).")

  @Option(help: "Chargers, each with a vehicle plugged in.")
  var chargers = 10

  @Option(help: "Control steps (one site second each).")
  var steps = 86_400

  @Option(help: "A folder for the state database (created).")
  var dir: String

  func run() async throws {
    guard chargers > 0, steps > 0 else { throw ValidationError("--chargers and --steps must be above 0") }
    var logger = Logger(label: "bench-field")
    logger.logLevel = .critical
    let specs = (1...chargers).map {
      ChargerSpec(id: "C\($0)", maxChargeKW: 60, maxDischargeKW: 60, efficiency: 0.94, gridForming: $0 == 1)
    }
    let vehicles = (1...chargers).map { VehicleSpec(id: "BUS-\($0)", batteryKWh: 155, reserveKWh: 20) }
    let site = SiteDescription(
      name: "bench field", importLimitKW: 1500, exportLimitKW: 0, eventExportLimitKW: 200, criticalLoadFraction: 0.35,
      chargers: specs, vehicles: vehicles)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let statePath = (dir as NSString).appendingPathComponent("state.db")
    let state = try SiteState(path: statePath, logger: logger)
    let start = Date()
    let drivers: [(index: Int, charger: any Charger)] = (0..<chargers).map { i in
      let needs = VehicleNeeds(
        vehicleID: "BUS-\(i + 1)", batteryKWh: 155, energyKWh: 60 + Double(i * 7 % 60), reserveKWh: 20,
        arrivalEnergyKWh: 60, departureNeedKWh: 110, departure: start.addingTimeInterval(Double(steps) + 3600))
      return (i, SimulatedCharger(id: "C\(i + 1)", maxChargeKW: 60, maxDischargeKW: 60, vehicle: needs, now: start))
    }
    let status = SiteStatus(site: site, meters: nil, state: state, logger: logger)
    let fleet = ChargerFleet(drivers: drivers, status: status, site: site)
    let meter = MeterInputs(meters: [
      MeterSpec(id: "main", role: .gridImport, topic: "bench/main", value: "$.power", unit: .watt)
    ])
    let zone = SiteTimeZone(identifier: "America/New_York")!
    // 2026-07-14 10:00 EDT: a summer weekday.
    let clock = ManualClock(utc: Double(CivilDate(year: 2026, month: 7, day: 14).dayNumber) * 86_400 + 14 * 3600)
    let source = GridImportSource(meters: meter, pulseMeterKW: nil, chargersKW: { fleet.measuredKW })
    let field = FieldSite(
      site: site,
      configuration: .init(timeZone: zone, demandMeter: .init(intervalSeconds: 900)),
      clock: clock, drivers: [fleet, meter], gridImport: { source.reading($0) }, state: state, status: status,
      logger: logger)
    let service = ControlLoopService(
      controller: Controller(site: site), io: field, configuration: .init(), logger: logger, overlays: [status],
      observers: [status], actuators: [fleet], status: status, memory: state)
    var times: [Double] = []
    times.reserveCapacity(steps)
    for i in 0..<steps {
      clock.advance(1)
      // The building: 400-700 kW over the day, plus what the chargers draw.
      let building = 550 + 150 * sin(Double(i) / 86_400 * 2 * .pi)
      let watts = (building + fleet.measuredKW) * 1000
      meter.ingest(topic: "bench/main", payload: Array(#"{"power": \#(watts)}"#.utf8))
      let t0 = DispatchTime.now().uptimeNanoseconds
      try await service.step()
      times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1000)
    }
    times.sort()
    func p(_ q: Double) -> Double { times[min(times.count - 1, Int(Double(times.count) * q))] }
    let size = (try? FileManager.default.attributesOfItem(atPath: statePath)[.size] as? Int) ?? 0
    let wal = (try? FileManager.default.attributesOfItem(atPath: statePath + "-wal")[.size] as? Int) ?? 0
    let result: [String: Any] = [
      "chargers": chargers, "steps": steps, "step_p50_us": p(0.5), "step_p99_us": p(0.99), "step_max_us": times.last!,
      "state_db_bytes": size, "state_wal_bytes": wal, "demand_intervals_kept": state.intervalCount(),
      "period_peak_kw": field.demandMeter.periodPeakKW,
    ]
    let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
  }
}
