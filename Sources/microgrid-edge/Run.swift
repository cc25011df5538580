import Appliance
import Chargers
import ArgumentParser
import CentralUpload
import Control
import Foundation
import GPIO
import Logging
import ServiceLifecycle
import SimulatedSite
import SiteModel
import Simulation
import Store
import VEN

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
      for problem in ocpp.passwordProblems() { logger.warning("configuration: \(problem)") }
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
    // Before the daemon's threads start: a small, steady heap (docs/metrics.md, "Memory").
    MallocTuning.apply()
    var loaded: SiteConfigurationFile.Loaded!
    var simulated: (scenario: Scenario, start: Int)?
    var stopSeconds: Double?
    try exitOnInputError {
      loaded = try SiteConfigurationFile.load(path: config, environment: ProcessInfo.processInfo.environment)
      if let plant = loaded.configuration.plant {
        let scenario = try loaded.configuration.simulatedScenario()
        let start = startMinute ?? plant.startMinute ?? 0
        guard start >= 0, start < scenario.durationMinutes else {
          throw InputError(
            source: "--start-minute",
            message: "\(start) is outside the scenario's 0..<\(scenario.durationMinutes) minutes")
        }
        simulated = (scenario, start)
      } else {
        if startMinute != nil {
          throw InputError(source: "--start-minute", message: "only a simulated plant has a scenario to start in")
        }
        if let speed, speed != 1 {
          throw InputError(source: "--speed", message: "the field site runs in real time (1), not \(speed)")
        }
      }
      if let stopAfter {
        guard let seconds = parseDuration(stopAfter) else {
          throw InputError(source: "--stop-after", message: "'\(stopAfter)' is not a duration like 90s, 30m or 6h")
        }
        stopSeconds = seconds
      }
      if let speed, !(speed > 0) { throw InputError(source: "--speed", message: "must be above 0") }
    }
    let configuration = loaded.configuration
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
    loop.speed = speed ?? configuration.plant?.speed ?? 1
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
    // The appliance's own state: staff's instructions and events across restarts, and at
    // the field site the period's peak, the interval in progress and the histories too
    // (a simulated plant's are its scenario's).
    var state: SiteState?
    if let section = configuration.state {
      do {
        state = try SiteState(path: section.path, logger: logger)
      } catch {
        // Without it the appliance still runs, from memory, and says so.
        logger.error("state store \(section.path) cannot be opened (\(error)); state is kept in memory only")
      }
    }
    let status = SiteStatus(
      site: configuration.site, meters: meters,
      enterServiceDelaySeconds: configuration.control.enterServiceDelaySeconds, recorder: recording?.recorder,
      state: state, logger: logger)
    if configuration.state == nil {
      logger.warning("no state: section; staff's instructions are kept in memory only, and a restart drops them")
    } else if state == nil {
      status.setAlarm(
        "state-store", .critical,
        "the state store \(configuration.state!.path) cannot be opened; nothing survives a restart",
        active: true)
    }
    // Chargers with drivers of their own: OCPP charge points and MQTT gateways. A
    // simulated plant leaves them alone and counts what they measure.
    let chargers = Self.chargerDrivers(configuration: configuration, logger: logger)
    let fleet =
      chargers.all.isEmpty
      ? nil
      : ChargerFleet(
        drivers: chargers.all, status: status, site: configuration.site,
        vehicleDefaults: simulated == nil ? configuration.vehicleDefaults : nil,
        timeZone: configuration.time?.siteTimeZone)
    if fleet != nil && loop.speed != 1 {
      try exitOnInputError {
        throw InputError(
          source: "--speed", message: "must be 1 when chargers are on OCPP or MQTT (they run in real time)")
      }
    }
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
    var wired: WiredSignals?
    if let gpio = configuration.gpio {
      let backend = gpio.makeBackend(simulatedSpeed: loop.speed)
      if simulated != nil {
        // A simulated plant drives simulated pins.
        if let pins = backend as? SimulatedGPIO { wiring.append(SimulatedWiring(gpio: pins, section: gpio)) }
        do {
          field = try FieldIO(
            section: gpio, backend: backend, site: configuration.site, trigger: trigger, status: status,
            logger: logger)
        } catch {
          try exitOnInputError { throw InputError(source: config, field: error.key, message: "\(error.error)") }
        }
        wiring.append(field!)
        field!.start()
      } else {
        // The building's pins: a chip that is not there yet holds the safe state and is
        // tried again, it does not stop the appliance.
        let site = configuration.site
        let signals = WiredSignals(status: status, logger: logger) { () throws(FieldError) -> FieldIO in
          try FieldIO(section: gpio, backend: backend, site: site, trigger: trigger, status: status, logger: logger)
        }
        wired = signals
        wiring.append(signals)
      }
      Self.logOutageTimings(configuration, gpio: gpio, logger: logger)
    }
    // The utility's voltage and frequency, when they decide (or help decide) its presence.
    if let utility = configuration.utility, utility.detect != .contact, let meters {
      wiring.append(UtilitySense(section: utility, meters: meters))
    }
    // The chargers' own state first: the meters work out the building from it.
    let drivers: [any SnapshotOverlay] = (fleet.map { [$0] } ?? []) + (meters.map { [$0] } ?? []) + wiring
    let site: any SiteIO
    let overlays: [any SnapshotOverlay]
    var simulatedSite: SimulatedSiteIO?
    if let (scenario, firstMinute) = simulated {
      var metered: SimulatedSiteIO.MeteredBuilding?
      if let meters { metered = { chargers in meters.building(chargers: chargers).kW } }
      var external: SimulatedSiteIO.ExternalChargers?
      if let fleet { external = .init(indices: fleet.indices, measuredKW: { fleet.measuredKW }) }
      let io = SimulatedSiteIO(
        scenario: scenario, startMinute: firstMinute, meteredBuilding: metered, externalChargers: external)
      simulatedSite = io
      site = io
      overlays = drivers + [status]
    } else {
      let time = configuration.time!
      var fieldConfiguration = FieldSite.Configuration(
        timeZone: time.siteTimeZone,
        demandMeter: .init(
          intervalSeconds: configuration.site.demandIntervalSeconds,
          billingCycleDay: configuration.billing.cycleStartDay))
      fieldConfiguration.saveEverySeconds = 5
      var pulse: (@Sendable () -> Double?)?
      if let wired { pulse = { wired.pulseMeterKW() } }
      var chargersKW: (@Sendable () -> Double)?
      if let fleet { chargersKW = { fleet.measuredKW } }
      let source = GridImportSource(meters: meters, pulseMeterKW: pulse, chargersKW: chargersKW)
      let fieldSite = FieldSite(
        site: configuration.site, configuration: fieldConfiguration,
        clock: SystemClock(synchronization: time.synchronization), drivers: drivers,
        gridImport: { source.reading($0) }, state: state, status: status, logger: logger)
      status.connectPeriodPeak { kW in fieldSite.setPeriodPeak(kW: kW) }
      site = fieldSite
      // Staff's instructions last: they may hold what the drivers report.
      overlays = [status]
      let order = GridImportSource.order(
        meters: configuration.meters, pulseMeter: configuration.gpio?.pulseMeter != nil)
      if order.isEmpty {
        logger.warning("no meter is configured: the appliance cannot see the building's demand; safe state")
      } else {
        logger.info("grid import from \(order.joined(separator: ", then "))")
      }
    }
    // The utility's demand-response events over OpenADR 2.0b: the VEN, and its link into
    // the appliance (events into the controller's list, telemetry out for the reports).
    let openADR = configuration.openADR.map { section in
      Self.openADR(
        section, status: status, state: state, recorder: recording?.recorder, site: configuration.site,
        logger: logger)
    }
    // Gives back start-up's file pages after the first step, and again a minute in.
    let startupPages = StartupPagesRelease(logger: logger)
    // The billing period's figures for panels, reckoned as `report` reckons them.
    let periodFigures = PeriodFigures(
      site: configuration.site, billingCycleDay: configuration.billing.cycleStartDay, state: state,
      publish: { [status] in status.updatePeriodFigures($0) })
    var observers: [any StepObserver] = [status, periodFigures]
    if let panel { observers.append(panel) }
    if let recording { observers.append(recording.recorder) }
    if let openADR { observers.append(openADR.link) }
    observers.append(startupPages)
    // systemd's supervision (Type=notify, WatchdogSec=): the loop itself says it is alive.
    let supervisor = Self.supervisor(status: status, logger: logger)
    // The Prometheus endpoint reads the same status the panel publishes.
    let metrics = configuration.metrics.map { _ in
      Self.metrics(configuration: configuration, chargers: chargers.all, panel: panel, status: status)
    }
    loop.hangAfterSteps = ProcessInfo.processInfo.environment["MICROGRID_EDGE_TEST_HANG_LOOP_AFTER_STEPS"].flatMap {
      Int($0)
    }
    let service = ControlLoopService(
      controller: Controller(site: configuration.site, settings: configuration.control), io: site,
      configuration: loop, logger: logger, overlays: overlays, observers: observers,
      actuators: (field.map { [$0] } ?? []) + (wired.map { [$0] } ?? []) + (fleet.map { [$0] } ?? []), trigger: trigger,
      status: status,
      memory: simulated == nil ? state : nil, heartbeat: supervisor, stepTimer: metrics?.stepTimer())
    logger.info(
      "microgrid-edge \(MicrogridEdge.configuration.version) starting",
      metadata: [
        "site": "\(configuration.site.name)", "config": "\(config)",
        "plant": "\(configuration.plant?.kind.rawValue ?? "none: the field site")",
        "time_zone": "\(configuration.time?.zone ?? "scenario")",
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
    if let openADR { services.append(.init(service: openADR.ven)) }
    if let metrics, let section = configuration.metrics {
      services.append(
        .init(
          service: MetricsEndpoint(
            configuration: section.endpointConfiguration, metrics: metrics, status: status, logger: logger)))
    }
    // The code only start-up needed leaves RSS.
    services.append(.init(service: startupPages, successTerminationBehavior: .ignore))
    // Last, so that the group tells it of SIGTERM first.
    if let supervisor { services.append(.init(service: StopNotice(supervisor))) }
    let group = ServiceGroup(
      configuration: ServiceGroupConfiguration(
        services: services,
        gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    try await group.run()
    field?.stop()
    wired?.stop()
    recording?.outbox.store?.close()
    let steps = await service.steps
    guard let simulatedSite else {
      logger.info("stopped", metadata: ["steps": "\(steps)"])
      return
    }
    let violations = await simulatedSite.violations
    if violations.isEmpty {
      logger.info("stopped; the simulated site saw no safety violation", metadata: ["steps": "\(steps)"])
    } else {
      logger.critical("the simulated site saw safety violations", metadata: ["violations": "\(violations)"])
      throw ExitCode(1)
    }
  }

  static func metrics(
    configuration: SiteConfiguration, chargers: [(index: Int, charger: any Charger)], panel: PanelService?,
    status: SiteStatus
  ) -> ApplianceMetrics {
    var connections = ApplianceMetrics.Connections()
    for entry in chargers {
      guard let driver = entry.charger as? OCPPCharger else { continue }
      let connected: @Sendable () -> Bool = { driver.isConnected }
      connections.ocpp.append((driver.id, connected))
    }
    if let client = panel?.mqttClient {
      connections.mqtt = { client.isConnected }
    }
    let inputErrors: @Sendable () -> Int = { panel?.inputErrors ?? 0 }
    return ApplianceMetrics(
      site: configuration.site, version: MicrogridEdge.configuration.version, connections: connections,
      view: { status.view }, inputErrors: inputErrors)
  }

  /// The VEN and its link.
  static func openADR(
    _ section: OpenADRSection, status: SiteStatus, state: SiteState?, recorder: Recorder?, site: SiteDescription,
    logger: Logger
  ) -> (ven: VEN, link: OpenADRLink) {
    // TLS files not in place yet are read again at each attempt: the VEN says why it
    // cannot reach the VTN until they are.
    for problem in section.fileProblems() { logger.warning("configuration: \(problem)") }
    let transport = HTTPVTNTransport(section.transportConfiguration)
    let link = OpenADRLink(status: status, state: state, recorder: recorder, site: site, logger: logger)
    let ven = VEN(
      configuration: section.venConfiguration, transport: transport, host: link, restored: link.restored,
      wake: StepTrigger(), logger: logger)
    link.attach(ven)
    logger.info(
      "OpenADR VEN",
      metadata: [
        "vtn": "\(section.vtnURL)", "ven_name": "\(section.venName ?? "-")", "poll_s": "\(section.pollSeconds)",
      ])
    return (ven, link)
  }

  /// The watchdog and status for systemd, when it started the appliance (NOTIFY_SOCKET).
  static func supervisor(status: SiteStatus, logger: Logger) -> SystemdSupervisor? {
    let notifier = SystemdNotifier()
    if let problem = notifier.problem { logger.warning("systemd: \(problem)") }
    guard notifier.isActive else { return nil }
    let supervisor = SystemdSupervisor(notifier: notifier) { status.supervisionStatus }
    logger.info(
      "systemd supervision: READY after the first control step, watchdog pings from the control loop",
      metadata: [
        "watchdog_s": "\(notifier.watchdogInterval.map(seconds) ?? "off")",
        "ping_every_s": "\(supervisor.pingEvery.map(seconds) ?? "-")",
      ])
    return supervisor
  }

  static func logOutageTimings(_ configuration: SiteConfiguration, gpio: GPIOSection, logger: Logger) {
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
    recorderConfiguration.timeZone = configuration.time?.zone ?? "Etc/UTC"
    recorderConfiguration.billingCycleDay = configuration.billing.cycleStartDay
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

/// A duration as seconds, for the log.
func seconds(_ d: Duration) -> String {
  "\(Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)"
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
