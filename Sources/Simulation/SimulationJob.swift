import Control
import Foundation
import SiteModel

/// `microgrid-edge simulate`: the controller and the unmanaged reference over a scenario,
/// with the trace, report and chart written to a directory.
public struct SimulationJob {
  public var scenario: Scenario
  public var settings: ControlSettings
  public var stepSeconds: Double = 60
  public var untilMinute: Int?
  public var sampleTimingEvery = 0
  /// Sees every step of the controller's run (not the unmanaged reference's).
  public var observeManagedStep: ((Snapshot, Decisions, SitePlant.Flows) -> Void)?

  public init(scenario: Scenario, settings: ControlSettings = ControlSettings()) {
    self.scenario = scenario
    self.settings = settings
  }

  public struct Result: Sendable {
    public var trace: Trace
    public var report: RunReport
  }

  public func run(progress: ((String, Double) -> Void)? = nil) -> Result {
    let runner = ScenarioRunner(scenario: scenario, stepSeconds: stepSeconds)
    let started = ContinuousClock.now
    var controller = Controller(site: scenario.site, settings: settings)
    let managed = runner.run(
      &controller, untilMinute: untilMinute, sampleTimingEvery: sampleTimingEvery,
      progress: progress.map { p in { p("controller", $0) } }, observe: observeManagedStep)
    var baseline = UnmanagedPolicy(site: scenario.site)
    let unmanaged = runner.run(
      &baseline, untilMinute: untilMinute, progress: progress.map { p in { p("unmanaged", $0) } })
    let elapsed = ContinuousClock.now - started
    let cost = CostBreakdown(trace: managed.trace, scenario: scenario)
    let unmanagedCost = CostBreakdown(trace: unmanaged.trace, scenario: scenario)
    let report = RunReport(
      scenario: scenario.name, controller: "microgrid-edge \(MicrogridEdgeVersion.current)", control: settings,
      stepSeconds: stepSeconds,
      simulatedDays: Double(managed.trace.intervals.count) * scenario.intervalSeconds / 86_400,
      wallClockSeconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
      cost: cost, unmanagedCost: unmanagedCost, savings: unmanagedCost.total - cost.total,
      violations: managed.trace.violations,
      decisionTimeMicros: RunReport.DecisionTime(nanos: managed.timing.decisionNanos),
      replanTimeMicros: RunReport.DecisionTime(nanos: managed.timing.replanNanos))
    return Result(trace: managed.trace, report: report)
  }

  /// Writes intervals.csv, vehicles.csv, report.json and chart.html.
  public func write(_ result: Result, to directory: String) throws {
    do {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    } catch {
      throw InputError(source: directory, message: "cannot create the output directory: \(error.localizedDescription)")
    }
    try TraceFiles.write(result.trace, scenario: scenario, to: directory)
    try result.report.write(to: directory)
    let html = Chart.html(
      scenario: scenario, managed: result.trace, managedCost: result.report.cost,
      unmanagedCost: result.report.unmanagedCost)
    try TraceFiles.writeFile(html, to: (directory as NSString).appendingPathComponent("chart.html"))
  }
}

public enum MicrogridEdgeVersion {
  public static let current = "0.1.0"
}
