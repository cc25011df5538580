import SiteModel

/// Anything that turns a snapshot into decisions: the controller, and the reference
/// policies the simulator compares it with.
public protocol SitePolicy: Sendable {
  mutating func step(_ snapshot: Snapshot) -> Decisions
  /// Whether the last step made a new plan (for timing plans apart from ordinary steps).
  var replannedLastStep: Bool { get }
}

extension SitePolicy {
  public var replannedLastStep: Bool { false }
}

/// The site controller: grid state, peak shaving, demand response, outage ride-through
/// and departure-aware dispatch, followed by the separate safety filter.
///
/// It is a pure function of the snapshot and its own memory (this struct): no clock, no
/// I/O, no randomness. The daemon and the simulator run the very same value.
public struct Controller: SitePolicy {
  /// The site as installed (the configuration's ratings).
  public let ratedSite: SiteDescription
  /// The site as it can act this step: ratings lowered to what each charger reports now.
  public private(set) var site: SiteDescription
  public let settings: ControlSettings
  public private(set) var grid = GridStateMachine()
  public private(set) var safetyMemory = SafetyFilter.Memory()
  public private(set) var loadHistory: LoadHistory
  public private(set) var sessionHistory = SessionHistory()
  private var safety: SafetyFilter
  /// Cumulative forecast headroom under the target, by intervals ahead (see `pace`).
  private var headroomCache: (interval: Int, target: Double, prefix: [Double]) = (-1, -1, [])
  /// The load forecast for the week ahead, 1 interval ahead first: made once per interval
  /// and shared by the plan and the pacing.
  private var forecastCache: (interval: Int, loadKW: [Double]) = (-1, [])
  private let planMargins: VehicleEnvelope.Margins
  private let planner: PeakPlanner
  /// The plan in force and what it was made for: re-planned when a demand interval
  /// starts, a vehicle comes or goes, or an event is announced.
  private var currentPlan: (key: PlanKey, plan: PeakPlanner.Plan, chargers: [Int])?
  public private(set) var replannedLastStep = false
  /// The outage sequence's own memory: the switch command waiting for its contacts, the
  /// load groups restored on the island, the last emergency stop.
  public private(set) var sequence = SequenceMemory()
  struct PlanKey: Hashable {
    var interval: Int
    var vehicles: [String?]
    var event: String?
  }

  public init(site: SiteDescription, settings: ControlSettings = ControlSettings()) {
    self.ratedSite = site
    self.site = site
    self.settings = settings
    self.loadHistory = LoadHistory(intervalSeconds: site.demandIntervalSeconds)
    self.safety = SafetyFilter(
      site: site, enterServiceDelaySeconds: settings.enterServiceDelaySeconds,
      outageAssumedRemainingSeconds: settings.outageAssumedRemainingSeconds,
      enterServiceRampSeconds: settings.enterServiceRampSeconds)
    self.planMargins = VehicleEnvelope.Margins(
      departureMarginSeconds: settings.departureMarginSeconds,
      chargeRateFraction: settings.plannedChargeRateFraction,
      shavingRechargeFraction: settings.shavingRechargeFraction,
      rideThroughSeconds: settings.rideThroughSeconds)
    self.planner = PeakPlanner(intervalHours: site.demandIntervalSeconds / 3600)
  }

  /// Takes back the histories the forecasts learnt before a restart (the state store keeps
  /// them), so a restart does not cost the week of load and sessions the plan needs. A
  /// history kept for another demand interval is ignored; false then.
  @discardableResult
  public mutating func restore(loadHistory: LoadHistory?, sessionHistory: SessionHistory?) -> Bool {
    var ok = true
    if let loadHistory {
      if loadHistory.intervalSeconds == site.demandIntervalSeconds {
        self.loadHistory = loadHistory
      } else {
        ok = false
      }
    }
    if let sessionHistory { self.sessionHistory = sessionHistory }
    return ok
  }

  /// One step: the controller's proposal, then the safety filter over it.
  public mutating func step(_ s: Snapshot) -> Decisions {
    let proposal = propose(s)
    return filter(proposal, s)
  }

  /// The safety filter, the last stage of every step: the proposal clipped to the service
  /// and charger limits, the export limits, the vehicles' departure needs and reserves, and
  /// never export into a dead grid or before the utility has been stable. It keeps its own
  /// memory (when the utility came back), so no planning bug can talk it into reclosing
  /// early.
  public mutating func filter(_ proposal: Decisions, _ s: Snapshot) -> Decisions {
    safety.filter(proposal, s, memory: &safetyMemory)
  }

