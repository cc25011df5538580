import Foundation
import MQTT
import SiteModel
import Testing

@testable import Appliance

/// The discovery config as Home Assistant reads it. Tests/Integration/test_home_assistant.py
/// checks the same against a real Home Assistant; these say which part of the config is
/// wrong when that test fails.
@Suite("Home Assistant discovery: one device config, QoS 1, controls that speak the command API")
struct HomeAssistantDiscoveryTests {
  let site = SiteDescription(
    name: "Lincoln High", importLimitKW: 500, exportLimitKW: 0, eventExportLimitKW: 0, criticalLoadFraction: 0.3,
    chargers: [
      ChargerSpec(id: "C1", maxChargeKW: 60, maxDischargeKW: 60, efficiency: 0.95, gridForming: true),
      ChargerSpec(id: "C-2", maxChargeKW: 60, maxDischargeKW: 60, efficiency: 0.95, gridForming: false),
    ],
    vehicles: [])

  var discovery: HomeAssistantDiscovery {
    HomeAssistantDiscovery(
      prefix: "microgrid-edge/lincoln-high", discoveryPrefix: "homeassistant", commandUser: "homeassistant",
      site: site, version: "1.2.3")
  }

  func device() throws -> [String: Any] {
    let object = try JSONSerialization.jsonObject(with: Data(discovery.deviceConfig().utf8))
    return try #require(object as? [String: Any])
  }

  func components() throws -> [String: [String: Any]] {
    try #require(try device()["components"] as? [String: [String: Any]])
  }

  func component(_ key: String) throws -> [String: Any] {
    try #require(try components()[key], "no component \(key)")
  }

  @Test func oneDeviceConfigWithEveryEntity() throws {
    #expect(discovery.deviceTopic == "homeassistant/device/microgrid_edge_lincoln_high/config")
    let d = try device()
    let dev = try #require(d["device"] as? [String: Any])
    let identifiers: [String]? = dev["identifiers"] as? [String]
    #expect(identifiers == ["microgrid_edge_lincoln_high"])
    let name: String? = dev["name"] as? String
    #expect(name == "Microgrid Edge: Lincoln High")
    // Home Assistant refuses a device config without its origin.
    let origin: [String: Any]? = d["origin"] as? [String: Any]
    let originName: String? = origin?["name"] as? String
    #expect(originName == "microgrid-edge")
    let availability: String? = d["availability_topic"] as? String
    #expect(availability == "microgrid-edge/lincoln-high/status")
    // 8 site sensors, 3 of the billing period's figures, 4 per charger, a number, a switch,
    // 4 buttons.
    let cmps = try components()
    let expected: Int = 8 + 3 + 4 * 2 + 1 + 1 + 4
    #expect(cmps.count == expected)
    for (key, c) in cmps {
      let platform: String = c["platform"] as? String ?? ""
      let platforms: Set<String> = ["sensor", "number", "switch", "button"]
      #expect(platforms.contains(platform), "\(key)")
      // Unique ids as before device-based discovery: Home Assistant's registry keeps the
      // entity (its id, its history) across the upgrade.
      let uniqueID: String? = c["unique_id"] as? String
      #expect(uniqueID == "microgrid_edge_lincoln_high_\(key)")
    }
  }

  @Test func noObjectIDAndNamesWithoutTheDevice() throws {
    for (key, c) in try components() {
      // object_id: deprecated by Home Assistant 2025.10, ignored from 2026.4.
      #expect(c["object_id"] == nil, "\(key) still sets object_id")
      let name = try #require(c["name"] as? String)
      // Home Assistant puts the device's name before the entity's.
      #expect(!name.contains("Microgrid Edge") && !name.contains("Lincoln High"), "\(key): \(name)")
    }
    #expect(try component("charger_c_2_power")["name"] as? String == "C-2 power")
  }

  @Test func qos1OnEveryTopic() throws {
    for (key, c) in try components() where c["state_topic"] != nil || c["command_topic"] != nil {
      let qos: Int? = c["qos"] as? Int
      #expect(qos == 1, "\(key) without qos 1")
    }
  }

