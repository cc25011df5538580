/// What the controller tells the transfer switch to do.
public enum TransferSwitchCommand: String, Sendable, Hashable, Codable {
  /// Leave it where it is.
  case hold
  /// Open from the utility: the building becomes an island (or goes dark).
  case toIsland
  /// Close back to the utility. The safety filter allows it only after the utility has
  /// been stable for the enter-service delay.
  case toUtility
}

/// The controller's operating mode, for logs, panels and records.
public enum OperatingMode: String, Sendable, Hashable, Codable, CaseIterable {
  /// On the grid, shaving the demand peak and charging for departures.
  case gridConnected = "grid-connected"
  /// On the grid, delivering a demand-response event.
  case demandResponse = "demand-response"
  /// The utility is gone and the building runs on its vehicles.
  case islanded
  /// The utility is gone and no grid-forming charger has a vehicle: the building is dark.
  case blackout
  /// The utility is back; the building waits out the enter-service delay on its island.
  case reconnecting
  /// Inputs are stale: no discharge, only the charging departures require.
  case safe
  /// The emergency stop is pressed: every charger off, the transfer switch left alone.
  case emergencyStop = "emergency-stop"
}

/// Where the outage sequence stands, finer than the mode: what the logs, events and
/// panels show while the building leaves the utility and comes back.
///
///     normal ─loss─► transferring ─switch confirms─► islanded ─utility back─► enter-service-wait
///                        │ no confirmation in time            (loads restored     │ stable for the delay
///                        ▼                                     step by step)      ▼
///                  transfer-stuck                              normal ◄─ramp─ retransferring
public enum OutagePhase: String, Sendable, Hashable, Codable {
  /// On the utility, in full service.
  case normal
  /// The utility is lost (or a test began): export stopped, transfer to island commanded,
  /// the switch has not confirmed yet.
  case transferring
  /// The switch is open and the island runs on a grid-forming charger.
  case islanded
  /// The utility is lost and nothing can carry the building.
  case blackout
  /// The switch did not confirm a commanded transfer in time.
  case transferStuck = "transfer-stuck"
  /// The utility is present and in range; the enter-service delay is running.
  case enterServiceWait = "enter-service-wait"
  /// The delay has passed; transfer back to the utility commanded, not yet confirmed.
  case retransferring
  /// Back on the utility; discharge ramps up over the enter-service ramp.
  case rampingUp = "ramping-up"
  /// The emergency stop is pressed.
  case emergencyStop = "emergency-stop"
}

/// The decisions of one control step.
public struct Decisions: Sendable, Hashable {
  /// kW per charger, in the order of `SiteDescription.chargers`: + charge, - discharge.
  /// On the island, a grid-forming charger's value is the most it may discharge: it
  /// follows the load itself.
  public var setpointsKW: [Double]
  public var transferSwitch: TransferSwitchCommand
  /// Open the non-critical load relays.
  public var shedNonCriticalLoads: Bool
  /// While shedding: how many of the site's shed groups (in restore order) are back on.
  public var restoredLoadGroups: Int
  /// Where the outage sequence stands.
  public var phase: OutagePhase
  /// The charger that forms the island, by index.
  public var gridFormingCharger: Int?
  public var mode: OperatingMode
  /// The peak the controller aims to hold this interval, kW (for panels and logs).
  public var demandTargetKW: Double
  /// What the safety filter changed, one line each. Empty when it let everything pass.
  public var safetyInterventions: [String]

  public init(
    setpointsKW: [Double], transferSwitch: TransferSwitchCommand = .hold,
    shedNonCriticalLoads: Bool = false, restoredLoadGroups: Int = 0, phase: OutagePhase = .normal,
    gridFormingCharger: Int? = nil,
    mode: OperatingMode = .gridConnected, demandTargetKW: Double = 0,
    safetyInterventions: [String] = []
  ) {
    self.setpointsKW = setpointsKW
    self.transferSwitch = transferSwitch
    self.shedNonCriticalLoads = shedNonCriticalLoads
    self.restoredLoadGroups = restoredLoadGroups
    self.phase = phase
    self.gridFormingCharger = gridFormingCharger
    self.mode = mode
    self.demandTargetKW = demandTargetKW
    self.safetyInterventions = safetyInterventions
  }

  public static func idle(chargers: Int) -> Decisions {
    Decisions(setpointsKW: Array(repeating: 0, count: chargers))
  }
}
