import Foundation
import SiteFiles
import SiteModel

/// One plug-in session of the scenario: which vehicle, which charger, when, with how much,
/// needing how much. Times in minutes since the scenario start.
public struct Session: Sendable, Hashable {
  public var vehicle: Int
  public var charger: Int
  public var arriveMinute: Int
  public var departMinute: Int
  public var arriveKWh: Double
  public var departMinKWh: Double
  /// Line in sessions.csv, for messages.
  public var line: Int
}

/// A utility outage, minutes since the scenario start, `[start, end)`.
public struct Outage: Sendable, Hashable {
  public var startMinute: Int
  public var endMinute: Int
  public func contains(minute: Int) -> Bool { minute >= startMinute && minute < endMinute }
}

/// A `v2x-scenario/1` directory, read and checked (see docs/scenario-format.md and
/// shared/benchmark/SCENARIO.md).
public struct Scenario: Sendable {
  public var name: String
  public var directory: String
  /// Local wall-clock time of minute 0.
  public var start: LocalTime
  public var durationMinutes: Int
  public var intervalMinutes: Int
  public var site: SiteDescription
  /// (minute, kW) steps; each holds until the next. The first is at minute 0.
  public var load: [(minute: Int, kW: Double)]
  /// Sorted by arrival.
  public var sessions: [Session]
  /// Times in seconds since the scenario start.
  public var events: [DemandResponseEvent]
  public var outages: [Outage]

  public var intervalSeconds: Double { Double(intervalMinutes) * 60 }
  public var intervalCount: Int { durationMinutes / intervalMinutes }

  /// The building's demand at a minute (the step holding then).
  public func load(atMinute minute: Int) -> Double {
    var lo = 0
    var hi = load.count - 1
    while lo < hi {
      let mid = (lo + hi + 1) / 2
      if load[mid].minute <= minute { lo = mid } else { hi = mid - 1 }
    }
    return load[lo].kW
  }
}

/// The whole of scenario.json as the reader understands it, re-encoded to spot keys it
/// does not know (a typo in a scenario would otherwise be silently ignored).
struct ScenarioFileImage: Encodable {
  var file: ScenarioFile
  var site: SiteLimitsSection
  var tariff: Tariff
  var chargers: [ChargerSpec]
  var vehicles: [VehicleSpec]

  init(file: ScenarioFile, doc: StructuredDocument) throws(InputError) {
    self.file = file
    site = try doc.decode(SiteLimitsSection.self, key: "site")
    tariff = try doc.decode(Tariff.self, key: "tariff")
    chargers = try doc.decode([ChargerSpec].self, key: "chargers")
    vehicles = try doc.decode([VehicleSpec].self, key: "vehicles")
  }

  func encode(to encoder: any Encoder) throws {
    try file.encode(to: encoder)
    var c = encoder.container(keyedBy: Keys.self)
    try c.encode(site, forKey: .site)
    try c.encode(tariff, forKey: .tariff)
    try c.encode(chargers, forKey: .chargers)
    try c.encode(vehicles, forKey: .vehicles)
  }

  enum Keys: String, CodingKey { case site, tariff, chargers, vehicles }
}

/// The scenario.json keys.
struct ScenarioFile: Codable {
  var format: String
  var name: String
  var start: String
  var durationMinutes: Int
  var intervalMinutes: Int
  var loadCSV: String
  var sessionsCSV: String
  var drEvents: [EventEntry]
  var outages: [OutageEntry]

  struct EventEntry: Codable {
    var id: String
    var notifyMinute: Int
    var startMinute: Int
    var endMinute: Int
    enum CodingKeys: String, CodingKey {
      case id
      case notifyMinute = "notify_minute"
      case startMinute = "start_minute"
      case endMinute = "end_minute"
    }
  }

  struct OutageEntry: Codable {
    var startMinute: Int
    var endMinute: Int
    enum CodingKeys: String, CodingKey {
      case startMinute = "start_minute"
      case endMinute = "end_minute"
    }
  }

  enum CodingKeys: String, CodingKey {
    case format, name, start, outages
    case durationMinutes = "duration_minutes"
    case intervalMinutes = "interval_minutes"
    case loadCSV = "load_csv"
    case sessionsCSV = "sessions_csv"
    case drEvents = "dr_events"
  }
}

extension Scenario {
  public static let format = "v2x-scenario/1"
  /// Ten years of minutes.
  public static let maximumDurationMinutes = 10 * 525_600

