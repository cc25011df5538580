import SiteModel

/// The last word on every decision, separate from the planning that produced it. It knows
/// nothing of money; it enforces the rules that keep people, equipment and routes safe:
///
/// - charger ratings, battery room, and no setpoint for an empty or offline charger;
/// - never a departure made impossible: discharge only what still leaves time to recharge
///   (on the island: time after the outage has lasted the assumed while longer), and at
///   least the charging a departure physically requires;
/// - the service import limit, and the export limit (the event limit during an event);
/// - never export into a dead grid: no discharge while the utility is gone and the building
///   is not islanded, nor for the enter-service delay after the utility returns;
/// - never close back to the utility before it has been stable for the enter-service delay;
/// - on the island, no charging, and only as much discharge as the critical load;
/// - stale inputs: no discharge, only the charging departures require;
/// - a vehicle staff hold never discharges, on the grid or on the island;
/// - after the enter-service delay, discharge onto the grid ramps up (IEEE 1547);
/// - no charger runs on the island until the switch confirms it is open;
/// - a utility contact that has just dropped stops discharge at once, before its debounce;
/// - emergency stop: every charger off, no grid-forming, the switch left where it is.
public struct SafetyFilter: Sendable {
  public var site: SiteDescription
  public var enterServiceDelaySeconds: Double
  /// On the island, a vehicle may discharge only down to what it could still recharge to
  /// its departure need if the utility came back this much later.
  public var outageAssumedRemainingSeconds: Double
  public var enterService: EnterService

  /// What the filter remembers between steps: its own view of the utility, kept apart from
  /// the controller's so a planning bug cannot talk it into reclosing early.
  public struct Memory: Sendable, Hashable {
    public var utilityAvailableSince: Double?
    /// When the last emergency stop was released: service starts over from then.
    public var emergencyStopReleasedAt: Double?
    public var emergencyStopActive = false
    /// When the switch last closed back onto the utility (the ramp starts over).
    public var reclosedAt: Double?
    public var lastPosition: TransferSwitchPosition?
    public init() {}
  }

  public init(
    site: SiteDescription, enterServiceDelaySeconds: Double, outageAssumedRemainingSeconds: Double,
    enterServiceRampSeconds: Double = 0
  ) {
    self.site = site
    self.enterServiceDelaySeconds = enterServiceDelaySeconds
    self.outageAssumedRemainingSeconds = outageAssumedRemainingSeconds
    self.enterService = EnterService(delaySeconds: enterServiceDelaySeconds, rampSeconds: enterServiceRampSeconds)
  }

  /// Tolerance for comparing powers, kW.
  static let epsilon = 1e-6

