import Foundation
import Metrics
import Prometheus
import SiteModel
import Synchronization

/// The appliance's Prometheus metrics (docs/metrics.md), in one registry. Base units by
/// Prometheus convention: watts, joules, seconds; `_total` for counters; one gauge per
/// state with a label (`microgrid_edge_mode{mode="islanded"} 1`).
///
/// Everything but the step histogram is set from the same `SiteStatus.View` the panel
/// publishes, when /metrics is scraped: the two never disagree, and nothing is done for
/// metrics between scrapes. The control loop times its steps through swift-metrics
/// (`stepTimer`), which records into this registry.
public final class ApplianceMetrics: Sendable {
  /// How a connection is doing, read at each scrape.
  public struct Connections: Sendable {
    /// The building's MQTT broker (nil: no MQTT).
    public var mqtt: (@Sendable () -> Bool)?
    /// Each OCPP charge point, by charger id.
    public var ocpp: [(id: String, connected: @Sendable () -> Bool)] = []
    public init(mqtt: (@Sendable () -> Bool)? = nil, ocpp: [(id: String, connected: @Sendable () -> Bool)] = []) {
      self.mqtt = mqtt
      self.ocpp = ocpp
    }
  }

  public let registry = PrometheusCollectorRegistry()
  private let site: SiteDescription
  private let connections: Connections
  private let view: @Sendable () -> SiteStatus.View
  private let inputErrors: @Sendable () -> Int

  private let gridImport: Prometheus.Gauge
  private let buildingLoad: Prometheus.Gauge
  private let intervalMean: Prometheus.Gauge
  private let periodPeak: Prometheus.Gauge
  private let demandTarget: Prometheus.Gauge
  private let modes: [(OperatingMode, Prometheus.Gauge)]
  private let setpoints: [Prometheus.Gauge]
  private let chargerPower: [Prometheus.Gauge]
  private let chargerOnline: [Prometheus.Gauge]
  private let alarmsBySeverity: [(Alarm.Severity, Prometheus.Gauge)]
  private let backlog: Prometheus.Gauge
  private let oldestAge: Prometheus.Gauge
  private let mqttConnected: Prometheus.Gauge?
  private let ocppConnected: [(connected: @Sendable () -> Bool, gauge: Prometheus.Gauge)]
  private let mqttInputErrors: Prometheus.Counter
  private let stepsTotal: Prometheus.Counter
  /// Series whose labels come and go: a vehicle's energy (by charger and vehicle), an
  /// alarm (by id). Removed from the registry when the vehicle leaves or the alarm is no
  /// longer listed, so that a scrape never shows a bus that went home.
  private let changing = Mutex<Changing>(Changing())
  struct Changing {
    var vehicles: [String: (vehicle: String, energy: Prometheus.Gauge, need: Prometheus.Gauge)] = [:]
    var alarms: [String: (severity: Alarm.Severity, gauge: Prometheus.Gauge)] = [:]
    var inputErrorsSeen = 0
    var stepsSeen = 0
  }

  public static let stepDurationName = "microgrid_edge_control_step_duration_seconds"
  /// Step durations, from 1 ms (a plain step) to 1 s (the control period: a step that
  /// long is a loop that falls behind).
  public static let stepDurationBuckets: [Duration] = [
    .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
    .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
  ]

