import Foundation
import SiteModel
import Testing

@testable import Simulation

@Suite("Reading scenarios: good ones load, bad ones say file, line and field")
struct ScenarioLoadingTests {
  @Test(
    "the shipped scenarios load",
    arguments: ["school-buses-chicago", "townhall-fleet-baltimore", "high-school-mixed-chicago"])
  func shippedScenarios(name: String) throws {
    let s = try Scenario.load(directory: "scenarios/\(name)")
    #expect(s.intervalCount == 35_040)
    #expect(s.load.count == 8760)
    #expect(!s.sessions.isEmpty)
    #expect(s.events.count == 30)
    #expect(s.start.weekday == 0)
  }

  @Test("the fixture loads with what it says")
  func fixture() throws {
    let f = try ScenarioFixture()
    defer { f.remove() }
    let s = try Scenario.load(directory: f.directory)
    #expect(s.site.chargers.map(\.id) == ["C1", "C2"])
    #expect(s.sessions.count == 5)
    #expect(s.load(atMinute: 0) == 90)
    #expect(s.load(atMinute: 8 * 60 + 59) == 210)
    #expect(s.events.first?.startTime == 54_000.0)
  }

  /// Loads a broken fixture and returns the error it must raise.
  func error(
    json: String = ScenarioFixture.json, load: String = ScenarioFixture.load,
    sessions: String = ScenarioFixture.sessions
  )
    throws -> InputError
  {
    let f = try ScenarioFixture(json: json, load: load, sessions: sessions)
    defer { f.remove() }
    do {
      _ = try Scenario.load(directory: f.directory)
    } catch {
      return error
    }
    Issue.record("the broken scenario loaded")
    return InputError(source: "", message: "")
  }