  /// What the controller would do, before the safety filter: the grid state, the dispatch
  /// or island plan, the outage sequence. Call `filter` on the result before acting on it.
  public mutating func propose(_ s: Snapshot) -> Decisions {
    replannedLastStep = false
    // Planning and the safety filter both work within what the chargers can do right now.
    let limited = ratedSite.limited(by: s.chargers)
    if limited != site {
      site = limited
      safety.site = limited
    }
    loadHistory.record(time: s.time, demandKW: max(0, s.buildingDemandKW), periodSeconds: s.periodSeconds)
    sessionHistory.observe(s)

    // Only worked out when the utility is gone, the building is not yet back on it, or
    // staff asked for an island test.
    let restored = sequence.restoredGroups
    let island =
      s.utilityAvailable && grid.state == .connected && !s.islandTestRequested
      ? IslandPlan(formingCharger: nil, setpointsKW: []) : islandPlan(s, restoredGroups: restored)
    let gridOut = grid.step(
      s, canIsland: island.formingCharger != nil,
      enterServiceDelay: settings.enterServiceDelaySeconds)

    var d: Decisions
    switch grid.state {
    case .connected:
      // Discharge waits out the enter-service delay after the utility (or the appliance)
      // comes up, then ramps, as the safety filter will insist.
      d =
        s.inputsFresh
        ? dispatchOnGrid(
          s,
          mayDischarge: grid.utilityStable(at: s.time, delay: settings.enterServiceDelaySeconds)
            && !s.utilityLossPending)
        : safeState(s)
      if s.transferSwitch == .utility, let last = sequence.lastPosition, last != .utility {
        sequence.reclosedAt = s.time
      }
      let share = enterService.dischargeShare(
        at: s.time, availableSince: grid.utilityBackSince, restartedAt: sequence.emergencyStopReleasedAt,
        reclosedAt: sequence.reclosedAt)
      // A charging platform's setpoints (Local Controller mode) replace the plan's for its
      // chargers on the grid; the safety filter below still holds them within the site's
      // limits: the service limit, departure needs, no export into a dead grid.
      for (i, kW) in s.platformSetpointsKW.enumerated() where i < d.setpointsKW.count && s.inputsFresh {
        if let kW { d.setpointsKW[i] = kW }
      }
      for i in d.setpointsKW.indices where i < site.chargers.count {
        d.setpointsKW[i] = max(d.setpointsKW[i], -site.chargers[i].maxDischargeKW * share)
      }
    case .islanded, .reconnecting:
      d = Decisions(setpointsKW: island.setpointsKW, gridFormingCharger: island.formingCharger)
    case .blackout:
      d = Decisions.idle(chargers: site.chargers.count)
    }
    d.transferSwitch = gridOut.transferSwitch
    d.shedNonCriticalLoads = gridOut.shed
    if gridOut.mode != .gridConnected || d.mode == .gridConnected {
      d.mode = gridOut.mode
    }
    sequenceStep(s, &d)
    sequence.lastPosition = s.transferSwitch
    return d
  }

  private var enterService: EnterService {
    EnterService(delaySeconds: settings.enterServiceDelaySeconds, rampSeconds: settings.enterServiceRampSeconds)
  }

  // MARK: - The outage sequence

  /// What the outage sequence remembers between steps.
  public struct SequenceMemory: Sendable, Hashable {
    /// The position a transfer was commanded to, and when, until the contacts confirm it.
    public var awaitingPosition: TransferSwitchPosition?
    public var awaitingSince: Double = 0
    /// A transfer back to the utility that did not confirm: when to try again.
    public var retransferRetryAt: Double?
    /// Shed groups back on, in restore order, and when the count last changed.
    public var restoredGroups = 0
    public var restoredChangedAt: Double = 0
    public var emergencyStopActive = false
    public var emergencyStopReleasedAt: Double?
    /// When the switch last closed back onto the utility, and where it was before.
    public var reclosedAt: Double?
    public var lastPosition: TransferSwitchPosition?
    public init() {}
  }

