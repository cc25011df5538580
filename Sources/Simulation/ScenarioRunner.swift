import Control
import SiteModel

/// Runs a policy against a scenario's plant, faster than real time, and keeps the trace.
/// The controller sees exactly what `SitePlant.snapshot` reveals: the past and what has
/// been announced, never the future.
public struct ScenarioRunner {
  public let scenario: Scenario
  /// Control step, seconds: it must divide the demand interval.
  public let stepSeconds: Double

  public init(scenario: Scenario, stepSeconds: Double = 60) {
    precondition(
      stepSeconds > 0 && scenario.intervalSeconds.truncatingRemainder(dividingBy: stepSeconds) == 0,
      "the step must divide the demand interval")
    self.scenario = scenario
    self.stepSeconds = stepSeconds
  }

  /// Timing of the policy's decisions, for the bench.
  public struct Timing: Sendable {
    public var steps = 0
    /// Every `sampleTimingEvery`-th step, whatever it did.
    public var decisionNanos: [UInt64] = []
    /// Every step on which the policy made a new plan.
    public var replanNanos: [UInt64] = []
  }

  /// - Parameters:
  ///   - untilMinute: stop early (the trace then covers `[0, untilMinute)`).
  ///   - progress: called now and then with the fraction done.
  ///   - sampleTimingEvery: record the policy's step time every this many steps (0: never).
  ///   - observe: called after every step with what the policy saw, decided and what flowed
  ///     (`simulate --record` turns these into the appliance's records).
  public func run<P: SitePolicy>(
    _ policy: inout P, untilMinute: Int? = nil, sampleTimingEvery: Int = 0,
    progress: ((Double) -> Void)? = nil, observe: ((Snapshot, Decisions, SitePlant.Flows) -> Void)? = nil
  ) -> (trace: Trace, timing: Timing) {
    var plant = SitePlant(scenario: scenario)
    var recorder = TraceRecorder(scenario: scenario)
    var timing = Timing()
    let end = min(untilMinute ?? scenario.durationMinutes, scenario.durationMinutes)
    let totalSteps = Int(Double(end) * 60 / stepSeconds)
    let progressEvery = max(1, totalSteps / 200)
    let clock = ContinuousClock()
    while plant.minute < end {
      let snapshot = plant.snapshot(periodSeconds: stepSeconds)
      let decisions: Decisions
      if sampleTimingEvery > 0 {
        var result: Decisions?
        let elapsed = clock.measure { result = policy.step(snapshot) }
        decisions = result!
        let nanos =
          UInt64(elapsed.components.seconds) * 1_000_000_000 + UInt64(elapsed.components.attoseconds / 1_000_000_000)
        if timing.steps % sampleTimingEvery == 0 { timing.decisionNanos.append(nanos) }
        if policy.replannedLastStep { timing.replanNanos.append(nanos) }
      } else {
        decisions = policy.step(snapshot)
      }
      let sessions = plant.activeSession
      let flows = plant.advance(decisions, seconds: stepSeconds)
      observe?(snapshot, decisions, flows)
      recorder.record(flows, seconds: stepSeconds, sessions: sessions, plant: plant)
      timing.steps += 1
      if let progress, timing.steps % progressEvery == 0 { progress(Double(timing.steps) / Double(totalSteps)) }
    }
    var trace = recorder.trace
    trace.departures = plant.departures
    trace.violations = plant.violations
    return (trace, timing)
  }
}
