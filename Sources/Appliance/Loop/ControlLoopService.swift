import Control
import Foundation
import Logging
import Metrics
import ServiceLifecycle
import SiteModel

/// The 1 Hz control loop as a service: read a snapshot, decide, act, log. It stops at the
/// end of a step on graceful shutdown (SIGTERM), so a setpoint is never left half-applied.
public actor ControlLoopService: Service {
  public struct Configuration: Sendable {
    /// Control period in simulated (site) seconds.
    public var periodSeconds: Double = 1
    /// Site seconds per real second; 1 is real time.
    public var speed: Double = 1
    /// Stop after this many site seconds (nil: run until told to stop).
    public var stopAfterSeconds: Double?
    /// A status line this often, site seconds.
    public var statusEverySeconds: Double = 900
    /// With a trigger (meters), the loop steps as soon as fresh readings arrive, but not
    /// more often than this: readings that come faster collapse into one step.
    public var minimumStepGap: Duration = .milliseconds(5)
    /// A test hook: after this many steps the loop hangs for good (it stops passing and
    /// ignores SIGTERM), as a loop stuck in a driver would, so that a test can see the
    /// watchdog pings stop. Set only by `MICROGRID_EDGE_TEST_HANG_LOOP_AFTER_STEPS`.
    public var hangAfterSteps: Int?
    public init() {}
  }

  private let configuration: Configuration
  private let io: any SiteIO
  private var controller: Controller
  private let logger: Logger
  private let overlays: [any SnapshotOverlay]
  private let observers: [any StepObserver]
  private let actuators: [any DecisionActuator]
  private let trigger: StepTrigger?
  private let status: SiteStatus?
  /// Where the controller's load and session histories are kept across restarts (nil: a
  /// simulated plant, whose timeline is its scenario's).
  private let memory: SiteState?
  /// Told after every pass (the systemd watchdog) and when the loop begins to stop.
  private let heartbeat: (any LoopHeartbeat)?
  /// Each step's duration, read to write (the metrics endpoint's histogram).
  private let stepTimer: Metrics.Timer?
  private var historiesRestored = false
  private var savedHistoryInterval: Int?
  /// Steps run so far (for tests and the final log line).
  public private(set) var steps = 0
  /// How many waits between steps a fresh input (a meter reading) ended before the period
  /// ran out: how often the loop stepped on its inputs rather than on its clock.
  public private(set) var wakesByInputs = 0
  public private(set) var lastDecisions: Decisions?
  private var lastSnapshot: Snapshot?
  private var lastStatus: Double?
  private var lastInterventionLog: Double?
  /// Consecutive steps whose snapshot or actions failed.
  public private(set) var failedSteps = 0
  private var suppressedInterventions = 0

  /// `overlays` add to each snapshot in order (meters, then staff's instructions);
  /// `observers` follow each step; `trigger` (when meters feed the loop) wakes it early.
  public init(
    controller: Controller, io: any SiteIO, configuration: Configuration, logger: Logger,
    overlays: [any SnapshotOverlay] = [], observers: [any StepObserver] = [],
    actuators: [any DecisionActuator] = [], trigger: StepTrigger? = nil, status: SiteStatus? = nil,
    memory: SiteState? = nil, heartbeat: (any LoopHeartbeat)? = nil, stepTimer: Metrics.Timer? = nil
  ) {
    self.memory = memory
    self.heartbeat = heartbeat
    self.stepTimer = stepTimer
    self.actuators = actuators
    self.controller = controller
    self.io = io
    self.configuration = configuration
    self.logger = logger
    self.overlays = overlays
    self.observers = observers
    self.trigger = trigger
    self.status = status
  }

  public func run() async throws {
    // SIGTERM: systemd hears STOPPING=1 at once; the loop ends at the end of its step.
    let heartbeat = heartbeat
    try await withGracefulShutdownHandler {
      if let trigger {
        try await runOnInputs(trigger)
      } else {
        try await runOnPeriod()
      }
    } onGracefulShutdown: {
      heartbeat?.loopStopping()
    }
  }

  private func runOnPeriod() async throws {
    let clock = ContinuousClock()
    let realPeriod = Duration.seconds(configuration.periodSeconds / configuration.speed)
    var deadline = clock.now
    var siteSeconds = 0.0
    logStart("control loop started")
    while !Task.isShuttingDownGracefully && !Task.isCancelled && !StartupSignals.stopRequested {
      if let stop = configuration.stopAfterSeconds, siteSeconds >= stop { break }
      let wentThrough = await guardedStep(advancing: nil)
      await passed(wentThrough)
      siteSeconds += configuration.periodSeconds
      deadline = deadline.advanced(by: realPeriod)
      if deadline > clock.now {
        // Graceful shutdown does not cancel the sleep; at most one period passes before
        // the loop sees it.
        try? await Task.sleep(until: deadline, clock: clock)
      } else {
        // Fell behind (a slow step, or a speed the machine cannot keep): do not try to
        // catch up in a burst, and let other tasks run.
        deadline = clock.now
        await Task.yield()
      }
    }
    stopped()
  }

  /// After the last step of a clean stop: what must survive is kept, and what cannot be is
  /// said.
  private func stopped() {
    heartbeat?.loopStopping()
    saveHistories()
    status?.applianceStopping()
    logger.info("control loop stopped cleanly", metadata: ["steps": "\(steps)"])
  }

  /// The controller's histories are taken back once the wall clock can be trusted (the
  /// timeline is anchored to it), and kept at every demand interval and on a clean stop.
  private func rememberHistories(_ s: Snapshot) {
    guard let memory, s.utcSeconds != nil else { return }
    if !historiesRestored {
      historiesRestored = true
      if let saved = memory.loadHistories() {
        let ok = controller.restore(loadHistory: saved.load, sessionHistory: saved.sessions)
        logger.notice(
          ok ? "load and session history restored" : "load history kept for another demand interval; starting afresh",
          metadata: [
            "load_intervals": "\(saved.load.intervalsSeen)", "sessions": "\(saved.sessions.sessions.count)",
          ])
      }
      savedHistoryInterval = controller.loadHistory.currentInterval
      return
    }
    if controller.loadHistory.currentInterval != savedHistoryInterval { saveHistories() }
  }

  private func saveHistories() {
    guard let memory, historiesRestored else { return }
    savedHistoryInterval = controller.loadHistory.currentInterval
    memory.saveHistories(load: controller.loadHistory, sessions: controller.sessionHistory)
  }

  /// The end of a pass: the heartbeat hears of it (and the test hook may hang the loop).
  private func passed(_ stepWentThrough: Bool) async {
    heartbeat?.loopPassed(stepWentThrough: stepWentThrough)
    guard let after = configuration.hangAfterSteps, steps >= after else { return }
    logger.critical("test hook: the control loop hangs now (MICROGRID_EDGE_TEST_HANG_LOOP_AFTER_STEPS=\(after))")
    while true { try? await Task.sleep(for: .seconds(3600)) }
  }

  private func logStart(_ message: Logger.Message) {
    logger.info(
      message,
      metadata: [
        "period_s": "\(configuration.periodSeconds)", "speed": "\(configuration.speed)",
        "chargers": "\(controller.site.chargers.count)",
      ])
  }

  /// One step that never throws: a meter, switch or charger that does not answer must not
  /// stop the appliance. The drivers hold their own safe state; the loop says so and tries
  /// again next period. True when the step went through.
  private func guardedStep(advancing: Double?) async -> Bool {
    do {
      try await step(advancing: advancing)
      if failedSteps > 0 {
        logger.notice("site I/O recovered", metadata: ["failed_steps": "\(failedSteps)"])
        failedSteps = 0
      }
      return true
    } catch {
      stepFailed(error)
      return false
    }
  }

  private func stepFailed(_ error: any Error) {
    failedSteps += 1
    status?.siteIOFailed(error)
    if failedSteps == 1 || failedSteps % 60 == 0 {
      logger.error(
        "site I/O failed; retrying every period", metadata: ["error": "\(error)", "failed_steps": "\(failedSteps)"])
    }
  }

  /// The loop when meters feed it: a step as soon as a fresh reading arrives (at most one
  /// per `minimumStepGap`), and at least one per period without readings. Site time is
  /// the real time since start times the speed; the plant is advanced by the site time
  /// since the step before, so the simulated building keeps pace with the real clock.
  private func runOnInputs(_ trigger: StepTrigger) async throws {
    let clock = ContinuousClock()
    let start = clock.now
    let realPeriod = Duration.seconds(configuration.periodSeconds / configuration.speed)
    var lastStep = start
    var advanced = 0.0
    logStart("control loop started; stepping on meter readings")
    while !Task.isShuttingDownGracefully && !Task.isCancelled && !StartupSignals.stopRequested {
      let siteNow = MeterInputs.seconds(clock.now - start) * configuration.speed
      if let stop = configuration.stopAfterSeconds, siteNow >= stop { break }
      // The plant runs ahead by one period (its decisions hold that long); a step that
      // comes early advances it only by the time that passed since the last one.
      let advance = min(max(0, siteNow + configuration.periodSeconds - advanced), 60)
      let wentThrough = await guardedStep(advancing: advance)
      if wentThrough { advanced = max(advanced + advance, siteNow) }
      await passed(wentThrough)
      lastStep = clock.now
      if await trigger.wait(until: lastStep.advanced(by: realPeriod)) { wakesByInputs += 1 }
      // Never more than one step per period, even when sped up.
      let earliest = lastStep.advanced(by: min(configuration.minimumStepGap, realPeriod))
      if clock.now < earliest && !trigger.takeUrgent() { try? await Task.sleep(until: earliest, clock: clock) }
    }
    stopped()
  }

  /// One control step; the site's plant (if simulated) moves on by `advancing` seconds
  /// (default: one period).
  public func step(advancing: Double? = nil) async throws {
    let started = ContinuousClock.now
    defer { stepTimer?.record(duration: ContinuousClock.now - started) }
    var snapshot = try await io.snapshot(periodSeconds: configuration.periodSeconds)
    for overlay in overlays { overlay.overlay(&snapshot) }
    // Read, decide (the controller's proposal, then the safety filter as its own stage),
    // write.
    let proposal = controller.propose(snapshot)
    let decisions = controller.filter(proposal, snapshot)
    rememberHistories(snapshot)
    // Wired outputs first (the transfer switch, the relays: local and fast), then the
    // chargers.
    for actuator in actuators { actuator.actuate(decisions, snapshot) }
    let applied = try await io.apply(decisions, periodSeconds: advancing ?? configuration.periodSeconds)
    steps += 1
    if !observers.isEmpty {
      var record = StepRecord(
        snapshot: snapshot, proposal: proposal, decisions: decisions, applied: applied,
        wallTime: snapshot.utcSeconds.map { Date(timeIntervalSince1970: $0) } ?? Date(),
        utilityStable: controller.grid.utilityStable(
          at: snapshot.time, delay: controller.settings.enterServiceDelaySeconds),
        sequence: steps)
      record.historyLoadIntervals = controller.loadHistory.intervalsSeen
      record.historySessions = controller.sessionHistory.sessions.count
      for observer in observers { observer.observe(record) }
    }
    logChanges(snapshot, decisions, applied)
    lastSnapshot = snapshot
    lastDecisions = decisions
  }

  private func logChanges(_ s: Snapshot, _ d: Decisions, _ applied: AppliedStep) {
    let when: Logger.Metadata = ["site_time": "\(s.localTime.date) \(clockText(s.localTime))"]
    if let previous = lastDecisions, previous.mode != d.mode {
      logger.notice(
        "mode \(previous.mode.rawValue) → \(d.mode.rawValue)",
        metadata: when.merging([
          "utility": "\(s.utilityAvailable ? "available" : "lost")", "switch": "\(s.transferSwitch.rawValue)",
        ]) { a, _ in a })
    }
    if d.transferSwitch != .hold && lastDecisions?.transferSwitch != d.transferSwitch {
      logger.notice("transfer switch command \(d.transferSwitch.rawValue)", metadata: when)
    }
    logPhase(s, d, when)
    if let previous = lastDecisions, previous.shedNonCriticalLoads != d.shedNonCriticalLoads {
      logger.notice(
        d.shedNonCriticalLoads ? "shedding non-critical loads" : "restoring non-critical loads", metadata: when)
    }
    // The filter may act every second for a while; say so once a minute, not every step.
    if !d.safetyInterventions.isEmpty {
      suppressedInterventions += d.safetyInterventions.count
      if lastInterventionLog.map({ s.time - $0 >= 60 }) ?? true {
        logger.warning(
          "safety filter: \(d.safetyInterventions.joined(separator: "; "))",
          metadata: when.merging(["changes_last_minute": "\(suppressedInterventions)"]) { a, _ in a })
        lastInterventionLog = s.time
        suppressedInterventions = 0
      }
    }
    if let before = lastSnapshot {
      for (i, (old, new)) in zip(before.chargers, s.chargers).enumerated()
      where old.vehicle?.vehicleID != new.vehicle?.vehicleID {
        let charger = controller.site.chargers[i].id
        func logVehicle(_ v: PluggedVehicle, _ what: String) {
          logger.info(
            "\(v.vehicleID) \(what) \(charger)",
            metadata: when.merging([
              "energy_kwh": "\(rounded(v.energyKWh))", "need_kwh": "\(rounded(v.departureNeedKWh))",
            ]) { a, _ in a })
        }
        if let v = old.vehicle { logVehicle(v, "left") }
        if let v = new.vehicle { logVehicle(v, "plugged into") }
      }
      for e in s.events where !before.events.contains(e) {
        logger.notice("demand-response event \(e.id) announced", metadata: when)
      }
    }
    if lastStatus.map({ s.time - $0 >= configuration.statusEverySeconds }) ?? true {
      lastStatus = s.time
      let setpoints = zip(controller.site.chargers, d.setpointsKW).filter { $0.1 != 0 }.map {
        "\($0.0.id)=\(rounded($0.1))"
      }
      logger.info(
        "status",
        metadata: when.merging([
          "mode": "\(d.mode.rawValue)", "building_kw": "\(rounded(s.buildingDemandKW))",
          "grid_kw": "\(rounded(applied.gridKW))", "target_kw": "\(rounded(d.demandTargetKW))",
          "month_peak_kw": "\(rounded(s.meter.monthPeakKW))", "setpoints_kw": "\(setpoints.joined(separator: " "))",
        ]) { a, _ in a })
    }
    logger.debug(
      "step", metadata: ["mode": "\(d.mode.rawValue)", "setpoints_kw": "\(d.setpointsKW.map(rounded))"])
  }

  /// The outage sequence's steps, each with how long the one before took and what the
  /// configured timings make of the next.
  private func logPhase(_ s: Snapshot, _ d: Decisions, _ when: Logger.Metadata) {
    guard d.phase != phase.current else {
      if d.phase == .islanded && d.restoredLoadGroups != phase.restored {
        phase.restored = d.restoredLoadGroups
        let kW = controller.site.restoredLoadKW(groups: d.restoredLoadGroups)
        logger.notice(
          "island carries \(d.restoredLoadGroups) of \(controller.site.sheddableLoads.count) shed groups",
          metadata: when.merging(["restored_kw": "\(rounded(kW))"]) { a, _ in a })
      }
      return
    }
    let settings = controller.settings
    var meta = when
    if let since = phase.since { meta["after_s"] = "\(rounded(s.time - since))" }
    meta["from"] = "\(phase.current?.rawValue ?? "start")"
    switch d.phase {
    case .transferring:
      meta["confirm_within_s"] = "\(settings.transferConfirmSeconds)"
    case .islanded:
      meta["restore_step_s"] = "\(settings.loadRestoreStepSeconds)"
      meta["restore_if_hours"] = "\(settings.loadRestoreHours)"
    case .enterServiceWait:
      meta["delay_s"] = "\(settings.enterServiceDelaySeconds)"
    case .rampingUp:
      meta["ramp_s"] = "\(settings.enterServiceRampSeconds)"
    case .transferStuck:
      meta["retry_s"] = "\(settings.transferRetrySeconds)"
    case .normal, .blackout, .retransferring, .emergencyStop: break
    }
    let level: Logger.Level =
      d.phase == .transferStuck || d.phase == .blackout || d.phase == .emergencyStop ? .error : .notice
    logger.log(level: level, "outage sequence: \(d.phase.rawValue)", metadata: meta)
    phase = (d.phase, s.time, d.restoredLoadGroups)
  }
  private var phase: (current: OutagePhase?, since: Double?, restored: Int) = (nil, nil, 0)

  private func rounded(_ v: Double) -> Double { (v * 10).rounded() / 10 }

  private func clockText(_ t: LocalTime) -> String {
    let m = t.minuteOfDay
    let s = Int(t.seconds) % 60
    func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(two(m / 60)):\(two(m % 60)):\(two((s + 60) % 60))"
  }
}