  /// Emergency stop, the switch's confirmation, load restoration on the island, and the
  /// phase for logs and panels. The safety filter enforces what matters here regardless.
  private mutating func sequenceStep(_ s: Snapshot, _ d: inout Decisions) {
    if sequence.emergencyStopActive && !s.emergencyStop { sequence.emergencyStopReleasedAt = s.time }
    sequence.emergencyStopActive = s.emergencyStop
    if s.emergencyStop {
      d.setpointsKW = Array(repeating: 0, count: site.chargers.count)
      d.gridFormingCharger = nil
      d.transferSwitch = .hold
      d.mode = .emergencyStop
      d.phase = .emergencyStop
      d.restoredLoadGroups = sequence.restoredGroups
      sequence.awaitingPosition = nil
      return
    }

    // A transfer back to the utility that the switch did not carry out: go on as an island
    // (hold the switch open) and try again later.
    if d.transferSwitch == .toUtility, let retry = sequence.retransferRetryAt, s.time < retry {
      d.transferSwitch = .hold
    }

    // Which command waits for the contacts.
    let target: TransferSwitchPosition? =
      switch d.transferSwitch {
      case .toIsland: .island
      case .toUtility: .utility
      case .hold: nil
      }
    if let target, s.transferSwitch != target {
      if sequence.awaitingPosition != target {
        sequence.awaitingPosition = target
        sequence.awaitingSince = s.time
      }
    } else {
      sequence.awaitingPosition = nil
    }
    var stuck = false
    if let waiting = sequence.awaitingPosition, s.time - sequence.awaitingSince >= settings.transferConfirmSeconds {
      stuck = true
      if waiting == .utility {
        sequence.retransferRetryAt = s.time + settings.transferRetrySeconds
        sequence.awaitingPosition = nil
        d.transferSwitch = .hold
      }
    }
    if s.transferSwitch == .utility { sequence.retransferRetryAt = nil }
    // Off the utility, nothing runs until the switch confirms it is open; closing back,
    // nothing runs until it confirms it is closed (the filter insists; this keeps the
    // proposal honest so the logs show no correction).
    let moving =
      (grid.state != .connected && s.transferSwitch != .island)
      || (d.transferSwitch == .toUtility && s.transferSwitch != .utility)
    if moving {
      d.setpointsKW = Array(repeating: 0, count: site.chargers.count)
      d.gridFormingCharger = nil
    }

    // Load groups: all shed at the transfer, back one at a time while the vehicles can
    // carry them, the last one shed again when they no longer can.
    if grid.state == .islanded && s.transferSwitch == .island && d.gridFormingCharger != nil {
      let capacity = islandCapacityKW(s, hours: settings.loadRestoreHours)
      let filter = safety
      let load = { (groups: Int) in filter.islandLoadKW(s, restoredGroups: groups) }
      if sequence.restoredGroups > 0 && capacity < load(sequence.restoredGroups) - 1e-6 {
        sequence.restoredGroups -= 1
        sequence.restoredChangedAt = s.time
      } else if sequence.restoredGroups < site.sheddableLoads.count,
        s.time - sequence.restoredChangedAt >= settings.loadRestoreStepSeconds,
        capacity >= load(sequence.restoredGroups + 1) + 1e-6
      {
        sequence.restoredGroups += 1
        sequence.restoredChangedAt = s.time
      }
    } else if grid.state != .reconnecting || s.transferSwitch != .island {
      // Connected: the relays are closed anyway. Dark or moving: nothing to restore onto.
      // (Waiting to re-close, the island keeps what it carries.)
      if sequence.restoredGroups != 0 || grid.state == .connected { sequence.restoredChangedAt = s.time }
      sequence.restoredGroups = 0
    }
    d.restoredLoadGroups = d.shedNonCriticalLoads ? sequence.restoredGroups : 0

    d.phase = phase(s, d, stuck: stuck)
  }

  private func phase(_ s: Snapshot, _ d: Decisions, stuck: Bool) -> OutagePhase {
    if stuck || (sequence.retransferRetryAt != nil && s.transferSwitch != .utility) { return .transferStuck }
    switch grid.state {
    case .connected:
      switch enterService.stage(
        at: s.time, availableSince: grid.utilityBackSince, restartedAt: sequence.emergencyStopReleasedAt,
        reclosedAt: sequence.reclosedAt)
      {
      case .waiting: return .enterServiceWait
      case .ramping: return .rampingUp
      case .full: return .normal
      }
    case .islanded:
      return s.transferSwitch == .island ? .islanded : .transferring
    case .reconnecting:
      return d.transferSwitch == .toUtility ? .retransferring : .enterServiceWait
    case .blackout:
      return .blackout
    }
  }

