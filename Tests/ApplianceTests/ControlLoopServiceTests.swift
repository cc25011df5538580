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
    let configuration = try SiteConfigurationFile.load(path: "config/example-townhall.yaml", environment: [:]).configuration
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
        try await Task.sleep(for: .milliseconds(500))
        trigger.triggerGracefulShutdown()
        try await group.waitForAll()
      }
    }
    let steps = await service.steps
    #expect(steps > 3, "ran \(steps) steps in 0.5 s at 100x")
    #expect(steps < 200)
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
}