  /// Reads a scenario directory. Every problem is an `InputError` naming the file, the
  /// line and the field.
  public static func load(directory: String) throws(InputError) -> Scenario {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
      throw InputError(source: directory, message: "no such scenario directory")
    }
    guard isDirectory.boolValue else {
      throw InputError(source: directory, message: "is a file; give the scenario's directory")
    }
    let jsonPath = (directory as NSString).appendingPathComponent("scenario.json")
    let doc = try StructuredDocument.load(path: jsonPath, format: .json)
    let file = try doc.decode(ScenarioFile.self)

    func check(_ ok: Bool, _ path: [String], _ message: String) throws(InputError) {
      if !ok { throw doc.error(at: path, message) }
    }
    try check(file.format == format, ["format"], "is '\(file.format)'; this reads '\(format)'")
    guard let start = CivilDate.parseLocalDateTime(file.start) else {
      throw doc.error(at: ["start"], "'\(file.start)' is not a local time like 2023-01-01T00:00")
    }
    try check(file.intervalMinutes > 0, ["interval_minutes"], "must be above 0")
    try check(file.durationMinutes > 0, ["duration_minutes"], "must be above 0 (it is \(file.durationMinutes))")
    // A trace is kept in memory; a century of it would not fit on the appliance.
    try check(
      file.durationMinutes <= maximumDurationMinutes, ["duration_minutes"],
      "\(file.durationMinutes) is more than the \(maximumDurationMinutes / 525_600) years a run may cover")
    try check(
      file.durationMinutes % file.intervalMinutes == 0, ["duration_minutes"],
      "must be a multiple of interval_minutes (\(file.intervalMinutes))")
    let interval = file.intervalMinutes
    let site = try doc.siteDescription(name: file.name, demandIntervalSeconds: Double(interval) * 60)
    // Everything decoded; now the keys nothing read (typos) are errors too.
    if let unknown = try doc.unknownKeys(comparedWith: ScenarioFileImage(file: file, doc: doc)).first { throw unknown }

    var events: [DemandResponseEvent] = []
    var eventIDs: Set<String> = []
    for (i, e) in file.drEvents.enumerated() {
      let at = ["dr_events", String(i)]
      try check(eventIDs.insert(e.id).inserted, at + ["id"], "'\(e.id)' is listed twice")
      try check(e.startMinute < e.endMinute, at + ["end_minute"], "must be after start_minute (\(e.startMinute))")
      try check(e.notifyMinute <= e.startMinute, at + ["notify_minute"], "must not be after start_minute")
      for (key, value) in [
        ("notify_minute", e.notifyMinute), ("start_minute", e.startMinute), ("end_minute", e.endMinute),
      ] {
        try check(value >= 0, at + [key], "must be 0 or more")
        try check(value % interval == 0, at + [key], "must be a multiple of interval_minutes (\(interval))")
      }
      events.append(
        DemandResponseEvent(
          id: e.id, notifyTime: Double(e.notifyMinute) * 60, startTime: Double(e.startMinute) * 60,
          endTime: Double(e.endMinute) * 60))
    }
    events.sort { $0.notifyTime < $1.notifyTime }

    var outages: [Outage] = []
    for (i, o) in file.outages.enumerated() {
      let at = ["outages", String(i)]
      try check(o.startMinute >= 0, at + ["start_minute"], "must be 0 or more")
      try check(o.startMinute < o.endMinute, at + ["end_minute"], "must be after start_minute (\(o.startMinute))")
      try check(
        o.startMinute % interval == 0, at + ["start_minute"], "must be a multiple of interval_minutes (\(interval))")
      try check(
        o.endMinute % interval == 0, at + ["end_minute"], "must be a multiple of interval_minutes (\(interval))")
      outages.append(Outage(startMinute: o.startMinute, endMinute: o.endMinute))
    }
    outages.sort { $0.startMinute < $1.startMinute }
    for (a, b) in zip(outages, outages.dropFirst()) where b.startMinute < a.endMinute {
      throw doc.error(at: ["outages"], "outages at minute \(a.startMinute) and \(b.startMinute) overlap")
    }

    let load = try readLoad(
      path: (directory as NSString).appendingPathComponent(file.loadCSV), intervalMinutes: interval)
    let sessions = try readSessions(
      path: (directory as NSString).appendingPathComponent(file.sessionsCSV), site: site,
      intervalMinutes: interval)