  /// How much the vehicles could give the island, sustained for `hours`: each vehicle's
  /// discharge limited by its rating and by the energy it may spend over that time.
  private func islandCapacityKW(_ s: Snapshot, hours: Double) -> Double {
    let stayAway = s.time + settings.outageAssumedRemainingSeconds
    var long = s
    long.periodSeconds = max(s.periodSeconds, hours * 3600)
    return envelopes(long, floor: { _ in 0 }, noChargeUntil: stayAway).reduce(0) { $0 + $1.1.maxDischargeKW }
  }

  // MARK: - Safe state

  /// Stale inputs: no discharge, only the charging that departures require.
  private func safeState(_ s: Snapshot) -> Decisions {
    var setpoints = Array(repeating: 0.0, count: site.chargers.count)
    for (i, env) in envelopes(s, floor: { $0.reserveFloorKWh }) {
      setpoints[i] = env.mustChargeKW
    }
    return Decisions(setpointsKW: setpoints, mode: .safe, demandTargetKW: demandTarget(s))
  }

  // MARK: - On the grid

  /// Envelopes of every online charger with a vehicle, with the planner's margins.
  private func envelopes(
    _ s: Snapshot, floor: (PluggedVehicle) -> Double, noChargeUntil: Double? = nil
  ) -> [(Int, VehicleEnvelope)] {
    var result: [(Int, VehicleEnvelope)] = []
    result.reserveCapacity(site.chargers.count)
    for i in site.chargers.indices where i < s.chargers.count {
      guard s.chargers[i].online, let v = s.chargers[i].vehicle else { continue }
      result.append(
        (
          i,
          VehicleEnvelope(
            vehicle: v, charger: site.chargers[i], time: s.time, periodSeconds: s.periodSeconds,
            margins: planMargins, floorKWh: v.dischargeHeld ? max(floor(v), v.energyKWh) : floor(v),
            noChargeUntil: noChargeUntil)
        ))
    }
    return result
  }

  /// The demand the controller tries to hold this month, kW. The month's peak so far is
  /// already paid for. In the month's first week that peak says little yet (a month can
  /// open on a quiet weekend), so the target does not go below a share of last week's
  /// highest building interval: holding an artificially low target would drain the
  /// vehicles and end in the very peak it tried to avoid. Where the rolling plan shows the
  /// vehicles can hold less than that over the coming hours, its peak (with a margin for
  /// forecast error) is the floor instead. The plan never raises the target above the
  /// month's peak: that would only spend headroom the month may not need.
  public func demandTarget(_ s: Snapshot, plan: PeakPlanner.Plan? = nil) -> Double {
    // Staff set it on a panel: theirs to choose (the safety filter still protects every
    // departure and the service limits).
    if let operatorTarget = s.operatorDemandTargetKW { return max(0, operatorTarget) }
    guard (s.meter.periodDay ?? s.localTime.date.day) <= 7 else { return s.meter.monthPeakKW }
    var floor = settings.initialTargetFraction * loadHistory.peakKW
    if let plan { floor = min(floor, plan.peakKW * (1 + settings.planMarginFraction)) }
    return max(s.meter.monthPeakKW, floor)
  }

