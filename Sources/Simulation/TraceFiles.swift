import Foundation
import SiteModel

/// Writes a trace as the CSV files SCENARIO.md defines. Numbers are written with a fixed
/// three decimals by integer arithmetic, so the same run gives the same bytes everywhere.
public enum TraceFiles {
  public static func write(_ trace: Trace, scenario: Scenario, to directory: String) throws {
    var intervals = "minute,building_kw,served_kw,ev_kw,grid_kw\n"
    intervals.reserveCapacity(trace.intervals.count * 48)
    for r in trace.intervals {
      intervals += "\(r.minute),"
      appendFixed(r.buildingKW, to: &intervals)
      intervals += ","
      appendFixed(r.servedKW, to: &intervals)
      intervals += ","
      appendFixed(r.evKW, to: &intervals)
      intervals += ","
      appendFixed(r.gridKW, to: &intervals)
      intervals += "\n"
    }
    var vehicles = "minute,vehicle,charge_kwh,discharge_kwh,energy_kwh\n"
    vehicles.reserveCapacity(trace.vehicles.count * 40)
    for r in trace.vehicles {
      vehicles += "\(r.minute),\(scenario.site.vehicles[r.vehicle].id),"
      appendFixed(r.chargeKWh, to: &vehicles)
      vehicles += ","
      appendFixed(r.dischargeKWh, to: &vehicles)
      vehicles += ","
      appendFixed(r.energyKWh, to: &vehicles)
      vehicles += "\n"
    }
    try writeFile(intervals, to: (directory as NSString).appendingPathComponent("intervals.csv"))
    try writeFile(vehicles, to: (directory as NSString).appendingPathComponent("vehicles.csv"))
  }

  /// `value` with exactly three decimals, rounded half away from zero; never "-0.000".
  public static func appendFixed(_ value: Double, to s: inout String) {
    guard value.isFinite else {
      s += "nan"
      return
    }
    var milli = Int64((abs(value) * 1000).rounded())
    if milli != 0 && value < 0 { s += "-" }
    let whole = milli / 1000
    milli %= 1000
    s += String(whole)
    s += milli < 10 ? ".00" : (milli < 100 ? ".0" : ".")
    s += String(milli)
  }

  static func writeFile(_ text: String, to path: String) throws {
    do {
      try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    } catch {
      throw InputError(source: path, message: "cannot be written: \(error.localizedDescription)")
    }
  }
}