  public func filter(_ proposed: Decisions, _ s: Snapshot, memory: inout Memory) -> Decisions {
    var d = proposed
    var notes: [String] = []
    func note(_ text: @autoclosure () -> String) { notes.append(text()) }

    // The utility's own stability clock.
    if s.utilityAvailable {
      if memory.utilityAvailableSince == nil { memory.utilityAvailableSince = s.time }
    } else {
      memory.utilityAvailableSince = nil
    }
    let utilityStable =
      memory.utilityAvailableSince.map { s.time - $0 >= enterServiceDelaySeconds } ?? false
    if memory.emergencyStopActive && !s.emergencyStop { memory.emergencyStopReleasedAt = s.time }
    memory.emergencyStopActive = s.emergencyStop
    if s.transferSwitch == .utility, let last = memory.lastPosition, last != .utility { memory.reclosedAt = s.time }
    memory.lastPosition = s.transferSwitch

    // Shape: one setpoint per charger.
    let n = site.chargers.count
    if d.setpointsKW.count != n {
      note("setpoint list had \(d.setpointsKW.count) entries for \(n) chargers; padded or cut")
      d.setpointsKW = (0..<n).map { $0 < d.setpointsKW.count ? d.setpointsKW[$0] : 0 }
    }

    // Re-closing to the utility.
    if d.transferSwitch == .toUtility && !(s.utilityAvailable && utilityStable && !s.utilityLossPending) {
      note(
        s.utilityLossPending
          ? "refused to close to the utility: its contact has just dropped"
          : "refused to close to the utility: not yet stable for \(Int(enterServiceDelaySeconds)) s")
      d.transferSwitch = .hold
    }
    if d.gridFormingCharger.map({ $0 < 0 || $0 >= n || !site.chargers[$0].gridForming }) == true {
      note("charger \(d.gridFormingCharger!) cannot form an island; none chosen")
      d.gridFormingCharger = nil
    }

    // Emergency stop: nothing moves. Chargers off, no island formed, the switch left alone.
    if s.emergencyStop {
      if d.setpointsKW.contains(where: { abs($0) > Self.epsilon }) || d.gridFormingCharger != nil
        || d.transferSwitch != .hold
      {
        note("emergency stop: every charger off, switch held")
      }
      d.setpointsKW = Array(repeating: 0, count: n)
      d.gridFormingCharger = nil
      d.transferSwitch = .hold
      d.mode = .emergencyStop
      d.phase = .emergencyStop
      if !notes.isEmpty { d.safetyInterventions += notes }
      return d
    }

    // Only a switch that confirms it is open is an island: a grid-forming charger started
    // while the building is still tied to the utility (dead or alive) would energize it.
    // Until the contacts say so, hands off, even if a transfer was commanded this step.
    // Closing back onto the utility is neither: the island's setpoints (the grid-forming
    // charger's is a ceiling, not a flow) would become real discharge onto the grid the
    // moment the switch closes, and export. Hands off for the step.
    let closing = d.transferSwitch == .toUtility && s.transferSwitch != .utility
    let opening = d.transferSwitch == .toIsland && s.transferSwitch != .island
    let onIsland = !closing && s.transferSwitch == .island
    let onGrid = !closing && !opening && s.transferSwitch == .utility && s.utilityAvailable
    if !onIsland, let forming = d.gridFormingCharger {
      note("\(site.chargers[forming].id) may not form an island until the switch confirms it is open")
      d.gridFormingCharger = nil
    }
    let rampShare = enterService.dischargeShare(
      at: s.time, availableSince: memory.utilityAvailableSince, restartedAt: memory.emergencyStopReleasedAt,
      reclosedAt: memory.reclosedAt)
    let mayDischargeOnGrid =
      onGrid && utilityStable && s.inputsFresh && !s.dischargePaused && !s.utilityLossPending
    let eventActive = s.events.contains { $0.isActive(at: s.time) }

    // Per charger: ratings, battery, departure (physics, no margins).
    for i in 0..<n {
      let spec = site.chargers[i]
      let reading = i < s.chargers.count ? s.chargers[i] : ChargerReading(online: false)
      var p = d.setpointsKW[i]
      if !p.isFinite {
        note("\(spec.id): setpoint was not a number; set to 0")
        p = 0
      }
      guard reading.online, let v = reading.vehicle else {
        if abs(p) > Self.epsilon { note("\(spec.id): no vehicle or offline; setpoint \(kw(p)) set to 0") }
        d.setpointsKW[i] = 0
        continue
      }
      // On the island a vehicle may go below its reserve to carry critical load, but never
      // below what it could no longer recharge for its departure if the utility stayed
      // away the assumed time longer.
      let floor = onIsland ? 0 : v.reserveFloorKWh
      let env = VehicleEnvelope(
        vehicle: v, charger: spec, time: s.time, periodSeconds: s.periodSeconds,
        margins: .physical, floorKWh: floor,
        noChargeUntil: onIsland ? s.time + outageAssumedRemainingSeconds : nil)
      var lo = -env.maxDischargeKW
      var hi = env.maxChargeKW
      if onIsland {
        hi = 0  // nothing to charge from
      } else if !onGrid {
        lo = 0
        hi = 0  // dead grid, switch moving or contacts unknown: hands off
      } else if !mayDischargeOnGrid {
        lo = 0
      }
      if v.dischargeHeld && lo < 0 {
        lo = 0
      }
      if onGrid && lo < -spec.maxDischargeKW * rampShare {
        lo = -spec.maxDischargeKW * rampShare  // entering service: ramping up
      }
      let must = onGrid ? env.mustChargeKW : 0
      if p < lo - Self.epsilon {
        note("\(spec.id): discharge \(kw(-p)) cut to \(kw(-lo))\(v.dischargeHeld ? " (\(v.vehicleID) is held)" : "")")
        p = lo
      }
      if p > hi + Self.epsilon {
        note("\(spec.id): charge \(kw(p)) cut to \(kw(hi))")
        p = hi
      }
      if must > 0 && p < must - Self.epsilon {
        note("\(spec.id): raised to \(kw(must)) so \(v.vehicleID) still meets its departure")
        p = must
      }
      // Hands off means exactly off, not within rounding of it.
      d.setpointsKW[i] = onGrid || onIsland ? p : 0
    }

    if onGrid {
      // Import limit: the breaker wins over everything, so trim charging, largest first.
      let building = max(0, s.buildingDemandKW)
      var grid = building + d.setpointsKW.reduce(0, +)
      if grid > site.importLimitKW + Self.epsilon {
        note("import \(kw(grid)) above the \(kw(site.importLimitKW)) service limit; charging trimmed")
        var excess = grid - site.importLimitKW
        for i in d.setpointsKW.indices.sorted(by: { d.setpointsKW[$0] > d.setpointsKW[$1] })
        where excess > 0 && d.setpointsKW[i] > 0 {
          let cut = min(excess, d.setpointsKW[i])
          d.setpointsKW[i] -= cut
          excess -= cut
        }
        grid = building + d.setpointsKW.reduce(0, +)
      }
      // Export limit: trim discharge, largest first.
      let exportLimit = eventActive ? site.eventExportLimitKW : site.exportLimitKW
      if grid < -exportLimit - Self.epsilon {
        note("export \(kw(-grid)) above the \(kw(exportLimit)) export limit; discharge trimmed")
        var excess = -exportLimit - grid
        for i in d.setpointsKW.indices.sorted(by: { d.setpointsKW[$0] < d.setpointsKW[$1] })
        where excess > 0 && d.setpointsKW[i] < 0 {
          let cut = min(excess, -d.setpointsKW[i])
          d.setpointsKW[i] += cut
          excess -= cut
        }
      }
    } else if onIsland {
      // Discharge on the island never exceeds the critical load: there is nowhere else
      // for power to go. The grid-forming charger follows the load itself, so its value
      // is only a ceiling; the others share.
      let critical = islandLoadKW(s, restoredGroups: d.restoredLoadGroups)
      let followers = d.setpointsKW.indices.filter { $0 != d.gridFormingCharger }
      let followerDischarge = followers.reduce(0) { $0 - min(0, d.setpointsKW[$1]) }
      if followerDischarge > critical + Self.epsilon {
        note("island discharge \(kw(followerDischarge)) above the \(kw(critical)) critical load; scaled")
        let scale = critical / followerDischarge
        for i in followers where d.setpointsKW[i] < 0 { d.setpointsKW[i] *= scale }
      }
      if !d.shedNonCriticalLoads {
        note("on the island with non-critical loads connected; shedding them")
        d.shedNonCriticalLoads = true
      }
    }

    if !notes.isEmpty { d.safetyInterventions += notes }
    return d
  }

  /// What the island carries: the critical load and the shed groups restored so far, never
  /// more than the building draws.
  func islandLoadKW(_ s: Snapshot, restoredGroups: Int) -> Double {
    let building = max(0, s.buildingDemandKW)
    return min(building, building * site.criticalLoadFraction + site.restoredLoadKW(groups: restoredGroups))
  }
}

/// "12.3 kW", for messages.
func kw(_ v: Double) -> String {
  let tenths = Int((abs(v) * 10).rounded())
  return "\(v < 0 && tenths != 0 ? "-" : "")\(tenths / 10).\(tenths % 10) kW"
}