  private mutating func dispatchOnGrid(_ s: Snapshot, mayDischarge: Bool) -> Decisions {
    let n = site.chargers.count
    let h = s.periodSeconds / 3600
    let building = max(0, s.buildingDemandKW)
    let activeEvent = s.events.first { $0.isActive(at: s.time) }
    let upcoming = s.events.filter { $0.startTime > s.time && $0.notifyTime <= s.time }
      .min { $0.startTime < $1.startTime }

    let planned = replanIfNeeded(s, upcoming: upcoming)
    let target = demandTarget(s, plan: planned)
    let envs = envelopes(s, floor: { $0.reserveFloorKWh })
    // What each vehicle should hold above its departure need: the outage reserve, and the
    // energy the plan will ask of it for shaving; nothing once it is giving back before
    // it leaves.
    var aboveNeed = outageReserve(s, building: building)
    if let planned, let chargers = currentPlan?.chargers {
      for (j, i) in chargers.enumerated() { aboveNeed[i] += planned.shavingKWh[j] }
    }
    for i in aboveNeed.indices where aboveNeed[i] > 0 {
      if let v = s.chargers[i].vehicle, isReleasing(v, charger: site.chargers[i], time: s.time) { aboveNeed[i] = 0 }
    }
    var setpoints = Array(repeating: 0.0, count: n)
    // Outside events every vehicle charges at least at its pace: a need spread over the
    // stay adds a little to the peak, a need left to the last moment adds a charger's
    // full power. In an event only what departures strictly require.
    let needy = envs.reduce(0) { $0 + ($1.1.paceKW > 0 ? 1 : 0) }
    for (i, env) in envs {
      guard activeEvent == nil, env.paceKW > env.mustChargeKW, let v = s.chargers[i].vehicle else {
        setpoints[i] = env.mustChargeKW
        continue
      }
      setpoints[i] = max(
        env.mustChargeKW,
        pace(v, charger: site.chargers[i], env: env, time: s.time, target: target, sharedBy: needy))
    }
    // Energy for an announced event is paced like a departure need, to be in the battery
    // when the event starts (what the valleys before it will not cover, spread evenly), but
    // only at a share of that pace: the hours before a summer event are often the month's
    // peak, and the rest must come from headroom.
    let withoutEventPace = setpoints
    if activeEvent == nil, settings.eventPaceShare > 0, let e = upcoming {
      for (i, env) in envs {
        guard let v = s.chargers[i].vehicle, v.departureTime > e.startTime else { continue }
        let goal = chargeGoal(v, charger: site.chargers[i], upcoming: e)
        // A battery as good as at its goal is left alone (a trickle would also keep it
        // from shaving).
        guard goal - v.energyKWh > 0.01 * v.batteryKWh else { continue }
        let p = pace(
          v, charger: site.chargers[i], env: env, time: s.time, target: target, sharedBy: envs.count,
          goal: (goal, e.startTime))
        setpoints[i] = max(setpoints[i], p * settings.eventPaceShare)
      }
    }
    // Charging committed before any headroom is handed out: musts and paces.
    let committedTotal = setpoints.reduce(0, +)

    // The import the rest of this demand interval may average and still end it at target.
    let L = site.demandIntervalSeconds
    let remaining = max(s.periodSeconds, L - s.meter.intervalElapsedSeconds)
    let allowedImport = max(0, (target * L / 3600 - s.meter.intervalImportKWh) / (remaining / 3600))
    var mode = OperatingMode.gridConnected

    if activeEvent != nil && mayDischarge {
      // Deliver: every vehicle gives what it can spare, within the event export limit.
      mode = .demandResponse
      var room = building + committedTotal + site.eventExportLimitKW
      for (i, env) in envs.sorted(by: { $0.1.maxDischargeKW > $1.1.maxDischargeKW })
      where env.mustChargeKW == 0 {
        let p = min(env.maxDischargeKW, room)
        setpoints[i] = -p
        room -= p
      }
    } else {
      var headroom = allowedImport - building - committedTotal
      if headroom >= 0 {
        // Charge toward each vehicle's goal inside the headroom, most urgent first.
        var wants: [(index: Int, kw: Double, urgency: Double)] = []
        for (i, env) in envs {
          guard let v = s.chargers[i].vehicle else { continue }
          let goal = chargeGoal(v, charger: site.chargers[i], upcoming: upcoming, aboveNeedKWh: aboveNeed[i])
          let wantKW = min(env.maxChargeKW, max(0, (goal - v.energyKWh) / (site.chargers[i].efficiency * h)))
          let extra = wantKW - setpoints[i]  // on top of its must or pace
          if extra > 1e-9 {
            wants.append((i, extra, v.departureTime))
          }
        }
        wants.sort { $0.urgency < $1.urgency }
        for want in wants where headroom > 0 {
          let p = min(want.kw, headroom)
          setpoints[want.index] += p
          headroom -= p
        }
      } else if mayDischarge && !s.dischargePaused {
        // Shave: discharge what vehicles can spare to bring the interval back to target,
        // never exporting. Energy below a vehicle's departure need is lent only as far as
        // a gentle recharge can put it back: a deep loan must be repaid at full power
        // before the vehicle leaves, at a time that may well make the next peak.
        let donors = envs.filter { env in
          guard withoutEventPace[env.0] == 0, env.1.surplusDischargeKW > 0, let v = s.chargers[env.0].vehicle
          else { return false }
          // Energy promised to an announced event is kept for it. (Shaving with it
          // instead was measured: better for a school whose buses sit full all summer,
          // worse wherever the event energy is hard to come by.)
          if let e = upcoming, v.departureTime > e.startTime {
            return v.energyKWh > chargeGoal(v, charger: site.chargers[env.0], upcoming: e)
          }
          return true
        }
        // A donor being pre-charged for an event gives that up while it shaves.
        let donorsPace = donors.reduce(0) { $0 + setpoints[$1.0] }
        let deficit = min(-headroom - donorsPace, building + committedTotal - donorsPace + site.exportLimitKW)
        let available = donors.reduce(0) { $0 + $1.1.surplusDischargeKW }
        for (i, _) in donors { setpoints[i] = 0 }
        if available > 0, deficit > 0 {
          let share = min(1, deficit / available)
          for (i, env) in donors {
            setpoints[i] = -env.surplusDischargeKW * share
          }
        }
      }
    }
    if mayDischarge && !s.dischargePaused && activeEvent == nil {
      releaseBeforeDeparture(s, envs: envs, upcoming: upcoming, setpoints: &setpoints)
    }
    return Decisions(setpointsKW: setpoints, mode: mode, demandTargetKW: target)
  }

