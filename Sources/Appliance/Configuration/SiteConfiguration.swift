import Control
import Foundation
import SiteFiles
import SiteModel

/// The site configuration the daemon runs from: the site description, the controller's
/// settings, where its inputs and outputs are, and logging. See docs/configuration.md.
public struct SiteConfiguration: Sendable {
  public var site: SiteDescription
  public var control: ControlSettings
  /// A simulated building for demos and tests (`plant: {kind: simulated, ...}`); nil: the
  /// building the appliance is wired to (the field site).
  public var plant: PlantSection?
  /// The site's time zone and clock (required for the field site).
  public var time: TimeSection?
  public var billing = BillingSection()
  /// Where the appliance's own state is kept (default beside the store; at the field site
  /// else /var/lib/microgrid-edge/state.db; nil: a simulated plant keeping it in memory).
  public var state: StateSection?
  /// Departures and needs of vehicles whose chargers do not say them.
  public var vehicleDefaults = VehicleDefaults()
  public var logging: LoggingSection
  /// The building's MQTT broker: meters in, panels (nil: no MQTT). See docs/mqtt-api.md.
  public var mqtt: MQTTSection?
  /// Meter inputs over MQTT; none: the building load comes from the plant.
  public var meters: [MeterSpec] = []
  /// Where records wait for the central program (nil: no records are kept).
  public var store: StoreSection?
  /// The central program's ingest API (nil: records are kept but not sent).
  public var central: CentralSection?
  /// Transfer switch, emergency stop, pulse meter and shed relays over GPIO (nil: the
  /// plant supplies them).
  public var gpio: GPIOSection?
  /// How the utility's presence is known (nil: from the contact, or the simulated plant).
  public var utility: UtilitySection?
  /// Chargers on OCPP (nil: none), and on MQTT gateways; the others follow the plant.
  public var ocpp: OCPPSection?
  public var mqttChargers: [MQTTChargerSpec] = []
  /// The Prometheus endpoint (nil: none).
  public var metrics: MetricsSection?
  /// The appliance as an OpenADR 2.0b VEN of the utility's VTN (nil: none).
  public var openADR: OpenADRSection?
  /// The file it came from.
  public var source: String

  /// Where the appliance's measurements come from and its commands go.
  public struct PlantSection: Codable, Sendable, Hashable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
      case simulated

      public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let kind = Kind(rawValue: text) else {
          throw DecodingError.dataCorrupted(
            .init(
              codingPath: decoder.codingPath,
              debugDescription:
                "'\(text)' is not a plant this build can simulate; it knows: \(Kind.allCases.map(\.rawValue).joined(separator: ", ")) (leave plant: out to run the building the appliance is wired to)"
            ))
        }
        self = kind
      }
    }
    public var kind: Kind
    /// For `simulated`: a v2x-scenario/1 directory (relative to the configuration file)
    /// whose load, sessions, events and outages the simulated building follows.
    public var scenario: String?
    /// For `simulated`: where in the scenario the run starts, minutes.
    public var startMinute: Int?
    /// Simulated seconds per real second (1: real time).
    public var speed: Double?

    public init(kind: Kind, scenario: String? = nil, startMinute: Int? = nil, speed: Double? = nil) {
      self.kind = kind
      self.scenario = scenario
      self.startMinute = startMinute
      self.speed = speed
    }

    enum CodingKeys: String, CodingKey {
      case kind, scenario, speed
      case startMinute = "start_minute"
    }
  }

  public struct LoggingSection: Codable, Sendable, Hashable {
    /// trace, debug, info, notice, warning, error or critical.
    public var level: String?
    /// A status line this often, in simulated seconds.
    public var statusEverySeconds: Double?

    public init(level: String? = nil, statusEverySeconds: Double? = nil) {
      self.level = level
      self.statusEverySeconds = statusEverySeconds
    }

    enum CodingKeys: String, CodingKey {
      case level
      case statusEverySeconds = "status_every_seconds"
    }
  }
}

