import Foundation
import SiteModel

/// Home Assistant MQTT discovery: one device with the appliance's sensors and controls,
/// published retained so Home Assistant shows them with no YAML written by hand.
/// Entities read `P/state` with templates and command through `P/command/<user>`.
struct HomeAssistantDiscovery {
  var prefix: String
  var discoveryPrefix: String
  var commandUser: String
  var site: SiteDescription
  var version: String

  var node: String { "microgrid_edge_" + MQTTSection.slug(site.name).replacingOccurrences(of: "-", with: "_") }

  /// (topic, retained JSON config) for every entity.
  func configs() -> [(String, String)] {
    var out: [(String, String)] = []
    func add(_ component: String, _ object: String, _ name: String, _ fields: [String: Any]) {
      var config: [String: Any] = [
        "name": name,
        "unique_id": "\(node)_\(object)",
        "object_id": "\(node)_\(object)",
        "availability_topic": "\(prefix)/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": [
          "identifiers": [node], "name": "Microgrid Edge: \(site.name)", "manufacturer": "Microgrid Edge",
          "model": "microgrid-edge", "sw_version": version,
        ] as [String: Any],
      ]
      config.merge(fields) { _, new in new }
      out.append(("\(discoveryPrefix)/\(component)/\(node)/\(object)/config", PanelJSON.text(config)))
    }
    let state = "\(prefix)/state"
    let command = "\(prefix)/command/\(commandUser)"
    func power(_ object: String, _ name: String, _ template: String) {
      add(
        "sensor", object, name,
        [
          "state_topic": state, "value_template": template, "unit_of_measurement": "kW", "device_class": "power",
          "state_class": "measurement",
        ])
    }
    add(
      "sensor", "mode", "Mode",
      ["state_topic": state, "value_template": "{{ value_json.mode }}", "icon": "mdi:transmission-tower"])
    power("grid_import", "Grid import", "{{ value_json.grid_import_kw }}")
    power("building_load", "Building load", "{{ value_json.building_load_kw }}")
    power("demand_target", "Demand target", "{{ value_json.demand_target_kw }}")
    power("month_peak", "Month's peak demand", "{{ value_json.month_peak_kw }}")
    add(
      "sensor", "alarms", "Alarms",
      ["state_topic": state, "value_template": "{{ value_json.alarms | length }}", "icon": "mdi:alarm-light"])
    add(
      "sensor", "next_event", "Next demand-response event",
      [
        "state_topic": state,
        "value_template": "{{ value_json.next_event.start if value_json.next_event else 'none' }}",
        "icon": "mdi:calendar-clock",
      ])
    for (i, charger) in site.chargers.enumerated() {
      let c = "value_json.chargers[\(i)]"
      let id = MQTTSection.slug(charger.id).replacingOccurrences(of: "-", with: "_")
      power("charger_\(id)_power", "\(charger.id) power", "{{ \(c).power_kw }}")
      power("charger_\(id)_setpoint", "\(charger.id) setpoint", "{{ \(c).setpoint_kw }}")
      add(
        "sensor", "charger_\(id)_vehicle", "\(charger.id) vehicle",
        [
          "state_topic": state, "value_template": "{{ \(c).vehicle.id if \(c).vehicle else 'none' }}",
          "icon": "mdi:bus",
        ])
      add(
        "sensor", "charger_\(id)_energy", "\(charger.id) vehicle energy",
        [
          "state_topic": state, "value_template": "{{ \(c).vehicle.energy_kwh if \(c).vehicle else 0 }}",
          "unit_of_measurement": "kWh", "device_class": "energy_storage", "state_class": "measurement",
        ])
    }
    add(
      "number", "demand_target_set", "Set demand target",
      [
        "state_topic": state, "value_template": "{{ value_json.demand_target_kw }}", "command_topic": command,
        "command_template":
          #"{"request_id":"ha-target-{{ value }}","command":"set_demand_target","kw":{{ value }}}"#,
        "min": 1, "max": site.importLimitKW, "step": 1, "mode": "box", "unit_of_measurement": "kW",
      ])
    add(
      "switch", "v2x_paused", "V2X paused",
      [
        "state_topic": state, "value_template": "{{ 'ON' if value_json.v2x_paused else 'OFF' }}",
        "state_on": "ON", "state_off": "OFF", "command_topic": command,
        "payload_on": #"{"request_id":"ha-pause-v2x","command":"pause_v2x"}"#,
        "payload_off": #"{"request_id":"ha-resume-v2x","command":"resume_v2x"}"#, "icon": "mdi:car-electric",
      ])
    add(
      "button", "island_test_start", "Start island test",
      ["command_topic": command, "payload_press": #"{"request_id":"ha-island-start","command":"start_island_test"}"#])
    add(
      "button", "island_test_end", "End island test",
      ["command_topic": command, "payload_press": #"{"request_id":"ha-island-end","command":"end_island_test"}"#])
    add(
      "button", "acknowledge_alarms", "Acknowledge all alarms",
      [
        "command_topic": command,
        "payload_press": #"{"request_id":"ha-ack-all","command":"acknowledge_alarm","alarm":"all"}"#,
      ])
    return out
  }
}