  // MARK: - Plan

  /// The plan for this step: made anew when a demand interval starts, a vehicle arrives or
  /// leaves, or an event is announced; nil until a week of load history allows a forecast
  /// or when no peak the vehicles can hold was found.
  private mutating func replanIfNeeded(_ s: Snapshot, upcoming: DemandResponseEvent?) -> PeakPlanner.Plan? {
    guard let interval = loadHistory.currentInterval, loadHistory.forecast(intervalsAhead: 1) != nil else {
      return nil
    }
    let key = PlanKey(
      interval: interval, vehicles: s.chargers.map { $0.online ? $0.vehicle?.vehicleID : nil }, event: upcoming?.id)
    if let current = currentPlan, current.key == key {
      return current.plan.feasible ? current.plan : nil
    }
    let L = site.demandIntervalSeconds
    let horizon = max(1, Int(settings.planHorizonHours * 3600 / L))
    let load = [max(0, s.buildingDemandKW)] + forecastLoad(interval: interval).prefix(horizon - 1)
    let intervalStart = Double(interval) * L
    // One session as the planner sees it, on the interval grid from the current interval.
    func planned(
      _ c: ChargerSpec, energy: Double, need: Double, floor: Double, battery: Double, departure: Double,
      arrival: Double? = nil
    ) -> PeakPlanner.Vehicle {
      // The plan has the need in the battery by the margin before departure or, if earlier,
      // by the time from which the ride-through rule would charge at full rate anyway.
      let due = (planMargins.needReadyBy(departure: departure, reclosingSeconds: 0) - intervalStart) / L
      return PeakPlanner.Vehicle(
        energyKWh: energy, needKWh: need, floorKWh: floor, capacityKWh: battery * 0.95,
        departureInterval: max(1, Int(due.rounded(.down))),
        arrivalInterval: arrival.map { Int((($0 - intervalStart) / L).rounded(.up)) } ?? 0,
        maxChargeKW: c.maxChargeKW * settings.plannedChargeRateFraction, maxDischargeKW: c.maxDischargeKW,
        efficiency: c.efficiency)
    }
    var vehicles: [PeakPlanner.Vehicle] = []
    var chargers: [Int] = []
    for i in site.chargers.indices where i < s.chargers.count && s.chargers[i].online {
      guard let v = s.chargers[i].vehicle else { continue }
      let c = site.chargers[i]
      vehicles.append(
        planned(
          c, energy: v.energyKWh, need: chargeGoal(v, charger: c, upcoming: upcoming), floor: v.reserveFloorKWh,
          battery: v.batteryKWh, departure: v.departureTime))
      chargers.append(i)
    }
    // Vehicles expected on chargers that will be free by then, from last week's sessions.
    // They come after the plugged ones: the plan's shaving is read for those only.
    let horizonEnd = intervalStart + Double(load.count) * L
    for next in sessionHistory.expected(from: s.time, until: horizonEnd) where next.charger < site.chargers.count {
      let reading = next.charger < s.chargers.count ? s.chargers[next.charger] : ChargerReading(online: false)
      guard reading.online, (reading.vehicle?.departureTime ?? 0) <= next.arrival else { continue }
      vehicles.append(
        planned(
          site.chargers[next.charger], energy: next.arrivalEnergyKWh, need: next.needKWh, floor: next.floorKWh,
          battery: next.batteryKWh, departure: next.departure, arrival: next.arrival))
    }
    let plan = planner.plan(loadKW: load, vehicles: vehicles, ceilingKW: site.importLimitKW)
    currentPlan = (key, plan, chargers)
    replannedLastStep = true
    return plan.feasible ? plan : nil
  }