  @Test("a missing file is named")
  func missingFile() throws {
    let f = try ScenarioFixture()
    defer { f.remove() }
    try FileManager.default.removeItem(atPath: f.directory + "/load.csv")
    #expect(throws: InputError.self) { try Scenario.load(directory: f.directory) }
    do { _ = try Scenario.load(directory: f.directory) } catch {
      #expect(error.source.hasSuffix("load.csv"))
      #expect(error.message.contains("no such file"))
    }
    #expect(throws: InputError(source: "/nonexistent/x", message: "no such scenario directory")) {
      try Scenario.load(directory: "/nonexistent/x")
    }
  }

  @Test("a non-number in a CSV names its line and column")
  func nonNumberInCSV() throws {
    let load = ScenarioFixture.load.replacingOccurrences(of: "180,90\n", with: "180,ninety\n")
    let e = try error(load: load)
    #expect(e.source.hasSuffix("load.csv"))
    #expect(e.line == 5)
    #expect(e.field == "building_kw")
    #expect(e.message.contains("'ninety' is not a number"))
  }

  @Test("a non-number in scenario.json names the key and its line")
  func nonNumberInJSON() throws {
    let e = try error(
      json: ScenarioFixture.json.replacingOccurrences(
        of: "\"import_limit_kw\": 300", with: "\"import_limit_kw\": \"lots\""))
    #expect(e.source.hasSuffix("scenario.json"))
    #expect(e.line == 10)
    #expect(e.field == "site.import_limit_kw")
    #expect(e.message.contains("expected a number"))
  }

  @Test("JSON that does not parse gives the line")
  func brokenJSON() throws {
    let e = try error(
      json: ScenarioFixture.json.replacingOccurrences(of: "\"export_limit_kw\": 0,", with: "\"export_limit_kw\": 0,,"))
    #expect(e.source.hasSuffix("scenario.json"))
    #expect(e.line == 11)
    #expect(e.message.contains("not valid JSON"))
  }

  @Test("overlapping sessions name both lines")
  func overlapping() throws {
    // The car's second session (line 5) arrives before the bus's ... on the same charger.
    let sessions = ScenarioFixture.sessions.replacingOccurrences(
      of: "CAR,C2,540,1710,30,40", with: "CAR,C2,300,1710,30,40")
    let e = try error(sessions: sessions)
    #expect(e.source.hasSuffix("sessions.csv"))
    #expect(e.line == 5)
    #expect(e.message.contains("overlaps"))
    #expect(e.message.contains("line 3"))
  }

  @Test("a vehicle in two places at once is refused even when an earlier session reaches further")
  func overlappingVehicleAcrossChargers() throws {
    let sessions = """
      vehicle,charger,arrive_minute,depart_minute,arrive_kwh,depart_min_kwh
      BUS,C1,0,1440,40,120
      BUS,C2,60,120,40,50
      BUS,C2,300,360,40,50

      """
    let e = try error(sessions: sessions)
    #expect(e.line == 3)
    #expect(e.field == "vehicle")
  }

  @Test("a negative duration is refused")
  func negativeDuration() throws {
    let e = try error(
      json: ScenarioFixture.json.replacingOccurrences(
        of: "\"duration_minutes\": 2880", with: "\"duration_minutes\": -15"))
    #expect(e.field == "duration_minutes")
    #expect(e.line == 5)
    #expect(e.message.contains("above 0"))
  }

  @Test("an absurd duration is refused before anything is allocated for it")
  func absurdDuration() throws {
    let e = try error(
      json: ScenarioFixture.json.replacingOccurrences(
        of: "\"duration_minutes\": 2880", with: "\"duration_minutes\": 900000000000000"))
    #expect(e.field == "duration_minutes")
    #expect(e.message.contains("years"))
  }

  @Test("a session that departs before it arrives is refused")
  func backwardsSession() throws {
    let e = try error(
      sessions: ScenarioFixture.sessions.replacingOccurrences(of: "BUS,C1,600,1440", with: "BUS,C1,600,585"))
    #expect(e.line == 4)
    #expect(e.field == "depart_minute")
  }

  @Test("unknown chargers and vehicles are named")
  func unknownIDs() throws {
    let charger = try error(
      sessions: ScenarioFixture.sessions.replacingOccurrences(of: "CAR,C2,0,480", with: "CAR,C9,0,480"))
    #expect(charger.line == 3)
    #expect(charger.field == "charger")
    #expect(charger.message.contains("unknown charger 'C9'"))
    let vehicle = try error(
      sessions: ScenarioFixture.sessions.replacingOccurrences(of: "BUS,C1,0,420", with: "VAN,C1,0,420"))
    #expect(vehicle.line == 2)
    #expect(vehicle.message.contains("unknown vehicle 'VAN'"))
  }

  @Test(
    "other breakage",
    arguments: [
      ("\"format\": \"v2x-scenario/1\"", "\"format\": \"v2x-scenario/9\"", "format"),
      ("\"efficiency\": 0.94", "\"efficiency\": 1.4", "chargers[0].efficiency"),
      ("\"reserve_kwh\": 8", "\"reserve_kwh\": 80", "vehicles[1].reserve_kwh"),
      ("\"start_minute\": 1500", "\"start_minute\": 1507", "outages[0].start_minute"),
      ("\"notify_minute\": 60", "\"notify_minute\": 960", "dr_events[0].notify_minute"),
      ("\"critical_load_fraction\": 0.35", "\"critical_load_fraction\": true", "site.critical_load_fraction"),
    ])
  func otherBreakage(find: String, replace: String, field: String) throws {
    let e = try error(json: ScenarioFixture.json.replacingOccurrences(of: find, with: replace))
    #expect(e.field == field, "\(e)")
    #expect(e.line != nil, "\(e)")
  }

  @Test("a missing key is named with its section's line")
  func missingKey() throws {
    let e = try error(json: ScenarioFixture.json.replacingOccurrences(of: "\"energy_price_per_kwh\": 0.18,", with: ""))
    #expect(e.field == "tariff.energy_price_per_kwh")
    #expect(e.message.contains("missing"))
    #expect(e.line != nil)
  }

  @Test("a truncated CSV row is named")
  func truncatedRow() throws {
    let e = try error(
      sessions: ScenarioFixture.sessions.replacingOccurrences(of: "CAR,C2,540,1710,30,40", with: "CAR,C2,540"))
    #expect(e.line == 5)
    #expect(e.message.contains("3 fields, expected 6"))
  }
}
