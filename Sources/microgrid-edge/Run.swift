import Appliance
import Chargers
import ArgumentParser
import CentralUpload
import Control
import Foundation
import GPIO
import Logging
import ServiceLifecycle
import SiteModel
import Simulation
import Store

struct Run: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run the appliance: the 1 Hz control loop against the configured site.",
    discussion: """
      Stops cleanly on SIGTERM or SIGINT at the end of a control step.
      Keys of the configuration can be overridden by environment variables:
      MGE_SITE__IMPORT_LIMIT_KW=900, MGE_PLANT__SPEED=60, MGE_CHARGERS__0__MAX_CHARGE_KW=50.
      """)

  @Option(help: "The site configuration file (YAML).")
  var config: String

  @Option(help: "Time acceleration: site seconds per real second (overrides plant.speed).")
  var speed: Double?

  @Option(help: "Where a simulated plant starts in its scenario, minutes (overrides plant.start_minute).")
  var startMinute: Int?

  @Option(help: "Stop after this much site time, e.g. 90s, 30m, 6h (default: run until stopped).")
  var stopAfter: String?

  /// The drivers of the chargers that are not the plant's: OCPP (with the endpoint they
  /// connect to, and the upstream platform's links) and MQTT gateways.
  static func chargerDrivers(configuration: SiteConfiguration, logger: Logger) -> (
    all: [(index: Int, charger: any Charger)], mqtt: [MQTTCharger], endpoint: OCPPEndpoint?
  ) {
    let site = configuration.site
    var all: [(index: Int, charger: any Charger)] = []
    var endpoint: OCPPEndpoint?
    if let ocpp = configuration.ocpp {
      var drivers: [OCPPCharger] = []
      for c in ocpp.chargers {
        guard let i = site.chargerIndex(id: c.id) else { continue }
        let driver = OCPPCharger(
          id: c.id, configuration: ocpp.sessionConfiguration(for: site.chargers[i]), logger: logger)
        drivers.append(driver)
        all.append((i, driver))
      }
      let upstream = ocpp.upstreamConfiguration.map { UpstreamLinks(configuration: $0, logger: logger) }
      endpoint = OCPPEndpoint(
        configuration: ocpp.endpointConfiguration, chargers: drivers, upstream: upstream, logger: logger,
        onListening: { port in logger.info("OCPP endpoint ready", metadata: ["port": "\(port)"]) })
    }
    var mqtt: [MQTTCharger] = []
    for spec in configuration.mqttChargers {
      guard let i = site.chargerIndex(id: spec.id) else { continue }
      let c = site.chargers[i]
      let driver = MQTTCharger(
        id: spec.id, topic: spec.topic, ratedChargeKW: c.maxChargeKW, ratedDischargeKW: c.maxDischargeKW,
        staleAfterSeconds: spec.staleAfterSeconds ?? 10)
      mqtt.append(driver)
      all.append((i, driver))
    }
    return (all, mqtt, endpoint)
  }

  func run() async throws {
    StartupSignals.install()
    var loaded: SiteConfigurationFile.Loaded!
    var simulated: (scenario: Scenario, start: Int)!
    var stopSeconds: Double?
    try exitOnInputError {
      loaded = try SiteConfigurationFile.load(path: config, environment: ProcessInfo.processInfo.environment)
      let scenario = try loaded.configuration.simulatedScenario()
      let start = startMinute ?? loaded.configuration.plant.startMinute ?? 0
      guard start >= 0, start < scenario.durationMinutes else {
        throw InputError(
          source: "--start-minute",
          message: "\(start) is outside the scenario's 0..<\(scenario.durationMinutes) minutes")
      }
      simulated = (scenario, start)
      if let stopAfter {
        guard let seconds = parseDuration(stopAfter) else {
          throw InputError(source: "--stop-after", message: "'\(stopAfter)' is not a duration like 90s, 30m or 6h")
        }
        stopSeconds = seconds
      }
      if let speed, !(speed > 0) { throw InputError(source: "--speed", message: "must be above 0") }
    }
    let configuration = loaded.configuration
    let (scenario, firstMinute) = simulated!
    let level = Logger.Level(rawValue: configuration.logging.level ?? "info") ?? .info
    LoggingSystem.bootstrap { label in
      var handler = StreamLogHandler.standardOutput(label: label)
      handler.logLevel = level
      return handler
    }
    let logger = Logger(label: "microgrid-edge")
    for warning in loaded.warnings { logger.warning("configuration: \(warning)") }
    for (key, variable) in loaded.overrides.sorted(by: { $0.key < $1.key }) {
      logger.info("configuration key \(key) set by \(variable)")
    }

    var loop = ControlLoopService.Configuration()
    loop.speed = speed ?? configuration.plant.speed ?? 1
    loop.stopAfterSeconds = stopSeconds
    loop.statusEverySeconds = configuration.logging.statusEverySeconds ?? 900

    // Meters (over MQTT) feed the loop and wake it; staff's instructions and the alarms
    // live in the site status; the panel service is the appliance on the broker.
    let trigger = configuration.meters.isEmpty && configuration.gpio == nil ? nil : StepTrigger()
    let meters = configuration.meters.isEmpty ? nil : MeterInputs(meters: configuration.meters, trigger: trigger)
    // Records: the outbox in SQLite and the upload to the central program.
    let recording = configuration.store.map { store in
      Self.recording(store: store, configuration: configuration, speed: loop.speed, logger: logger)
    }
    let status = SiteStatus(
      site: configuration.site, meters: meters,
      enterServiceDelaySeconds: configuration.control.enterServiceDelaySeconds, recorder: recording?.recorder,
      logger: logger)
    // Chargers with drivers of their own: OCPP charge points and MQTT gateways. The
    // simulated plant leaves them alone and counts what they measure.
    let chargers = Self.chargerDrivers(configuration: configuration, logger: logger)
    let fleet = chargers.all.isEmpty ? nil : ChargerFleet(drivers: chargers.all, status: status)
    if fleet != nil && loop.speed != 1 {
      try exitOnInputError {
        throw InputError(
          source: "--speed", message: "must be 1 when chargers are on OCPP or MQTT (they run in real time)")
      }
    }
    let scenarioSite = SimulatedSiteIO(
      scenario: scenario, startMinute: firstMinute, meteredBuilding: meters,
      externalChargers: fleet.map { fleet in .init(indices: fleet.indices, measuredKW: { fleet.measuredKW }) })
    var panel: PanelService?
    if let mqtt = configuration.mqtt {
      do {
        panel = try PanelService(
          section: mqtt, site: configuration.site, status: status, meters: meters,
          version: MicrogridEdge.configuration.version, chargers: chargers.mqtt, logger: logger)
      } catch {
        try exitOnInputError { throw InputError(source: config, field: "mqtt", message: "\(error)") }
      }
    }
    // Wired signals: the transfer switch, the emergency stop, the pulse meter, the relays.
    var wiring: [any SnapshotOverlay] = []
    var field: FieldIO?
    if let gpio = configuration.gpio {
      let backend = gpio.makeBackend(simulatedSpeed: loop.speed)
      if let simulated = backend as? SimulatedGPIO {
        wiring.append(SimulatedWiring(gpio: simulated, section: gpio))
      }
      do {
        field = try FieldIO(
          section: gpio, backend: backend, site: configuration.site, trigger: trigger, status: status, logger: logger)
      } catch {
        try exitOnInputError { throw InputError(source: config, field: error.key, message: "\(error.error)") }
      }
      wiring.append(field!)
      field!.start()
      let c = configuration.control
      logger.info(
        "outage sequence timings",
        metadata: [
          "utility_debounce_ms":
            "\(gpio.inputs.utilityAvailable?.debounceMs ?? FieldIO.defaultDebounceMs(.utilityAvailable))",
          "transfer_confirm_s": "\(c.transferConfirmSeconds)", "transfer_retry_s": "\(c.transferRetrySeconds)",
          "load_restore_step_s": "\(c.loadRestoreStepSeconds)", "load_restore_hours": "\(c.loadRestoreHours)",
          "enter_service_delay_s": "\(c.enterServiceDelaySeconds)",
          "enter_service_ramp_s": "\(c.enterServiceRampSeconds)",
          "shed_groups": "\(configuration.site.sheddableLoads.map(\.id))",
        ])
    }
    // The utility's voltage and frequency, when they decide (or help decide) its presence.
    if let utility = configuration.utility, utility.detect != .contact, let meters {
      wiring.append(UtilitySense(section: utility, meters: meters))
    }
    // The chargers' own state first: the meters work out the building from it.
    let overlays: [any SnapshotOverlay] =
      (fleet.map { [$0] } ?? []) + (meters.map { [$0] } ?? []) + wiring + [status]
    let observers: [any StepObserver] =
      [status] + (panel.map { [$0] } ?? []) + (recording.map { [$0.recorder] } ?? [])
    let service = ControlLoopService(
      controller: Controller(site: configuration.site, settings: configuration.control), io: scenarioSite,
      configuration: loop, logger: logger, overlays: overlays, observers: observers,
      actuators: (field.map { [$0] } ?? []) + (fleet.map { [$0] } ?? []), trigger: trigger, status: status)
    logger.info(
      "microgrid-edge \(MicrogridEdge.configuration.version) starting",
      metadata: [
        "site": "\(configuration.site.name)", "config": "\(config)", "plant": "\(configuration.plant.kind.rawValue)",
      ])
    if configuration.store == nil {
      logger.warning("no store: section; the appliance keeps no records for the central program")
    }
    let recordingService = recording.map { r in
      RecordingService(
        outbox: r.outbox, recorder: r.recorder, uploader: r.uploader, status: status,
        configuration: r.service, version: MicrogridEdge.configuration.version, logger: logger)
    }
    // A group stops its services in reverse order, each after the one before has ended:
    // the panel, the control loop, the recording service (after the loop's last step, it
    // writes the stop event), and last the uploader (which sends what it can of them).
    var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
    if let uploader = recording?.uploader { services.append(.init(service: uploader)) }
    if let recordingService { services.append(.init(service: recordingService)) }
    if let endpoint = chargers.endpoint { services.append(.init(service: endpoint)) }
    services.append(.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup))
    if let panel { services.append(.init(service: panel)) }
    let group = ServiceGroup(
      configuration: ServiceGroupConfiguration(
        services: services,
        gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    try await group.run()
    field?.stop()
    recording?.outbox.store?.close()
    let violations = await scenarioSite.violations
    let steps = await service.steps
    if violations.isEmpty {
      logger.info("stopped; the simulated site saw no safety violation", metadata: ["steps": "\(steps)"])
    } else {
      logger.critical("the simulated site saw safety violations", metadata: ["violations": "\(violations)"])
      throw ExitCode(1)
    }
  }
}