  public init(
    site: SiteDescription, version: String, connections: Connections = Connections(),
    view: @escaping @Sendable () -> SiteStatus.View, inputErrors: @escaping @Sendable () -> Int = { 0 }
  ) {
    self.site = site
    self.connections = connections
    self.view = view
    self.inputErrors = inputErrors
    let r = registry
    r.makeGauge(
      descriptor: Self.named("microgrid_edge_build_info", "Always 1: the running version and site."),
      labels: [("version", version), ("site", site.name)]
    ).set(1.0)
    gridImport = r.makeGauge(
      descriptor: Self.named(
        "microgrid_edge_grid_import_watts",
        "Power from the utility at the site's meter, W; negative is export. NaN: no source could measure it."))
    buildingLoad = r.makeGauge(
      descriptor: Self.named("microgrid_edge_building_load_watts", "The building's own load without the chargers, W."))
    intervalMean = r.makeGauge(
      descriptor: Self.named(
        "microgrid_edge_demand_interval_mean_import_watts",
        "Mean grid import over the demand interval so far (what the utility will bill if it ends now), W."))
    periodPeak = r.makeGauge(
      descriptor: Self.named(
        "microgrid_edge_billing_period_peak_watts", "The billing period's highest demand interval so far, W."))
    demandTarget = r.makeGauge(
      descriptor: Self.named(
        "microgrid_edge_demand_target_watts", "The demand target in force, W. NaN: none applies (off the grid)."))
    modes = OperatingMode.allCases.map { mode in
      (
        mode,
        r.makeGauge(
          descriptor: Self.named(
            "microgrid_edge_mode", "1 for the controller's current operating mode, 0 for the others."),
          labels: [("mode", mode.rawValue)])
      )
    }
    setpoints = site.chargers.map { c in
      r.makeGauge(
        descriptor: Self.named(
          "microgrid_edge_charger_setpoint_watts",
          "The setpoint the charger was given, W; positive charges the vehicle, negative discharges it."),
        labels: [("charger", c.id)])
    }
    chargerPower = site.chargers.map { c in
      r.makeGauge(
        descriptor: Self.named(
          "microgrid_edge_charger_power_watts",
          "The charger's measured power at the building side, W; positive charges."), labels: [("charger", c.id)])
    }
    chargerOnline = site.chargers.map { c in
      r.makeGauge(
        descriptor: Self.named("microgrid_edge_charger_online", "1 when the charger answers and follows setpoints."),
        labels: [("charger", c.id)])
    }
    alarmsBySeverity = [Alarm.Severity.warning, .critical].map { severity in
      (
        severity,
        r.makeGauge(
          descriptor: Self.named("microgrid_edge_alarms_active", "Alarms active now, by severity."),
          labels: [("severity", severity.rawValue)])
      )
    }
    backlog = r.makeGauge(
      descriptor: Self.named(
        "microgrid_edge_upload_backlog_records",
        "Records the central program does not have yet (in the store and in memory)."))
    oldestAge = r.makeGauge(
      descriptor: Self.named(
        "microgrid_edge_upload_oldest_record_age_seconds",
        "Age of the oldest record not yet uploaded, s; 0 when none waits."))
    mqttConnected =
      connections.mqtt == nil
      ? nil
      : r.makeGauge(
        descriptor: Self.named("microgrid_edge_mqtt_connected", "1 while connected to the building's MQTT broker."))
    ocppConnected = connections.ocpp.map { c in
      (
        c.connected,
        r.makeGauge(
          descriptor: Self.named(
            "microgrid_edge_ocpp_connected", "1 while the charge point is connected to the appliance's OCPP endpoint."),
          labels: [("charger", c.id)])
      )
    }
    mqttInputErrors = r.makeCounter(
      descriptor: Self.named(
        "microgrid_edge_mqtt_input_errors_total",
        "MQTT payloads refused: bad readings, invalid commands, unused topics."))
    stepsTotal = r.makeCounter(
      descriptor: Self.named("microgrid_edge_control_steps_total", "Control steps that went through since start."))
  }

  /// A metric's name and help (the names carry their units already, by convention).
  static func named(_ name: String, _ help: String) -> MetricNameDescriptor {
    MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
  }

  /// The swift-metrics factory that records into this registry.
  public var factory: PrometheusMetricsFactory {
    var f = PrometheusMetricsFactory(registry: registry)
    f.durationHistogramBuckets[Self.stepDurationName] = Self.stepDurationBuckets
    return f
  }

  /// The control loop's step timer (a histogram in seconds).
  public func stepTimer() -> Metrics.Timer {
    Metrics.Timer(label: Self.stepDurationName, dimensions: [], preferredDisplayUnit: .seconds, factory: factory)
  }

  /// The text format for a scrape: every gauge set from the status now.
  public func exposition(now: Date = Date()) -> [UInt8] {
    refresh(view(), now: now)
    return registry.emitToBuffer()
  }

