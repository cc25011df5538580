import Foundation

/// Writes small scenarios into a temporary directory, so tests can break them on purpose.
struct ScenarioFixture {
  let directory: String

  static let json = """
    {
      "format": "v2x-scenario/1",
      "name": "tiny",
      "start": "2023-01-01T00:00",
      "duration_minutes": 2880,
      "interval_minutes": 15,
      "load_csv": "load.csv",
      "sessions_csv": "sessions.csv",
      "site": {
        "import_limit_kw": 300,
        "export_limit_kw": 0,
        "event_export_limit_kw": 50,
        "critical_load_fraction": 0.35
      },
      "tariff": {
        "demand_charge_per_kw_month": 20.0,
        "energy_price_per_kwh": 0.18,
        "export_credit_per_kwh": 0.0,
        "dr_payment_per_kw": 225.0,
        "departure_shortfall_penalty_per_kwh": 1000.0,
        "unserved_critical_penalty_per_kwh": 20.0
      },
      "chargers": [
        {"id": "C1", "max_charge_kw": 60, "max_discharge_kw": 60, "efficiency": 0.94, "grid_forming": true},
        {"id": "C2", "max_charge_kw": 15, "max_discharge_kw": 15, "efficiency": 0.93, "grid_forming": false}
      ],
      "vehicles": [
        {"id": "BUS", "battery_kwh": 155, "reserve_kwh": 20},
        {"id": "CAR", "battery_kwh": 62, "reserve_kwh": 8}
      ],
      "dr_events": [
        {"id": "E1", "notify_minute": 60, "start_minute": 900, "end_minute": 1080}
      ],
      "outages": [
        {"start_minute": 1500, "end_minute": 1620}
      ]
    }
    """

  static var load: String {
    var s = "minute,building_kw\n"
    for hour in 0..<48 {
      let h = hour % 24
      s += "\(hour * 60),\(h >= 8 && h < 18 ? 180 + 10 * (h % 5) : 90)\n"
    }
    return s
  }

  static let sessions = """
    vehicle,charger,arrive_minute,depart_minute,arrive_kwh,depart_min_kwh
    BUS,C1,0,420,40,120
    CAR,C2,0,480,20,50
    BUS,C1,600,1440,90,60
    CAR,C2,540,1710,30,40
    BUS,C1,1470,2880,100,60

    """

  init(json: String = Self.json, load: String = Self.load, sessions: String = Self.sessions) throws {
    directory = NSTemporaryDirectory() + "mge-scenario-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    try json.write(toFile: directory + "/scenario.json", atomically: true, encoding: .utf8)
    try load.write(toFile: directory + "/load.csv", atomically: true, encoding: .utf8)
    try sessions.write(toFile: directory + "/sessions.csv", atomically: true, encoding: .utf8)
  }

  func remove() { try? FileManager.default.removeItem(atPath: directory) }
}