  /// Energy each vehicle should hold above its departure need so that the building can
  /// carry its critical load for `outageReserveHours` if the utility fails now, kWh by
  /// charger. Outages come unannounced, so the reserve is held all the time, on vehicles
  /// that stay a while: first at grid-forming chargers (no island without one), then the
  /// others, longest stays first. None when no vehicle at a grid-forming charger stays.
  func outageReserve(_ s: Snapshot, building: Double) -> [Double] {
    var reserve = Array(repeating: 0.0, count: site.chargers.count)
    var holders: [(index: Int, vehicle: PluggedVehicle)] = []
    for i in site.chargers.indices where i < s.chargers.count && s.chargers[i].online {
      guard let v = s.chargers[i].vehicle, site.chargers[i].maxDischargeKW > 0,
        !isReleasing(v, charger: site.chargers[i], time: s.time)
      else { continue }
      holders.append((i, v))
    }
    guard holders.contains(where: { site.chargers[$0.index].gridForming }) else { return reserve }
    holders.sort {
      let (a, b) = (site.chargers[$0.index].gridForming, site.chargers[$1.index].gridForming)
      return a != b ? a : $0.vehicle.departureTime > $1.vehicle.departureTime
    }
    var remaining = building * site.criticalLoadFraction * settings.outageReserveHours
    for (i, v) in holders where remaining > 0 {
      // What a vehicle can hold above its need, and give at its charger's rate.
      let room = max(0, v.batteryKWh * 0.95 - max(v.departureNeedKWh, v.reserveFloorKWh))
      let r = min(room, remaining)
      reserve[i] = r
      remaining -= r
    }
    return reserve
  }

  /// Whether a vehicle is near enough its departure to give back what it holds above its
  /// need: from the time that takes at its charger's full discharge power, plus
  /// `reserveReleaseHours` to do it gently, before it is due.
  private func isReleasing(_ v: PluggedVehicle, charger c: ChargerSpec, time: Double) -> Bool {
    let extra = max(0, v.energyKWh - max(v.departureNeedKWh, v.reserveFloorKWh))
    let fullPowerHours = c.maxDischargeKW > 0 ? extra * c.efficiency / c.maxDischargeKW : 0
    let due = v.departureTime - settings.departureMarginSeconds
    return due - time <= (settings.reserveReleaseHours + fullPowerHours) * 3600
  }

  /// In the last `reserveReleaseHours` of a stay, energy above the departure need (outage
  /// reserve, event pre-charge not used) goes back to the building at a steady pace
  /// instead of leaving with the vehicle, where it would be paid for and lost to the site.
  private func releaseBeforeDeparture(
    _ s: Snapshot, envs: [(Int, VehicleEnvelope)], upcoming: DemandResponseEvent?, setpoints: inout [Double]
  ) {
    let h = s.periodSeconds / 3600
    var room = max(0, s.buildingDemandKW) + setpoints.reduce(0, +) + site.exportLimitKW
    for (i, env) in envs where setpoints[i] == 0 && room > 0 {
      guard let v = s.chargers[i].vehicle, isReleasing(v, charger: site.chargers[i], time: s.time) else { continue }
      if let e = upcoming, v.departureTime > e.startTime { continue }
      let hours = max(h, (v.departureTime - settings.departureMarginSeconds - s.time) / 3600)
      let extra = v.energyKWh - max(v.departureNeedKWh, v.reserveFloorKWh)
      guard extra > 0 else { continue }
      let p = min(env.maxDischargeKW, extra * site.chargers[i].efficiency / hours, room)
      setpoints[i] = -p
      room -= p
    }
  }

