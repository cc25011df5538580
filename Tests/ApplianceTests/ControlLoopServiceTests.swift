import Control
import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import SiteModel
import SimulatedSite
import Simulation
import Testing

@testable import Appliance

@Suite("The control loop service")
struct ControlLoopServiceTests {
  func townhall() throws -> (SiteConfiguration, Scenario) {
    let configuration = try SiteConfigurationFile.load(path: "config/example-townhall.yaml", environment: [:])
      .configuration
    return (configuration, try configuration.simulatedScenario())
  }

  @Test("stops at the end of a step on graceful shutdown")
  func gracefulShutdown() async throws {
    let (configuration, scenario) = try townhall()
    var loop = ControlLoopService.Configuration()
    loop.speed = 100
    let io = SimulatedSiteIO(scenario: scenario, startMinute: 0)
    let service = ControlLoopService(
      controller: Controller(site: configuration.site), io: io, configuration: loop,
      logger: Logger(label: "test"))
    try await testGracefulShutdown { trigger in
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await service.run() }
        // Let it run a few steps (however busy the machine), then ask it to stop.
        let clock = ContinuousClock()
        let giveUp = clock.now.advanced(by: .seconds(600))
        while await service.steps < 3 && clock.now < giveUp { try await Task.sleep(for: .milliseconds(20)) }
        trigger.triggerGracefulShutdown()
        try await group.waitForAll()
      }
    }
    // run() has returned: the loop is over and takes no further step.
    let steps = await service.steps
    #expect(steps >= 3)
    try await Task.sleep(for: .milliseconds(100))
    #expect(await service.steps == steps)
  }

  @Test("runs the outage sequence against the simulated site: island, wait 300 s, reconnect")
  func outageSequence() async throws {
    let (configuration, scenario) = try townhall()
    var loop = ControlLoopService.Configuration()
    loop.speed = 1_000_000
    loop.stopAfterSeconds = 4 * 3600
    let io = SimulatedSiteIO(scenario: scenario, startMinute: configuration.plant!.startMinute!)
    let service = ControlLoopService(
      controller: Controller(site: configuration.site, settings: configuration.control), io: io,
      configuration: loop, logger: Logger(label: "test"))
    try await service.run()
    #expect(await service.steps == 4 * 3600)
    #expect(await io.violations.isEmpty)
    #expect(await service.lastDecisions?.mode == .gridConnected)
  }

  /// A site whose I/O fails for a while, then recovers: behind the same interface as the
  /// real drivers, for what cannot be made to fail on demand here.
  actor FlakySiteIO: SiteIO {
    let inner: SimulatedSiteIO
    var failuresLeft: Int
    init(inner: SimulatedSiteIO, failures: Int) {
      self.inner = inner
      failuresLeft = failures
    }
    struct Unreachable: Error {}
    func snapshot(periodSeconds: Double) async throws -> Snapshot {
      if failuresLeft > 0 {
        failuresLeft -= 1
        throw Unreachable()
      }
      return await inner.snapshot(periodSeconds: periodSeconds)
    }
    func apply(_ decisions: Decisions, periodSeconds: Double) async throws -> AppliedStep {
      await inner.apply(decisions, periodSeconds: periodSeconds)
    }
  }

  @Test("a site that stops answering does not stop the loop; it carries on when the site is back")
  func survivesSiteFailures() async throws {
    let (configuration, scenario) = try townhall()
    var loop = ControlLoopService.Configuration()
    loop.speed = 1_000_000
    loop.stopAfterSeconds = 600
    let io = FlakySiteIO(inner: SimulatedSiteIO(scenario: scenario, startMinute: 0), failures: 100)
    let service = ControlLoopService(
      controller: Controller(site: configuration.site), io: io, configuration: loop, logger: Logger(label: "test"))
    try await service.run()
    #expect(await service.steps == 500, "100 of the 600 periods failed; the other 500 ran")
    #expect(await service.failedSteps == 0, "recovered")
  }

  @Test("with meters, a fresh reading brings a step at once, and the plant keeps pace with the clock")
  func stepsOnMeterReadings() async throws {
    let (configuration, scenario) = try townhall()
    var loop = ControlLoopService.Configuration()
    loop.periodSeconds = 30  // a long period: any quick step is the meter's doing
    loop.speed = 1
    let trigger = StepTrigger()
    let meters = MeterInputs(
      meters: [MeterSpec(id: "m", role: .buildingLoad, topic: "t", unit: .kilowatt)], trigger: trigger)
    let io = SimulatedSiteIO(scenario: scenario, startMinute: 0)
    let start = await io.snapshot(periodSeconds: 1).time
    let service = ControlLoopService(
      controller: Controller(site: configuration.site), io: io, configuration: loop,
      logger: Logger(label: "test"), overlays: [meters], trigger: trigger)
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { try await service.run() }
      let clock = ContinuousClock()
      // Generous: on a machine whose other tests hold the cooperative threads, the loop
      // may be late; what is asserted is what woke it, not how fast.
      let giveUp = clock.now.advanced(by: .seconds(300))
      while await service.steps < 1 && clock.now < giveUp { try await Task.sleep(for: .milliseconds(5)) }
      #expect(await service.lastDecisions?.mode == .safe, "no meter reading yet: safe state")
      let began = clock.now
      let wakesBefore = await service.wakesByInputs
      for kW in [80.0, 120, 95, 300, 10] {
        let before = await service.steps
        meters.ingest(topic: "t", payload: Array("\(kW)".utf8))
        while await service.steps == before && clock.now < giveUp { try await Task.sleep(for: .milliseconds(1)) }
        try await Task.sleep(for: .milliseconds(20))
      }
      let elapsed = MeterInputs.seconds(clock.now - began)
      #expect(await service.steps >= 6, "one step per reading")
      // Each reading woke the loop before its 30 s period was out (one may share its wake
      // with a period that ran out at the same moment on a busy machine).
      let wakes = await service.wakesByInputs - wakesBefore
      #expect(wakes >= 4, "\(wakes) of 5 readings woke the loop (in \(elapsed) s)")
      #expect(await service.lastDecisions?.mode == .gridConnected, "fresh readings: out of the safe state")
      // The plant was advanced by the time that passed (plus the one period it runs
      // ahead), not by 30 s per step.
      let plantTime = await io.snapshot(periodSeconds: 1).time - start
      #expect(plantTime < 30 + elapsed + 5, "the plant ran ahead of the clock: \(plantTime) s")
      group.cancelAll()
    }
  }
}
