import Foundation
import SiteModel

/// Writes a trace as the CSV files SCENARIO.md defines. Numbers are written with a fixed
/// three decimals by integer arithmetic, so the same run gives the same bytes everywhere.
public enum TraceFiles {
  public static func write(_ trace: Trace, scenario: Scenario, to directory: String) throws {
    var intervals = "minute,building_kw,served_kw,ev_kw,grid_kw\n"
    intervals.reserveCapacity(trace.intervals.count * 48)
    for r in trace.intervals {
      intervals += "\(r.minute)"
      appendFixedFields([r.buildingKW, r.servedKW, r.evKW, r.gridKW], to: &intervals)
    }
    var vehicles = "minute,vehicle,charge_kwh,discharge_kwh,energy_kwh\n"
    vehicles.reserveCapacity(trace.vehicles.count * 40)
    for r in trace.vehicles {
      vehicles += "\(r.minute),\(scenario.site.vehicles[r.vehicle].id)"
      appendFixedFields([r.chargeKWh, r.dischargeKWh, r.energyKWh], to: &vehicles)
    }
    try writeFile(intervals, to: (directory as NSString).appendingPathComponent("intervals.csv"))
    try writeFile(vehicles, to: (directory as NSString).appendingPathComponent("vehicles.csv"))
  }

  /// ",v1,v2,...\n" with each value as `appendFixed` writes it.
  static func appendFixedFields(_ values: [Double], to s: inout String) {
    for v in values {
      s += ","
      appendFixed(v, to: &s)
    }
    s += "\n"
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
