import Appliance
import Control
import Foundation
import GPIO
import Logging
import SiteModel

/// A building wired to the appliance's GPIO pins, all simulated: a utility that follows a
/// recorded sequence of edges, a transfer switch that follows the command line after its
/// transfer time (or sticks), an emergency stop, and two vehicles that follow their
/// setpoints. The real `FieldIO` and `Controller` run in between, stepping as the daemon
/// does: every second, and at once when an input wakes them.
///
/// Time is the simulated GPIO's manual clock; the harness jumps from one happening to the
/// next (an edge, a debounce running out, the switch arriving, the next 1 s step).
final class FieldBench {
  static let pins = GPIOSection(
    backend: .simulated, chip: "gpiochip0",
    inputs: .init(
      utilityAvailable: .init(line: .name("GPIO17"), debounceMs: 20),
      switchAtUtility: .init(line: .name("GPIO22")), switchAtIsland: .init(line: .name("GPIO23")),
      emergencyStop: .init(line: .name("GPIO24"), activeLow: true, bias: .pullUp)),
    outputs: .init(transferToIsland: .init(line: .name("GPIO5"))),
    loadShed: [
      .init(id: "kitchen", line: .name("GPIO12"), priority: 2, kW: 15),
      .init(id: "classrooms", line: .name("GPIO13"), priority: 1, kW: 20),
      .init(id: "gym-hvac", line: .name("GPIO16"), priority: 3, kW: 30),
    ])

  static func site() -> SiteDescription {
    SiteDescription(
      name: "field bench", importLimitKW: 400, criticalLoadFraction: 0.35,
      chargers: [
        ChargerSpec(id: "C1", maxChargeKW: 60, maxDischargeKW: 60, efficiency: 0.95, gridForming: true),
        ChargerSpec(id: "C2", maxChargeKW: 60, maxDischargeKW: 60, efficiency: 0.95, gridForming: false),
      ],
      vehicles: [], sheddableLoads: pins.sheddableLoads)
  }

  static let base = LocalTime(seconds: Double(CivilDate(year: 2026, month: 7, day: 15).dayNumber) * 86_400 + 14 * 3600)
  let gpio = SimulatedGPIO.raspberryPi(manualClock: true)
  let field: FieldIO
  let trigger = StepTrigger()
  var controller: Controller
  let site: SiteDescription
  let start: UInt64

  // The physical building.
  var utility = true
  /// Seconds the utility has been there without a break (truth, not what the pins say).
  var utilitySince: Double = -1_000_000
  var position = TransferSwitchPosition.utility
  /// Where the switch is headed and when it gets there.
  var moving: (to: TransferSwitchPosition, at: Double)?
  var switchStuck = false
  var switchTransferSeconds = 0.15
  var emergencyStop = false
  var islandTest = false
  var buildingKW = 120.0
  var vehicles: [PluggedVehicle?]
  /// Scheduled changes: (time, what).
  var schedule: [(at: Double, change: Change)] = []

  enum Change {
    case utility(Bool)
    case emergencyStop(Bool)
    case switchStuck(Bool)
    /// Staff start (true) or end an island test on the panel.
    case islandTest(Bool)
    /// The utility contact drops for 6 ms while the utility stays (contact bounce).
    case contactGlitch
    /// The contact shows the utility's truth again.
    case contactSettles
  }

  /// Every step, for the assertions.
  struct Step {
    var time: Double
    var snapshot: Snapshot
    var decisions: Decisions
    var utility: Bool
    var utilityOnFor: Double
    var position: TransferSwitchPosition
    var emergencyStop: Bool
    var islandCommand: Bool
    var shedRelays: [Bool]
  }
  var steps: [Step] = []
  /// Interlock breaches seen, as text (must stay empty).
  var breaches: [String] = []
  var lastStep: Double = -1

  init(settings: ControlSettings = ControlSettings(), energies: [Double] = [140, 55]) throws {
    site = Self.site()
    let pins = Self.pins
    // The wiring at rest: utility present, switch on the utility, stop released (high).
    gpio.drive(line: "GPIO17", high: true)
    gpio.drive(line: "GPIO22", high: true)
    gpio.drive(line: "GPIO24", high: true)
    var logger = Logger(label: "field-bench")
    logger.logLevel = .critical
    field = try FieldIO(section: pins, backend: gpio, site: site, trigger: trigger, logger: logger)
    controller = Controller(site: site, settings: settings)
    start = gpio.nowNanoseconds()
    vehicles = energies.enumerated().map { i, e in
      PluggedVehicle(
        vehicleID: "V\(i)", batteryKWh: 150, reserveKWh: 20, energyKWh: e, arrivalEnergyKWh: e,
        departureTime: 3 * 86_400, departureNeedKWh: 40)
    }
  }

  var now: Double { Double(gpio.nowNanoseconds() - start) / 1e9 }

  func at(_ t: Double, _ change: Change) { schedule.append((t, change)) }

  /// Runs until `end` seconds.
  func run(until end: Double) {
    while now < end {
      let t = now
      // The next happening.
      var next = min(end, lastStep + 1)
      if let s = schedule.map(\.at).min() { next = min(next, max(t, s)) }
      if let m = moving { next = min(next, m.at) }
      if let a = field.nextAcceptance { next = min(next, Double(a - start) / 1e9) }
      if next > t { gpio.advance(nanoseconds: UInt64(((next - t) * 1e9).rounded(.up))) }
      happen()
      field.pump()
      if trigger.takePending() || now - lastStep >= 1 - 1e-9 {
        step()
        happen()  // the switch sees a new command at once
      }
    }
  }

