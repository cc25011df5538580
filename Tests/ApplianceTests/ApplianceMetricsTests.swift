import Foundation
import Logging
import SiteModel
import Testing

@testable import Appliance

/// The metrics as a scrape sees them: values from the status the panel shows, and series
/// that go away with the vehicle or the alarm they describe.
@Suite("Metrics: the Prometheus text from the site status")
struct ApplianceMetricsTests {
  let site = SiteDescription.oneBus

  func step(vehicle: String?, energyKWh: Double = 80, setpointKW: Double = 12.5, sequence: Int = 1) -> StepRecord {
    let plugged = vehicle.map {
      PluggedVehicle(
        vehicleID: $0, batteryKWh: 150, reserveKWh: 20, energyKWh: energyKWh, arrivalEnergyKWh: 60,
        departureTime: 3600, departureNeedKWh: 120)
    }
    var snapshot = Snapshot(
      time: 0, localTime: LocalTime(seconds: 0), periodSeconds: 1, buildingDemandKW: 200, utilityAvailable: true,
      chargers: [ChargerReading(vehicle: plugged, measuredKW: setpointKW)])
    snapshot.meter = DemandMeterReading(monthPeakKW: 310, intervalImportKWh: 10, intervalElapsedSeconds: 180)
    let decisions = Decisions(
      setpointsKW: [setpointKW], transferSwitch: .hold, mode: .gridConnected, demandTargetKW: 300)
    return StepRecord(
      snapshot: snapshot, proposal: decisions, decisions: decisions,
      applied: AppliedStep(gridKW: 212.5, servedKW: 200, chargerKW: [setpointKW]), wallTime: Date(),
      utilityStable: true, sequence: sequence)
  }

  func scrape(_ metrics: ApplianceMetrics) -> String { String(decoding: metrics.exposition(), as: UTF8.self) }

  @Test("figures in base units, from the same view the panel publishes")
  func values() {
    let status = SiteStatus(site: site, meters: nil, logger: Logger(label: "test"))
    status.observe(step(vehicle: "BUS-1"))
    let metrics = ApplianceMetrics(site: site, version: "9.9", view: { status.view }, inputErrors: { 4 })
    let text = scrape(metrics)
    #expect(text.contains("microgrid_edge_grid_import_watts 212500.0"), "\(text)")
    // 10 kWh in 180 s: 200 kW so far.
    #expect(text.contains("microgrid_edge_demand_interval_mean_import_watts 200000.0"))
    #expect(text.contains("microgrid_edge_billing_period_peak_watts 310000.0"))
    #expect(text.contains(#"microgrid_edge_vehicle_energy_joules{charger="C1",vehicle="BUS-1"} 288000000.0"#))
    #expect(text.contains(#"microgrid_edge_charger_setpoint_watts{charger="C1"} 12500.0"#))
    #expect(text.contains(#"microgrid_edge_mode{mode="grid-connected"} 1.0"#))
    #expect(text.contains(#"microgrid_edge_mode{mode="islanded"} 0.0"#))
    #expect(text.contains("microgrid_edge_mqtt_input_errors_total 4"))
    #expect(text.contains(#"microgrid_edge_build_info{version="9.9",site="t"} 1.0"#))
    #expect(text.contains("# HELP microgrid_edge_grid_import_watts "))
    #expect(text.contains("# TYPE microgrid_edge_control_steps_total counter"))
    // The counters count once, however often they are scraped.
    _ = scrape(metrics)
    #expect(scrape(metrics).contains("microgrid_edge_mqtt_input_errors_total 4"))
  }

  @Test("a vehicle's series goes with it, and an alarm's once it is no longer listed")
  func seriesComeAndGo() {
    let status = SiteStatus(site: site, meters: nil, logger: Logger(label: "test"))
    let metrics = ApplianceMetrics(site: site, version: "9.9", view: { status.view })
    status.observe(step(vehicle: "BUS-1"))
    status.setAlarm("store-write", .critical, "the disk is full", active: true)
    var text = scrape(metrics)
    #expect(text.contains(#"vehicle="BUS-1""#))
    #expect(text.contains(#"microgrid_edge_alarm{alarm="store-write",severity="critical"} 1.0"#))
    #expect(text.contains(#"microgrid_edge_alarms_active{severity="critical"} 1.0"#))

    status.observe(step(vehicle: "BUS-2", sequence: 2))
    status.setAlarm("store-write", .critical, "", active: false)
    text = scrape(metrics)
    #expect(!text.contains(#"vehicle="BUS-1""#), "\(text)")
    #expect(text.contains(#"microgrid_edge_vehicle_energy_joules{charger="C1",vehicle="BUS-2"}"#))
    // Cleared but not acknowledged: listed, 0.
    #expect(text.contains(#"microgrid_edge_alarm{alarm="store-write",severity="critical"} 0.0"#))
    #expect(text.contains(#"microgrid_edge_alarms_active{severity="critical"} 0.0"#))

    _ = status.execute(.acknowledgeAlarm("store-write"), by: "panel-lobby")
    status.observe(step(vehicle: nil, sequence: 3))
    text = scrape(metrics)
    #expect(!text.contains("store-write"), "\(text)")
    #expect(!text.contains("microgrid_edge_vehicle_energy_joules{"))
  }

  @Test("the step timer records into the registry as a histogram in seconds")
  func stepTimer() {
    let status = SiteStatus(site: site, meters: nil, logger: Logger(label: "test"))
    let metrics = ApplianceMetrics(site: site, version: "9.9", view: { status.view })
    let timer = metrics.stepTimer()
    timer.record(duration: .milliseconds(3))
    timer.record(duration: .milliseconds(700))
    let text = scrape(metrics)
    #expect(text.contains("# TYPE microgrid_edge_control_step_duration_seconds histogram"), "\(text)")
    #expect(text.contains(#"microgrid_edge_control_step_duration_seconds_bucket{le="0.005"} 1"#))
    #expect(text.contains(#"microgrid_edge_control_step_duration_seconds_bucket{le="1.0"} 2"#))
    #expect(text.contains("microgrid_edge_control_step_duration_seconds_count 2"))
  }
}