extension Run {
  struct Recording {
    var outbox: Outbox
    var recorder: Recorder
    var uploader: CentralUploader?
    var service: RecordingService.Configuration
  }

  static func recording(
    store: StoreSection, configuration: SiteConfiguration, speed: Double, logger: Logger
  ) -> Recording {
    let siteID = configuration.central?.siteID ?? MQTTSection.slug(configuration.site.name)
    let outbox = Outbox(
      Outbox.Configuration(store: store.storeConfiguration(siteID: siteID)), summarizer: TelemetrySummary(),
      logger: logger)
    var recorderConfiguration = Recorder.Configuration()
    recorderConfiguration.telemetryEverySeconds = store.telemetryEverySeconds
    recorderConfiguration.speed = speed
    let recorder = Recorder(site: configuration.site, outbox: outbox, configuration: recorderConfiguration)
    var service = RecordingService.Configuration()
    var uploader: CentralUploader?
    if let central = configuration.central {
      service.offlineAlarmSeconds = central.offlineAlarmMinutes * 60
      uploader = CentralUploader(
        configuration: central.uploaderConfiguration(), outbox: outbox,
        connect: {
          // The token is read at every request; a missing file only delays the start.
          central.readToken().map { _ in
            var client = HTTPCentralClient.Configuration(
              baseURL: central.baseURL, siteID: central.siteID ?? siteID, token: { central.readToken() })
            client.timeoutSeconds = central.timeoutSeconds
            return HTTPCentralClient(client) as any CentralClient
          }
        }, logger: logger)
    } else {
      logger.warning("no central: section; records are kept in the store but not uploaded")
    }
    return Recording(outbox: outbox, recorder: recorder, uploader: uploader, service: service)
  }
}

/// `90s`, `30m`, `6h`, `2d` or a plain number of seconds.
func parseDuration(_ text: String) -> Double? {
  let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
  if let unit = text.last, let scale = units[unit], let value = Double(text.dropLast()), value >= 0 {
    return value * scale
  }
  if let value = Double(text), value >= 0 { return value }
  return nil
}
