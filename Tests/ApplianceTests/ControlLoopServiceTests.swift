import Control
import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import SiteModel
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
    let io = SimulatedSiteIO(scenario: scenario, startMinute: configuration.plant.startMinute!)
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
}
