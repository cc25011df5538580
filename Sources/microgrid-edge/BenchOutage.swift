import Appliance
import ArgumentParser
import Control
import Foundation
import GPIO
import Logging
import ServiceLifecycle
import SiteModel
import SimulatedSite
import Simulation
import Synchronization

/// How fast the running appliance answers a utility loss, for scripts/bench: the control
/// loop, FieldIO with its reader threads and the controller run as in the daemon, over
/// simulated pins on the real clock. Each trial drops the utility contact at a known
/// instant and measures, on the pins' clock:
///
/// - export stop: the first decision that allows no discharge;
/// - transfer: the write of the transfer-to-island command, from the edge and from the
///   moment the debounce confirmed the loss.
///
/// Between trials the utility returns and the site goes back to normal service (short
/// enter-service timings, so trials are quick; they do not change the path measured).
struct BenchOutage: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-outage",
    abstract: "Measure utility-loss edge to export-stop and transfer commands (for scripts/bench).")

  @Option(help: "A site configuration with a simulated plant (its gpio: section is replaced).")
  var config: String

  @Option(help: "Utility losses to measure.")
  var trials = 300

  @Option(help: "Debounce of the utility contact, ms.")
  var debounceMs: Double = 20

  func run() async throws {
    var loaded: SiteConfigurationFile.Loaded!
    var scenario: Scenario!
    try exitOnInputError {
      loaded = try SiteConfigurationFile.load(path: config, environment: [:])
      scenario = try loaded.configuration.simulatedScenario()
    }
    var configuration = loaded.configuration
    let pins = GPIOSection(
      backend: .simulated, chip: "gpiochip0",
      inputs: .init(
        utilityAvailable: .init(line: .name("GPIO17"), debounceMs: debounceMs),
        switchAtUtility: .init(line: .name("GPIO22"))),
      outputs: .init(transferToIsland: .init(line: .name("GPIO5"))))
    configuration.control.enterServiceDelaySeconds = 0.2
    configuration.control.enterServiceRampSeconds = 0
    let gpio = SimulatedGPIO.raspberryPi()
    gpio.drive(line: "GPIO17", high: true)
    gpio.drive(line: "GPIO22", high: true)
    var logger = Logger(label: "bench-outage")
    logger.logLevel = .critical
    let trigger = StepTrigger()
    let field = try FieldIO(
      section: pins, backend: gpio, site: configuration.site, trigger: trigger, logger: logger)
    let probe = DecisionProbe(clock: gpio)
    let io = SimulatedSiteIO(scenario: scenario, startMinute: loaded.configuration.plant?.startMinute ?? 0)
    var loop = ControlLoopService.Configuration()
    loop.statusEverySeconds = .infinity
    loop.periodSeconds = 0.1  // so each trial's return to normal takes a fraction of a second
    let service = ControlLoopService(
      controller: Controller(site: configuration.site, settings: configuration.control), io: io,
      configuration: loop, logger: logger, overlays: [field], actuators: [field, probe], trigger: trigger)
    field.start()
    let group = ServiceGroup(services: [service], logger: logger)

    var exportStop: [Double] = []
    var transferFromEdge: [Double] = []
    var transferFromConfirm: [Double] = []
    try await withThrowingTaskGroup(of: Void.self) { tasks in
      tasks.addTask { try await group.run() }
      for _ in 0..<trials {
        // Back to normal service on the utility.
        gpio.drive(line: "GPIO17", high: true)
        try await probe.waitFor { $0.phase == .normal }
        _ = gpio.takeWrites()
        try await Task.sleep(for: .milliseconds(Int.random(in: 20...120)))
        // The utility drops now.
        let edge = gpio.nowNanoseconds()
        probe.arm(after: edge)
        gpio.drive(line: "GPIO17", high: false, at: edge)
        try await probe.waitFor { $0.transferSwitch == .toIsland }
        guard let stop = probe.firstNoDischarge,
          let write = gpio.takeWrites().first(where: { $0.offset == 5 && $0.active })
        else { continue }
        exportStop.append(Double(stop - edge) / 1e6)
        transferFromEdge.append(Double(write.timestampNanoseconds - edge) / 1e6)
        transferFromConfirm.append(Double(write.timestampNanoseconds - edge) / 1e6 - debounceMs)
      }
      await group.triggerGracefulShutdown()
      try await tasks.waitForAll()
    }
    field.stop()
    func stats(_ v: [Double]) -> [String: Double] {
      let s = v.sorted()
      func q(_ p: Double) -> Double { s.isEmpty ? .nan : s[min(s.count - 1, Int(Double(s.count - 1) * p))] }
      return ["p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "max": s.last ?? .nan]
    }
    let result: [String: Any] = [
      "trials": exportStop.count, "debounce_ms": debounceMs,
      "export_stop_ms": stats(exportStop), "transfer_from_edge_ms": stats(transferFromEdge),
      "transfer_after_debounce_ms": stats(transferFromConfirm),
    ]
    let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
  }
}

/// Watches the decisions as the loop makes them (an actuator runs right after the
/// controller), stamped on the pins' clock.
final class DecisionProbe: DecisionActuator {
  private struct State {
    var last: Decisions?
    var armedAfter: UInt64?
    var firstNoDischarge: UInt64?
  }
  private let state = Mutex(State())
  private let clock: any GPIOBackend

  init(clock: any GPIOBackend) { self.clock = clock }

  func actuate(_ d: Decisions, _ s: Snapshot) {
    let now = clock.nowNanoseconds()
    state.withLock { st in
      st.last = d
      // Export stopped: the step saw the contact drop and allows no discharge.
      if let armed = st.armedAfter, st.firstNoDischarge == nil, now >= armed,
        s.utilityLossPending || !s.utilityAvailable, d.setpointsKW.allSatisfy({ $0 >= 0 })
      {
        st.firstNoDischarge = now
      }
    }
  }

  func arm(after t: UInt64) {
    state.withLock {
      $0.armedAfter = t
      $0.firstNoDischarge = nil
    }
  }

  var firstNoDischarge: UInt64? { state.withLock { $0.firstNoDischarge } }

  /// Polls until the latest decision matches (10 s at most).
  func waitFor(_ match: @escaping @Sendable (Decisions) -> Bool) async throws {
    for _ in 0..<10_000 {
      if let d = state.withLock({ $0.last }), match(d) { return }
      try await Task.sleep(for: .milliseconds(1))
    }
    throw ValidationError("the appliance did not reach the expected state within 10 s")
  }
}