  /// How fast a vehicle should charge now, whatever the headroom: the need that last
  /// week's load says the valleys before its departure will not cover (its share of
  /// them), spread evenly over its stay. A need left to the last moment would be charged
  /// at full power, and likely on a peak; spread, it adds a little.
  private mutating func pace(
    _ v: PluggedVehicle, charger: ChargerSpec, env: VehicleEnvelope, time: Double, target: Double, sharedBy: Int,
    goal: (kwh: Double, by: Double)? = nil
  ) -> Double {
    let deadline = goal?.by ?? env.paceDeadline
    let hours = (deadline - time) / 3600
    guard hours > 0 else { return goal == nil ? env.paceKW : 0 }
    let valleyKWh = forecastHeadroomKWh(until: deadline, from: time, target: target) / Double(max(1, sharedBy))
    let expected = min(valleyKWh * settings.valleyConfidence, charger.maxChargeKW * hours) * charger.efficiency
    let uncovered = (goal?.kwh ?? v.departureNeedKWh) - v.energyKWh - expected
    return min(env.maxChargeKW, max(0, uncovered / (charger.efficiency * hours)))
  }

  private mutating func forecastLoad(interval: Int) -> [Double] {
    if forecastCache.interval != interval {
      forecastCache = (
        interval,
        loadHistory.forecastSeries(
          count: loadHistory.weekIntervals - 1, correctionHours: settings.forecastCorrectionHours)
      )
    }
    return forecastCache.loadKW
  }

  /// Energy that fits under `target` from now until `end`, by the load forecast, kWh.
  /// Kept per interval and target: it changes only when either does.
  private mutating func forecastHeadroomKWh(until end: Double, from time: Double, target: Double) -> Double {
    guard let current = loadHistory.currentInterval else { return 0 }
    let L = site.demandIntervalSeconds
    if headroomCache.interval != current || headroomCache.target != target {
      var prefix = [0.0]
      prefix.reserveCapacity(loadHistory.weekIntervals)
      var sum = 0.0
      for load in forecastLoad(interval: current) {
        sum += max(0, target - load) * L / 3600
        prefix.append(sum)
      }
      headroomCache = (current, target, prefix)
    }
    let ahead = Int(((end / L).rounded(.down))) - current
    guard ahead >= 1, headroomCache.prefix.count > 1 else { return 0 }
    return headroomCache.prefix[min(ahead, headroomCache.prefix.count - 1)]
  }

  /// The energy a vehicle should hold: its departure need plus `aboveNeedKWh` (outage
  /// reserve, planned shaving) and, before an announced event it will be present for,
  /// enough on top to discharge through the event; never more than the battery.
  private func chargeGoal(
    _ v: PluggedVehicle, charger: ChargerSpec, upcoming: DemandResponseEvent?, aboveNeedKWh: Double = 0
  ) -> Double {
    var goal = v.departureNeedKWh + aboveNeedKWh
    if let e = upcoming, v.departureTime > e.startTime {
      let eventHours = min(settings.eventPrechargeHours, (e.endTime - e.startTime) / 3600)
      let forEvent = charger.maxDischargeKW * eventHours / charger.efficiency
      goal = max(goal, v.reserveFloorKWh) + forEvent
    }
    return min(goal, v.batteryKWh)
  }

  // MARK: - Island

  /// How the vehicles would carry the critical load if the building were an island now.
  struct IslandPlan {
    var formingCharger: Int?
    var setpointsKW: [Double]
  }

  private func islandPlan(_ s: Snapshot, restoredGroups: Int) -> IslandPlan {
    var setpoints = Array(repeating: 0.0, count: site.chargers.count)
    // How deep each vehicle may go for critical load: below its reserve, but never below
    // what its departure needs if the utility stays away a good while longer.
    let stayAway = s.time + settings.outageAssumedRemainingSeconds
    let envs = envelopes(s, floor: { _ in 0 }, noChargeUntil: stayAway)
    var forming: Int?
    var formingKW = 0.0
    var available = 0.0
    for (i, env) in envs where env.maxDischargeKW > 0 {
      available += env.maxDischargeKW
      if site.chargers[i].gridForming && env.maxDischargeKW > formingKW {
        forming = i
        formingKW = env.maxDischargeKW
      }
    }
    guard let formingIndex = forming else { return IslandPlan(formingCharger: nil, setpointsKW: setpoints) }
    let critical = safety.islandLoadKW(s, restoredGroups: restoredGroups)
    // Followers share the load in proportion to what they can give; the grid-forming charger
    // follows the rest up to its own ceiling.
    let share = available > 0 ? min(1, critical / available) : 0
    for (i, env) in envs where i != formingIndex {
      setpoints[i] = -env.maxDischargeKW * share
    }
    setpoints[formingIndex] = -formingKW
    return IslandPlan(formingCharger: formingIndex, setpointsKW: setpoints)
  }
}
