import Foundation
import SimulatedSite
import SiteModel
import Testing

@testable import Appliance

@Suite("Site configuration: examples load, mistakes are named with line and key")
struct ConfigurationTests {
  /// The example school with its scenario path made absolute, in a temporary file.
  func exampleText() throws -> String {
    let text = try String(contentsOfFile: "config/example-school.yaml", encoding: .utf8)
    let scenarios = FileManager.default.currentDirectoryPath + "/scenarios"
    return text.replacingOccurrences(of: "../scenarios", with: scenarios)
  }

  func write(_ text: String) throws -> String {
    let path = NSTemporaryDirectory() + "mge-config-\(UUID().uuidString).yaml"
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  func load(_ text: String, environment: [String: String] = [:]) throws(InputError) -> SiteConfigurationFile.Loaded {
    let path: String
    do { path = try write(text) } catch { throw InputError(source: "temporary file", message: "\(error)") }
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try SiteConfigurationFile.load(path: path, environment: environment)
  }

  func failure(_ text: String, environment: [String: String] = [:]) throws -> InputError {
    do {
      let loaded = try load(text, environment: environment)
      if let first = loaded.warnings.first { return first }
    } catch {
      return error
    }
    Issue.record("the configuration was accepted")
    return InputError(source: "", message: "")
  }

  /// The 1-based line of the first line containing `needle`.
  func line(of needle: String, in text: String) -> Int {
    text.split(separator: "\n", omittingEmptySubsequences: false).firstIndex { $0.contains(needle) }! + 1
  }

  @Test(
    "both examples load and agree with their scenarios",
    arguments: ["config/example-school.yaml", "config/example-townhall.yaml"])
  func examples(path: String) throws {
    let loaded = try SiteConfigurationFile.load(path: path, environment: [:])
    #expect(loaded.warnings.isEmpty, "\(loaded.warnings)")
    let scenario = try loaded.configuration.simulatedScenario()
    #expect(scenario.site == loaded.configuration.site)
    #expect(loaded.configuration.control.enterServiceDelaySeconds == 300)
  }

  @Test("a value of the wrong type names its key and line")
  func wrongType() throws {
    let text = try exampleText().replacingOccurrences(of: "import_limit_kw: 859", with: "import_limit_kw: lots")
    let e = try failure(text)
    #expect(e.field == "site.import_limit_kw")
    #expect(e.line == line(of: "import_limit_kw: lots", in: text))
    #expect(e.message.contains("expected a number"))
  }

  @Test("a misspelt key is caught, not silently ignored")
  func unknownKey() throws {
    let text = try exampleText().replacingOccurrences(
      of: "  enter_service_delay_seconds: 300", with: "  enter_service_delay_secs: 300")
    let e = try failure(text)
    #expect(e.field == "control.enter_service_delay_secs")
    #expect(e.message.contains("unknown key"))
    #expect(e.line == line(of: "enter_service_delay_secs", in: text))
  }

  @Test("a list entry's problem names the entry")
  func listEntry() throws {
    var text = try exampleText()
    let range = text.range(of: "efficiency: 0.94")!
    text.replaceSubrange(range, with: "efficiency: 1.94")
    let e = try failure(text)
    #expect(e.field == "chargers[0].efficiency")
    #expect(e.line == line(of: "efficiency: 1.94", in: text))
  }

  @Test("YAML that does not parse gives the line")
  func brokenYAML() throws {
    let text = try exampleText().replacingOccurrences(of: "  export_limit_kw: 0 ", with: "  export_limit_kw: [0 ")
    let e = try failure(text)
    #expect(e.line != nil)
    #expect(e.message.contains("not valid YAML"))
  }

  @Test("a missing file is named")
  func missingFile() {
    #expect(throws: InputError(source: "/no/such/site.yaml", message: "no such file")) {
      try SiteConfigurationFile.load(path: "/no/such/site.yaml", environment: [:])
    }
  }

