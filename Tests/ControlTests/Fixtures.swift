import Control
import SiteModel
@_exported import TestKit

enum Fixtures {
  static func site(
    chargers: [ChargerSpec] = [
      ChargerSpec(id: "C1", maxChargeKW: 60, maxDischargeKW: 60, efficiency: 0.94, gridForming: true),
      ChargerSpec(id: "C2", maxChargeKW: 15, maxDischargeKW: 15, efficiency: 0.93, gridForming: false),
    ],
    importLimitKW: Double = 500, exportLimitKW: Double = 0, eventExportLimitKW: Double = 50
  ) -> SiteDescription {
    SiteDescription(
      name: "test", importLimitKW: importLimitKW, exportLimitKW: exportLimitKW,
      eventExportLimitKW: eventExportLimitKW, criticalLoadFraction: 0.35, chargers: chargers,
      vehicles: [
        VehicleSpec(id: "BUS", batteryKWh: 155, reserveKWh: 20), VehicleSpec(id: "CAR", batteryKWh: 62, reserveKWh: 8),
      ])
  }

  static func vehicle(
    _ id: String = "BUS", battery: Double = 155, reserve: Double = 20, energy: Double, arrival: Double? = nil,
    departure: Double, need: Double
  ) -> PluggedVehicle {
    PluggedVehicle(
      vehicleID: id, batteryKWh: battery, reserveKWh: reserve, energyKWh: energy,
      arrivalEnergyKWh: arrival ?? energy, departureTime: departure, departureNeedKWh: need)
  }

  /// A snapshot on a Wednesday in July, at `time` seconds on the timeline.
  static func snapshot(
    time: Double, building: Double = 200, utility: Bool = true, switch position: TransferSwitchPosition = .utility,
    chargers: [ChargerReading], events: [DemandResponseEvent] = [], monthPeak: Double = 0, period: Double = 60
  ) -> Snapshot {
    let base = LocalTime(seconds: Double(CivilDate(year: 2023, month: 7, day: 12).dayNumber) * 86_400)
    return Snapshot(
      time: time, localTime: base + time, periodSeconds: period, buildingDemandKW: building,
      utilityAvailable: utility, transferSwitch: position, chargers: chargers, events: events,
      meter: DemandMeterReading(monthPeakKW: monthPeak, intervalImportKWh: 0, intervalElapsedSeconds: 0))
  }
}

/// A minimal site for driving the controller in tests: batteries follow setpoints with the
/// chargers' efficiency, the switch follows commands, the meter integrates the grid. It
/// is deliberately separate from Simulation's plant so the two check each other.
struct TinySite {
  var site: SiteDescription
  var time = 0.0
  var vehicles: [PluggedVehicle?]
  var building: (Double) -> Double
  var utility: (Double) -> Bool = { _ in true }
  var events: [DemandResponseEvent] = []
  var position = TransferSwitchPosition.utility
  var meter = DemandMeterReading()
  var servedKWh = 0.0
  var deadGridExports = 0

  func snapshot(period: Double) -> Snapshot {
    let base = LocalTime(seconds: Double(CivilDate(year: 2023, month: 7, day: 12).dayNumber) * 86_400)
    return Snapshot(
      time: time, localTime: base + time, periodSeconds: period, buildingDemandKW: building(time),
      utilityAvailable: utility(time), transferSwitch: position,
      chargers: vehicles.map { ChargerReading(vehicle: $0) }, events: events.filter { $0.notifyTime <= time },
      meter: meter)
  }

  mutating func apply(_ d: Decisions, period: Double) {
    let h = period / 3600
    switch d.transferSwitch {
    case .hold: break
    case .toIsland: position = .island
    case .toUtility: position = .utility
    }
    let onGrid = position == .utility && utility(time)
    var ev = 0.0
    for i in vehicles.indices {
      guard var v = vehicles[i] else { continue }
      let p = d.setpointsKW[i]
      if !onGrid && position == .utility && p < 0 { deadGridExports += 1 }
      let eta = site.chargers[i].efficiency
      v.energyKWh += p >= 0 ? p * h * eta : p * h / eta
      vehicles[i] = v
      ev += p
    }
    let grid = onGrid ? building(time) + ev : 0
    if onGrid { servedKWh += building(time) * h } else if position == .island { servedKWh += -ev * h }
    meter.intervalImportKWh += grid * h
    meter.intervalElapsedSeconds += period
    if meter.intervalElapsedSeconds >= site.demandIntervalSeconds {
      meter.monthPeakKW = max(meter.monthPeakKW, meter.intervalImportKWh / (meter.intervalElapsedSeconds / 3600))
      meter.intervalImportKWh = 0
      meter.intervalElapsedSeconds = 0
    }
    time += period
  }
}