  func refresh(_ view: SiteStatus.View, now: Date) {
    if let last = view.last {
      let s = last.snapshot
      let d = last.decisions
      gridImport.set(watts(PanelJSON.gridImport(last)))
      buildingLoad.set(watts(s.buildingDemandKW))
      let elapsed = s.meter.intervalElapsedSeconds
      intervalMean.set(elapsed > 0 ? s.meter.intervalImportKWh / (elapsed / 3600) * 1000 : Double.nan)
      periodPeak.set(watts(s.meter.monthPeakKW))
      demandTarget.set(watts(PanelJSON.demandTarget(d)))
      for (mode, gauge) in modes { gauge.set(mode == d.mode ? 1.0 : 0.0) }
      for i in site.chargers.indices {
        setpoints[i].set(watts(i < d.setpointsKW.count ? d.setpointsKW[i] : 0))
        chargerPower[i].set(watts(i < last.applied.chargerKW.count ? last.applied.chargerKW[i] : 0))
        chargerOnline[i].set(i < s.chargers.count && s.chargers[i].online ? 1.0 : 0.0)
      }
      refreshVehicles(s)
      let steps = last.sequence
      changing.withLock { c in
        if steps > c.stepsSeen { stepsTotal.increment(by: Int64(steps - c.stepsSeen)) }
        c.stepsSeen = max(c.stepsSeen, steps)
      }
    }
    for (severity, gauge) in alarmsBySeverity {
      gauge.set(Double(view.alarms.filter { $0.active && $0.severity == severity }.count))
    }
    refreshAlarms(view.alarms)
    if let records = view.records {
      let counters = records.store.counters
      backlog.set(Double((counters?.backlog ?? 0) + Int64(records.store.pending)))
      let oldest = counters?.oldestUnuploadedMS.map { now.timeIntervalSince1970 - Double($0) / 1000 }
      oldestAge.set(max(0, oldest ?? 0))
    }
    if let mqtt = connections.mqtt { mqttConnected?.set(mqtt() ? 1.0 : 0.0) }
    for c in ocppConnected { c.gauge.set(c.connected() ? 1.0 : 0.0) }
    let errors = inputErrors()
    changing.withLock { c in
      if errors > c.inputErrorsSeen { mqttInputErrors.increment(by: Int64(errors - c.inputErrorsSeen)) }
      c.inputErrorsSeen = max(c.inputErrorsSeen, errors)
    }
  }

  private func refreshVehicles(_ s: Snapshot) {
    changing.withLock { c in
      for (i, charger) in site.chargers.enumerated() {
        let vehicle = i < s.chargers.count ? s.chargers[i].vehicle : nil
        if let old = c.vehicles[charger.id], old.vehicle != vehicle?.vehicleID {
          registry.unregisterGauge(old.energy)
          registry.unregisterGauge(old.need)
          c.vehicles[charger.id] = nil
        }
        guard let vehicle else { continue }
        let entry =
          c.vehicles[charger.id]
          ?? {
            let labels = [("charger", charger.id), ("vehicle", vehicle.vehicleID)]
            let made = (
              vehicle: vehicle.vehicleID,
              energy: registry.makeGauge(
                descriptor: Self.named(
                  "microgrid_edge_vehicle_energy_joules",
                  "Energy in the plugged-in vehicle's battery, J (3.6e6 J = 1 kWh)."), labels: labels),
              need: registry.makeGauge(
                descriptor: Self.named(
                  "microgrid_edge_vehicle_departure_need_joules", "Energy the vehicle must have at its departure, J."),
                labels: labels)
            )
            c.vehicles[charger.id] = made
            return made
          }()
        entry.energy.set(vehicle.energyKWh * 3.6e6)
        entry.need.set(vehicle.departureNeedKWh * 3.6e6)
      }
    }
  }

  private func refreshAlarms(_ alarms: [Alarm]) {
    changing.withLock { c in
      let listed = Dictionary(alarms.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
      for (id, entry) in c.alarms where listed[id]?.severity != entry.severity {
        registry.unregisterGauge(entry.gauge)
        c.alarms[id] = nil
      }
      for alarm in alarms {
        let entry =
          c.alarms[alarm.id]
          ?? {
            let made = (
              severity: alarm.severity,
              gauge: registry.makeGauge(
                descriptor: Self.named(
                  "microgrid_edge_alarm",
                  "A listed alarm: 1 while active, 0 once cleared until someone acknowledges it."),
                labels: [("alarm", alarm.id), ("severity", alarm.severity.rawValue)])
            )
            c.alarms[alarm.id] = made
            return made
          }()
        entry.gauge.set(alarm.active ? 1.0 : 0.0)
      }
    }
  }

  private func watts(_ kW: Double?) -> Double {
    guard let kW, kW.isFinite else { return .nan }
    return kW * 1000
  }
}