/// The file's layout, for decoding and for spotting unknown keys.
struct ConfigurationFileImage: Codable {
  var site: SiteLimitsSection
  var demandIntervalMinutes: Int?
  var tariff: Tariff
  var chargers: [ChargerSpec]
  var vehicles: [VehicleSpec]
  var control: ControlSettings?
  var plant: SiteConfiguration.PlantSection?
  var time: TimeSection?
  var billing: BillingSection?
  var state: StateSection?
  var vehicleDefaults: VehicleDefaultsSection?
  var logging: SiteConfiguration.LoggingSection?
  var mqtt: MQTTSection?
  var meters: [MeterSpec]?
  var store: StoreSection?
  var central: CentralSection?
  var gpio: GPIOSection?
  var utility: UtilitySection?
  var ocpp: OCPPSection?
  var mqttChargers: [MQTTChargerSpec]?
  var metrics: MetricsSection?
  var openadr: OpenADRSection?

  enum CodingKeys: String, CodingKey {
    case site, tariff, chargers, vehicles, control, plant, logging, mqtt, meters, store, central, gpio, utility, ocpp,
      time, billing, state, metrics, openadr
    case vehicleDefaults = "vehicle_defaults"
    case demandIntervalMinutes = "demand_interval_minutes"
    case mqttChargers = "mqtt_chargers"
  }
}

/// Loads and checks a site configuration file.
public enum SiteConfigurationFile {
  /// Environment variables starting with this override keys: `MGE_SITE__IMPORT_LIMIT_KW=900`.
  public static let environmentPrefix = "MGE_"

  public struct Loaded: Sendable {
    public var configuration: SiteConfiguration
    /// Problems that do not stop the appliance (unknown keys), for check-config.
    public var warnings: [InputError]
    /// Variables that overrode keys, for the log.
    public var overrides: [String: String]
  }

