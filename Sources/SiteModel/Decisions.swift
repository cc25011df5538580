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
public enum OperatingMode: String, Sendable, Hashable, Codable {
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
  /// The charger that forms the island, by index.
  public var gridFormingCharger: Int?
  public var mode: OperatingMode
  /// The peak the controller aims to hold this interval, kW (for panels and logs).
  public var demandTargetKW: Double
  /// What the safety filter changed, one line each. Empty when it let everything pass.
  public var safetyInterventions: [String]

  public init(
    setpointsKW: [Double], transferSwitch: TransferSwitchCommand = .hold,
    shedNonCriticalLoads: Bool = false, gridFormingCharger: Int? = nil,
    mode: OperatingMode = .gridConnected, demandTargetKW: Double = 0,
    safetyInterventions: [String] = []
  ) {
    self.setpointsKW = setpointsKW
    self.transferSwitch = transferSwitch
    self.shedNonCriticalLoads = shedNonCriticalLoads
    self.gridFormingCharger = gridFormingCharger
    self.mode = mode
    self.demandTargetKW = demandTargetKW
    self.safetyInterventions = safetyInterventions
  }

  public static func idle(chargers: Int) -> Decisions {
    Decisions(setpointsKW: Array(repeating: 0, count: chargers))
  }
}