  private func happen() {
    let t = now
    let due = schedule.filter { $0.at <= t + 1e-9 }.sorted { $0.at < $1.at }
    schedule.removeAll { $0.at <= t + 1e-9 }
    for item in due {
      switch item.change {
      case .utility(let on):
        if on && !utility { utilitySince = item.at }
        utility = on
        gpio.drive(line: "GPIO17", high: on, at: start + UInt64(item.at * 1e9))
      case .emergencyStop(let pressed):
        emergencyStop = pressed
        gpio.drive(line: "GPIO24", high: !pressed, at: start + UInt64(item.at * 1e9))
      case .switchStuck(let stuck):
        switchStuck = stuck
      case .islandTest(let on):
        islandTest = on
      case .contactGlitch:
        if utility {
          gpio.drive(line: "GPIO17", high: false, at: start + UInt64(item.at * 1e9))
          schedule.append((item.at + 0.006, .contactSettles))
        }
      case .contactSettles:
        gpio.drive(line: "GPIO17", high: utility, at: start + UInt64(item.at * 1e9))
      }
    }
    // The switch follows its command line (held active for the island side).
    let wanted: TransferSwitchPosition = gpio.isHigh(line: "GPIO5") ? .island : .utility
    if let m = moving, t >= m.at - 1e-9 {
      position = m.to
      moving = nil
      gpio.drive(line: "GPIO22", high: position == .utility)
      gpio.drive(line: "GPIO23", high: position == .island)
    }
    if moving == nil && wanted != position && !switchStuck {
      // Open transition: both contacts open while it moves.
      moving = (wanted, t + switchTransferSeconds)
      position = .unknown
      gpio.drive(line: "GPIO22", high: false)
      gpio.drive(line: "GPIO23", high: false)
    }
  }

  private func step() {
    let t = now
    let period = lastStep < 0 ? 1 : t - lastStep
    // Vehicles moved energy since the last step, at the setpoints then in force.
    if let last = steps.last {
      for i in vehicles.indices {
        guard var v = vehicles[i] else { continue }
        var p = last.decisions.setpointsKW[i]
        if i == last.decisions.gridFormingCharger {
          // The grid-forming charger follows the island's load, up to its ceiling.
          let load =
            buildingKW * site.criticalLoadFraction + site.restoredLoadKW(groups: last.decisions.restoredLoadGroups)
          let followers = last.decisions.setpointsKW.enumerated().filter { $0.offset != i }.reduce(0) {
            $0 - min(0, $1.element)
          }
          p = -min(-p, max(0, load - followers))
        }
        let eta = site.chargers[i].efficiency
        v.energyKWh = min(v.batteryKWh, max(0, v.energyKWh + (p >= 0 ? p * eta : p / eta) * period / 3600))
        vehicles[i] = v
      }
    }
    lastStep = t
    var s = Snapshot(
      time: t, localTime: Self.base + t, periodSeconds: 1,
      buildingDemandKW: buildingKW, chargers: vehicles.map { ChargerReading(vehicle: $0) })
    s.islandTestRequested = islandTest
    field.overlay(&s)
    let d = controller.step(s)
    field.actuate(d, s)
    let island = gpio.isHigh(line: "GPIO5")
    let step = Step(
      time: t, snapshot: s, decisions: d, utility: utility, utilityOnFor: utility ? t - utilitySince : 0,
      position: position, emergencyStop: emergencyStop, islandCommand: island,
      shedRelays: relayOrder.map { gpio.isHigh(line: $0) })
    checkInterlocks(step)
    steps.append(step)
  }

  /// The relays in restore order (classrooms, kitchen, gym-hvac).
  var relayOrder: [String] { ["GPIO13", "GPIO12", "GPIO16"] }

  /// The rules that must hold at every step, judged against the physical truth.
  private func checkInterlocks(_ st: Step) {
    let d = st.decisions
    func breach(_ what: String) { breaches.append("t=\(st.time): \(what)") }
    let delay = controller.settings.enterServiceDelaySeconds
    let discharging = d.setpointsKW.contains { $0 < -1e-9 }
    if discharging || d.gridFormingCharger != nil {
      // Only onto a confirmed island, or a utility that has truly been there long enough.
      let onIsland = st.position == .island
      let onStableUtility = st.position == .utility && st.utility && st.utilityOnFor >= delay - 1e-6
      if !(onIsland || (onStableUtility && d.gridFormingCharger == nil)) {
        breach(
          "discharge \(d.setpointsKW) with the switch \(st.position) and the utility \(st.utility ? "on for \(st.utilityOnFor) s" : "dead")"
        )
      }
    }
    if d.gridFormingCharger != nil && st.position != .island { breach("island formed with the switch \(st.position)") }
    if st.emergencyStop && (d.setpointsKW.contains { $0 != 0 } || d.gridFormingCharger != nil) {
      breach("a charger runs under emergency stop: \(d.setpointsKW)")
    }
    if let before = steps.last, before.islandCommand && !st.islandCommand && st.position == .island {
      // The command back to the utility.
      if !(st.utility && st.utilityOnFor >= delay - 1e-6) {
        breach("re-transfer commanded with the utility on for only \(st.utilityOnFor) s")
      }
    }
    if !st.utility && st.position == .utility && discharging { breach("export into a dead grid") }
  }

  /// The first step at or after `t`.
  func step(at t: Double) -> Step? { steps.first { $0.time >= t - 1e-9 } }
  var last: Step { steps.last! }
}