    return Scenario(
      name: file.name, directory: directory, start: start, durationMinutes: file.durationMinutes,
      intervalMinutes: interval, site: site, load: load, sessions: sessions, events: events,
      outages: outages)
  }

  static func readLoad(path: String, intervalMinutes: Int) throws(InputError) -> [(minute: Int, kW: Double)] {
    let table = try CSVTable(path: path, expectedColumns: ["minute", "building_kw"])
    var load: [(minute: Int, kW: Double)] = []
    load.reserveCapacity(table.rows.count)
    for row in table.rows {
      let minute = try table.integer(row, 0)
      let kW = try table.number(row, 1)
      if minute % intervalMinutes != 0 {
        throw table.error(
          line: row.line, column: 0, "\(minute) is not a multiple of interval_minutes (\(intervalMinutes))")
      }
      if load.isEmpty && minute != 0 {
        throw table.error(line: row.line, column: 0, "the first row must be minute 0, not \(minute)")
      }
      if let last = load.last, minute <= last.minute {
        throw table.error(line: row.line, column: 0, "minute \(minute) does not come after \(last.minute)")
      }
      if kW < 0 { throw table.error(line: row.line, column: 1, "\(kW) kW is negative") }
      load.append((minute, kW))
    }
    if load.isEmpty { throw InputError(source: path, line: 2, message: "has no rows; minute 0 is needed") }
    return load
  }

  static func readSessions(path: String, site: SiteDescription, intervalMinutes: Int) throws(InputError)
    -> [Session]
  {
    let table = try CSVTable(
      path: path,
      expectedColumns: ["vehicle", "charger", "arrive_minute", "depart_minute", "arrive_kwh", "depart_min_kwh"])
    var sessions: [Session] = []
    sessions.reserveCapacity(table.rows.count)
    for row in table.rows {
      guard let vehicle = site.vehicleIndex(id: String(row.fields[0])) else {
        throw table.error(line: row.line, column: 0, "unknown vehicle '\(row.fields[0])' (not in scenario.json)")
      }
      guard let charger = site.chargerIndex(id: String(row.fields[1])) else {
        throw table.error(line: row.line, column: 1, "unknown charger '\(row.fields[1])' (not in scenario.json)")
      }
      let arrive = try table.integer(row, 2)
      let depart = try table.integer(row, 3)
      let arriveKWh = try table.number(row, 4)
      let need = try table.number(row, 5)
      if arrive < 0 { throw table.error(line: row.line, column: 2, "must be 0 or more") }
      if depart <= arrive {
        throw table.error(line: row.line, column: 3, "departs at minute \(depart), not after arriving at \(arrive)")
      }
      for (column, value) in [(2, arrive), (3, depart)] where value % intervalMinutes != 0 {
        throw table.error(line: row.line, column: column, "must be a multiple of interval_minutes (\(intervalMinutes))")
      }
      let battery = site.vehicles[vehicle].batteryKWh
      if arriveKWh < 0 || arriveKWh > battery {
        throw table.error(line: row.line, column: 4, "\(arriveKWh) kWh is outside the battery's 0...\(battery) kWh")
      }
      if need < 0 || need > battery {
        throw table.error(line: row.line, column: 5, "\(need) kWh is outside the battery's 0...\(battery) kWh")
      }
      sessions.append(
        Session(
          vehicle: vehicle, charger: charger, arriveMinute: arrive, departMinute: depart, arriveKWh: arriveKWh,
          departMinKWh: need, line: row.line))
    }
    sessions.sort { ($0.arriveMinute, $0.line) < ($1.arriveMinute, $1.line) }
    // A vehicle is in one place at a time; a charger takes one vehicle at a time.
    var lastByVehicle: [Int: Session] = [:]
    var lastByCharger: [Int: Session] = [:]
    for s in sessions {
      if let prev = lastByVehicle[s.vehicle], prev.departMinute > s.arriveMinute {
        throw table.error(
          line: s.line, column: 0,
          "session of \(site.vehicles[s.vehicle].id) overlaps its session on line \(prev.line)")
      }
      if let prev = lastByCharger[s.charger], prev.departMinute > s.arriveMinute {
        throw table.error(
          line: s.line, column: 1,
          "session on \(site.chargers[s.charger].id) overlaps the session on line \(prev.line)")
      }
      // Keep the session that reaches furthest: it is the one a later arrival may overlap.
      if s.departMinute > lastByVehicle[s.vehicle]?.departMinute ?? -1 { lastByVehicle[s.vehicle] = s }
      if s.departMinute > lastByCharger[s.charger]?.departMinute ?? -1 { lastByCharger[s.charger] = s }
    }
    return sessions
  }
}