  public static func load(path: String, environment: [String: String]) throws(InputError) -> Loaded {
    let document = try StructuredDocument.load(path: path, format: .yaml)
      .applyingEnvironment(environment, prefix: environmentPrefix)
    let image = try document.decode(ConfigurationFileImage.self)
    let interval = image.demandIntervalMinutes ?? 15
    guard interval > 0, 1440 % interval == 0 else {
      throw document.error(at: ["demand_interval_minutes"], "must divide a day, e.g. 15")
    }
    var site = try document.siteDescription(name: "site", demandIntervalSeconds: Double(interval) * 60)
    let gpio = try image.gpio?.validated(document: document)
    if let gpio { site = SiteDescription(copying: site, sheddableLoads: gpio.sheddableLoads) }
    let control = image.control ?? ControlSettings()
    if let problem = control.problems.first {
      throw document.error(at: ["control", problem.key], problem.message)
    }
    let logging = image.logging ?? SiteConfiguration.LoggingSection()
    if let level = logging.level, !["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(level)
    {
      throw document.error(
        at: ["logging", "level"], "'\(level)' is not one of trace, debug, info, notice, warning, error, critical")
    }
    if let every = logging.statusEverySeconds, !(every > 0) {
      throw document.error(at: ["logging", "status_every_seconds"], "must be above 0")
    }
    var plant = image.plant
    switch plant?.kind {
    case nil: break
    case .simulated?:
      guard let scenario = plant!.scenario else {
        throw document.error(at: ["plant", "scenario"], "missing: a simulated plant follows a scenario directory")
      }
      // Relative to the configuration file, so a checkout can be run from anywhere.
      if !scenario.hasPrefix("/") {
        let base = (path as NSString).deletingLastPathComponent
        plant!.scenario = ((base.isEmpty ? "." : base) as NSString).appendingPathComponent(scenario)
      }
      if let speed = plant!.speed, !(speed > 0) {
        throw document.error(at: ["plant", "speed"], "must be above 0 (1 is real time)")
      }
      if let start = plant!.startMinute, start < 0 {
        throw document.error(at: ["plant", "start_minute"], "must be 0 or more")
      }
    }
    let base = (path as NSString).deletingLastPathComponent
    let mqtt = try image.mqtt?.validated(document: document, siteName: site.name, base: base)
    let meters = image.meters ?? []
    try MeterSpec.validate(meters, document: document)
    if !meters.isEmpty && mqtt == nil {
      throw document.error(at: ["meters"], "meters are read over MQTT: add an mqtt: section naming the broker")
    }
    var configuration = SiteConfiguration(
      site: site, control: control, plant: plant, logging: logging, source: path)
    configuration.mqtt = mqtt
    configuration.meters = meters
    configuration.gpio = gpio
    if let utility = image.utility {
      if utility.detect != .contact {
        guard (utility.nominalVolts ?? 0) > 0 else {
          throw document.error(
            at: ["utility", "nominal_volts"], "needed to judge voltages: the meters' nominal, e.g. 277")
        }
        guard meters.contains(where: { $0.role == .utilityVoltage }) else {
          throw document.error(
            at: ["utility", "detect"],
            "'\(utility.detect.rawValue)' needs a meter with role utility_voltage under meters:")
        }
      }
      for (key, value) in [
        ("trip_voltage_pu", utility.tripVoltagePU), ("trip_hz", utility.tripHz),
        ("enter_service_voltage_pu", utility.enterServiceVoltagePU), ("enter_service_hz", utility.enterServiceHz),
      ] {
        if let r = value, !(r.count == 2 && r[0] < r[1] && r.allSatisfy { $0 > 0 }) {
          throw document.error(at: ["utility", key], "must be [low, high], both above 0")
        }
      }
      configuration.utility = utility
    }
    if gpio?.pulseMeter != nil && meters.contains(where: { $0.role == .gridImport }) {
      throw document.error(
        at: ["gpio", "pulse_meter"], "the utility meter is read twice: drop the pulse meter or the grid_import meter")
    }
    configuration.ocpp = try image.ocpp?.validated(document: document, site: site, base: base)
    configuration.mqttChargers = image.mqttChargers ?? []
    try MQTTChargerSpec.validate(configuration.mqttChargers, ocpp: configuration.ocpp, site: site, document: document)
    if !configuration.mqttChargers.isEmpty && mqtt == nil {
      throw document.error(at: ["mqtt_chargers"], "MQTT chargers need an mqtt: section naming the broker")
    }
    // Real chargers live in real time: a sped-up plant would misread their departures.
    if configuration.ocpp != nil || !configuration.mqttChargers.isEmpty, let speed = plant?.speed, speed != 1 {
      throw document.error(
        at: ["plant", "speed"], "must be 1 when chargers are on OCPP or MQTT (they run in real time)")
    }
    configuration.store = try image.store?.validated(document: document, base: base)
    configuration.central = try image.central?.validated(document: document, siteName: site.name, base: base)
    if configuration.central != nil && configuration.store == nil {
      throw document.error(at: ["central"], "uploads come from the record store: add a store: section with its path")
    }
    configuration.time = try image.time?.validated(document: document, base: base)
    configuration.billing = try (image.billing ?? BillingSection()).validated(document: document)
    configuration.state = try image.state?.validated(document: document, base: base)
    configuration.metrics = try image.metrics?.validated(document: document)
    configuration.openADR = try image.openadr?.validated(
      document: document, siteName: site.name, base: base, environment: environment)
    if configuration.openADR != nil && plant != nil {
      throw document.error(
        at: ["openadr"],
        "the VTN's events are on the wall clock: the VEN runs at the field site only (leave plant: out)")
    }
    configuration.vehicleDefaults = try (image.vehicleDefaults ?? VehicleDefaultsSection()).validated(
      document: document, site: site)
    if plant == nil {
      // The field site: the building the appliance is wired to.
      guard configuration.time != nil else {
        throw document.error(
          at: ["time", "zone"],
          "missing: the appliance runs the building it is wired to (no plant:), on the site's clock; name its time zone, e.g. time: {zone: America/New_York}"
        )
      }
    }
    // Staff's instructions survive a restart wherever the appliance keeps anything: beside
    // the records' database by default. A simulated plant with neither keeps them in
    // memory only (and says so), so example configurations run side by side in tests.
    if configuration.state == nil {
      let folder = configuration.store.map { ($0.path as NSString).deletingLastPathComponent }
      if let folder {
        configuration.state = StateSection(path: (folder as NSString).appendingPathComponent("state.db"))
      } else if plant == nil {
        configuration.state = StateSection(path: StateSection.defaultPath)
      }
    }
    return Loaded(
      configuration: configuration, warnings: document.unknownKeys(comparedWith: image),
      overrides: document.overrides)
  }
}