  @Test func everyControlSendsACommandTheAppliancesParserAccepts() throws {
    var payloads: [(String, String)] = []
    for (key, c) in try components() {
      #expect(
        c["command_topic"] == nil
          || c["command_topic"] as? String == "microgrid-edge/lincoln-high/command/homeassistant")
      for field in ["payload_press", "payload_on", "payload_off"] {
        if let p = c[field] as? String { payloads.append(("\(key).\(field)", p)) }
      }
      if let t = c["command_template"] as? String {
        payloads.append(("\(key).command_template", t.replacingOccurrences(of: "{{ value }}", with: "250")))
      }
    }
    #expect(payloads.count == 7)
    for (what, payload) in payloads {
      let parsed = PanelJSON.command(Array(payload.utf8), site: site)
      let command: PanelCommand? = try? parsed.result.get()
      #expect(command != nil, "\(what): \(payload) is refused by the parser")
    }
  }

  @Test func aButtonGivesTheTargetBackToTheController() throws {
    let button = try component("demand_target_auto")
    #expect(button["platform"] as? String == "button")
    let press = try #require(button["payload_press"] as? String)
    #expect(
      try PanelJSON.command(Array(press.utf8), site: site).result.get() == .control(.setDemandTarget(kW: nil)))
  }

  @Test func theLastCommandSensorReadsTheRepliesToHomeAssistant() throws {
    let sensor = try component("last_command")
    let replies = "microgrid-edge/lincoln-high/reply/homeassistant"
    #expect(sensor["state_topic"] as? String == replies)
    #expect(sensor["json_attributes_topic"] as? String == replies)
    #expect(sensor["value_template"] as? String == "{{ value_json.outcome }}")
    // Every outcome a reply can carry (PanelService) is one of the sensor's states.
    #expect(sensor["options"] as? [String] == ["applied", "refused", "invalid"])
  }

  @Test func theTargetNumberShowsOnlyValuesInItsRange() throws {
    let number = try component("demand_target_set")
    let min: Double? = number["min"] as? Double
    let max: Double? = number["max"] as? Double
    #expect(min == 1)
    #expect(max == 500)
    // Anything else, and a null target, renders "None" (unknown), never an out-of-range
    // value that Home Assistant logs an error for at every state.
    let template = try #require(number["value_template"] as? String)
    #expect(template.contains("t is number and 1 <= t <= 500 else 'None'"), "\(template)")
    let sensor = try component("demand_target")
    let sensorTemplate: String = sensor["value_template"] as? String ?? ""
    #expect(sensorTemplate.contains("is number else 'None'"))
  }

  @Test func noDemandTargetOffTheGrid() {
    for mode in [OperatingMode.islanded, .reconnecting, .blackout] {
      #expect(PanelJSON.demandTarget(Decisions(setpointsKW: [], mode: mode, demandTargetKW: 0)) == nil, "\(mode)")
    }
    #expect(PanelJSON.demandTarget(Decisions(setpointsKW: [], mode: .gridConnected, demandTargetKW: 0)) == nil)
    #expect(PanelJSON.demandTarget(Decisions(setpointsKW: [], mode: .gridConnected, demandTargetKW: 420)) == 420)
    #expect(PanelJSON.demandTarget(Decisions(setpointsKW: [], mode: .safe, demandTargetKW: 300)) == 300)
  }

  @Test func theOldPerEntityTopicsAreFoundForMigration() throws {
    let filter = try #require(TopicFilter(discovery.legacyFilter))
    let grid = try #require(discovery.components().first { $0.object == "grid_import" })
    #expect(discovery.legacyTopic(grid) == "homeassistant/sensor/microgrid_edge_lincoln_high/grid_import/config")
    #expect(filter.matches(discovery.legacyTopic(grid)))
    #expect(filter.matches("homeassistant/sensor/microgrid_edge_lincoln_high/charger_c9_power/config"))
    #expect(!filter.matches(discovery.deviceTopic), "the device config is not an old one")
    #expect(!filter.matches("homeassistant/sensor/other_node/grid_import/config"))
  }
}