  @Test("a simulated plant keeps staff's instructions beside its records, or says it keeps them in memory")
  func simulatedPlantState() throws {
    #expect(try load(try exampleText()).configuration.state == nil, "no store: nothing to keep it beside")
    let stored = try load(try exampleText() + "\nstore:\n  path: /tmp/mge-site/store.db\n").configuration
    #expect(stored.state?.path == "/tmp/mge-site/state.db")
    let named = try load(try exampleText() + "\nstate:\n  path: /tmp/elsewhere/state.db\n").configuration
    #expect(named.state?.path == "/tmp/elsewhere/state.db")
  }

  @Test("environment variables override any key, in sections, lists and new keys")
  func environmentOverrides() throws {
    let loaded = try load(
      try exampleText(),
      environment: [
        "MGE_SITE__IMPORT_LIMIT_KW": "900", "MGE_CHARGERS__1__MAX_CHARGE_KW": "50",
        "MGE_CONTROL__DEPARTURE_MARGIN_SECONDS": "600", "MGE_PLANT__SPEED": "60", "PATH": "/usr/bin",
        "MGE_LOGGING__LEVEL": "debug",
      ])
    let c = loaded.configuration
    #expect(c.site.importLimitKW == 900)
    #expect(c.site.chargers[1].maxChargeKW == 50)
    #expect(c.site.chargers[0].maxChargeKW == 60)
    #expect(c.control.departureMarginSeconds == 600)
    #expect(c.plant?.speed == 60)
    #expect(c.logging.level == "debug")
    #expect(loaded.overrides["site.import_limit_kw"] == "MGE_SITE__IMPORT_LIMIT_KW")
  }

  @Test("a bad override names the environment variable")
  func badOverride() throws {
    let e = try failure(try exampleText(), environment: ["MGE_SITE__IMPORT_LIMIT_KW": "abc"])
    #expect(e.source == "environment variable MGE_SITE__IMPORT_LIMIT_KW")
    #expect(e.field == "site.import_limit_kw")
    let index = try failure(try exampleText(), environment: ["MGE_CHARGERS__9__MAX_CHARGE_KW": "5"])
    #expect(index.source == "environment variable MGE_CHARGERS__9__MAX_CHARGE_KW")
  }

  @Test(
    "range checks",
    arguments: [
      ("enter_service_delay_seconds: 300", "enter_service_delay_seconds: -1", "control.enter_service_delay_seconds"),
      ("  speed: 1 ", "  speed: 0 ", "plant.speed"),
      ("level: info", "level: chatty", "logging.level"),
      ("demand_interval_minutes: 15", "demand_interval_minutes: 7", "demand_interval_minutes"),
      ("critical_load_fraction: 0.35", "critical_load_fraction: 1.35", "site.critical_load_fraction"),
    ])
  func ranges(find: String, replace: String, field: String) throws {
    let text = try exampleText().replacingOccurrences(of: find, with: replace)
    let e = try failure(text)
    #expect(e.field == field, "\(e)")
    #expect(e.line == line(of: replace.trimmingCharacters(in: .whitespaces), in: text), "\(e)")
  }

  @Test("the scenario must name only configured chargers and vehicles; ratings come from the configuration")
  func scenarioAgainstSite() throws {
    let renamed = try load(try exampleText().replacingOccurrences(of: "- id: C4", with: "- id: C9"))
    do {
      _ = try renamed.configuration.simulatedScenario()
      Issue.record("a scenario naming an unconfigured charger was accepted")
    } catch {
      #expect(error.message.contains("charger C4"))
    }
    let derated = try load(try exampleText(), environment: ["MGE_CHARGERS__0__MAX_CHARGE_KW": "50"])
    let scenario = try derated.configuration.simulatedScenario()
    #expect(scenario.site.chargers[0].maxChargeKW == 50)
    let smallBattery = try load(try exampleText(), environment: ["MGE_VEHICLES__0__BATTERY_KWH": "40"])
    #expect(throws: InputError.self) { _ = try smallBattery.configuration.simulatedScenario() }
  }
}
