import Foundation
import SiteModel

/// Home Assistant MQTT discovery: one device with the appliance's sensors and controls,
/// published as ONE retained device-based config (`<discovery>/device/<node>/config`,
/// Home Assistant 2024.11 and later) so Home Assistant shows them with no YAML written
/// by hand. Entities read `P/state` with templates, command through
/// `P/command/<user>`, and a "Last command" sensor reads `P/reply/<user>`, so that a
/// refusal is seen where the button was pressed.
///
/// Appliances before this one published one config per entity
/// (`<discovery>/<component>/<node>/<object>/config`). The components keep those
/// objects' names as their keys and their unique ids, so Home Assistant's migration
/// (see `legacyTopics`) moves each entity over with its entity id and history.
struct HomeAssistantDiscovery {
  var prefix: String
  var discoveryPrefix: String
  var commandUser: String
  var site: SiteDescription
  var version: String

  var node: String { "microgrid_edge_" + MQTTSection.slug(site.name).replacingOccurrences(of: "-", with: "_") }

  /// The one retained topic Home Assistant reads the device from.
  var deviceTopic: String { "\(discoveryPrefix)/device/\(node)/config" }

  /// The filter that matches every per-entity config an older appliance may have left
  /// retained for this node (and nothing else: the device topic has one level fewer).
  var legacyFilter: String { "\(discoveryPrefix)/+/\(node)/+/config" }

  /// Home Assistant's request to unload a per-entity discovery while keeping the entity
  /// in its registry, so that a device config can take it over.
  static let migrateDiscovery = #"{"migrate_discovery":true}"#

  /// Names the device in Home Assistant; every entity's friendly name is this followed by
  /// the entity's own name ("Microgrid Edge: Lincoln High Grid import").
  var deviceName: String { "Microgrid Edge: \(site.name)" }

  struct Component {
    /// sensor, number, switch, button.
    var platform: String
    /// The key in `cmps`; also the object of the per-entity topic older appliances used.
    var object: String
    var config: [String: Any]
  }

  /// Every entity, in a stable order.
  func components() -> [Component] {
    var out: [Component] = []
    let state = "\(prefix)/state"
    let command = "\(prefix)/command/\(commandUser)"
    let reply = "\(prefix)/reply/\(commandUser)"
    func add(_ platform: String, _ object: String, _ name: String, _ fields: [String: Any]) {
      // The name is the entity's own: Home Assistant puts the device's name before it.
      // QoS 1 on every topic, as docs/mqtt-api.md promises: Home Assistant subscribes and
      // publishes at QoS 0 unless told, and a command lost on the way would look sent.
      var config: [String: Any] = ["platform": platform, "name": name, "unique_id": "\(node)_\(object)", "qos": 1]
      config.merge(fields) { _, new in new }
      out.append(Component(platform: platform, object: object, config: config))
    }
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
    // The state's target is null off the grid (no target applies): Home Assistant's
    // sensors and numbers read the text "None" as unknown.
    let targetSensor: [String: Any] = [
      "state_topic": state, "unit_of_measurement": "kW", "device_class": "power", "state_class": "measurement",
      "value_template": "{{ value_json.demand_target_kw if value_json.demand_target_kw is number else 'None' }}",
      "json_attributes_topic": state,
      "json_attributes_template": "{{ {'source': value_json.demand_target_source} | tojson }}",
    ]
    add("sensor", "demand_target", "Demand target", targetSensor)
    power("month_peak", "Month peak demand", "{{ value_json.month_peak_kw }}")
    // The period's figures as `microgrid-edge report` reckons them (docs/reports.md).
    power(
      "period_peak_without_v2x", "Peak without V2X",
      "{{ value_json.period.peak_without_v2x_kw if value_json.period else 'None' }}")
    add(
      "sensor", "period_saving", "Demand charge saved this period",
      [
        "state_topic": state, "unit_of_measurement": "USD", "device_class": "monetary",
        "value_template": "{{ value_json.period.demand_charge_saved if value_json.period else 'None' }}",
      ])
    add(
      "sensor", "last_event_delivery", "Last event delivery",
      [
        "state_topic": state, "unit_of_measurement": "kW", "device_class": "power", "state_class": "measurement",
        "value_template":
          "{{ value_json.period.last_event.mean_delivered_kw if value_json.period and value_json.period.last_event else 'None' }}",
        "json_attributes_topic": state,
        "json_attributes_template":
          "{{ (value_json.period.last_event if value_json.period and value_json.period.last_event else {}) | tojson }}",
      ])
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
    // The outcome of Home Assistant's own commands: every control publishes on
    // P/command/<command_user>, whose replies come on P/reply/<command_user>. The reply's
    // fields (reason, command, request_id, time) become the sensor's attributes.
    add(
      "sensor", "last_command", "Last command",
      [
        "state_topic": reply, "value_template": "{{ value_json.outcome }}", "device_class": "enum",
        "options": ["applied", "refused", "invalid"], "json_attributes_topic": reply, "icon": "mdi:message-reply-text",
      ])
    // The number shows the target staff can set: whole kW up to the service's import
    // limit (the appliance refuses a target above it, or at or below 0). An automatic target outside that range, or
    // none at all (off the grid), shows as unknown, never as a value out of the number's
    // range: Home Assistant logs an error for every such state.
    let targetNumber: [String: Any] = [
      "state_topic": state, "command_topic": command,
      "value_template":
        "{% set t = value_json.demand_target_kw %}{{ t if t is number and 1 <= t <= \(json(site.importLimitKW)) else 'None' }}",
      "command_template":
        #"{"request_id":"ha-target-{{ value }}","command":"set_demand_target","kw":{{ value }}}"#,
      "min": 1, "max": site.importLimitKW, "step": 1, "mode": "box", "unit_of_measurement": "kW",
    ]
    add("number", "demand_target_set", "Set demand target", targetNumber)
    add(
      "button", "demand_target_auto", "Demand target: automatic",
      [
        "command_topic": command,
        "payload_press": #"{"request_id":"ha-target-auto","command":"set_demand_target","kw":null}"#,
        "icon": "mdi:auto-mode",
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

  /// The retained device config: the device, its origin, availability, and every entity.
  func deviceConfig() -> String {
    var cmps: [String: Any] = [:]
    for c in components() { cmps[c.object] = c.config }
    return PanelJSON.text([
      "device": [
        "identifiers": [node], "name": deviceName, "manufacturer": "Microgrid Edge", "model": "microgrid-edge",
        "sw_version": version,
      ] as [String: Any],
      "origin": ["name": "microgrid-edge", "sw_version": version] as [String: Any],
      // Shared by every component (Home Assistant merges these into each).
      "availability_topic": "\(prefix)/status", "payload_available": "online", "payload_not_available": "offline",
      "components": cmps,
    ])
  }

  /// The per-entity topic an older appliance used for `component`.
  func legacyTopic(_ component: Component) -> String {
    "\(discoveryPrefix)/\(component.platform)/\(node)/\(component.object)/config"
  }

  private func json(_ v: Double) -> String {
    v == v.rounded() && abs(v) < 1e15 ? String(Int(v)) : String(v)
  }
}
