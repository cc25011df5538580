import Control
import Foundation
import SiteModel

/// Something that adds to what the controller sees: meters, staff's instructions.
public protocol SnapshotOverlay: Sendable {
  func overlay(_ snapshot: inout Snapshot)
}

/// Something that follows every control step: panels, alarms, records.
public protocol StepObserver: Sendable {
  /// Called on the control loop; return quickly.
  func observe(_ step: StepRecord)
}

/// One control step as it happened.
public struct StepRecord: Sendable {
  /// What the controller saw (with every overlay).
  public var snapshot: Snapshot
  /// What the controller proposed, before the safety filter.
  public var proposal: Decisions
  /// What was carried out: the proposal after the safety filter.
  public var decisions: Decisions
  public var applied: AppliedStep
  public var wallTime: Date
  /// The controller's view: the utility has been there for the enter-service delay.
  public var utilityStable: Bool
  /// Counts steps, so that an older step is never published after a newer one.
  public var sequence: Int
  /// What the forecasts have learnt: closed load intervals and sessions remembered.
  public var historyLoadIntervals = 0
  public var historySessions = 0

  public init(
    snapshot: Snapshot, proposal: Decisions, decisions: Decisions, applied: AppliedStep, wallTime: Date,
    utilityStable: Bool, sequence: Int
  ) {
    self.snapshot = snapshot
    self.proposal = proposal
    self.decisions = decisions
    self.applied = applied
    self.wallTime = wallTime
    self.utilityStable = utilityStable
    self.sequence = sequence
  }
}

/// Something that carries out part of each step's decisions on wired outputs (the transfer
/// switch, the shed relays), before the chargers get their setpoints.
public protocol DecisionActuator: Sendable {
  /// Called on the control loop right after the controller decided; return quickly.
  func actuate(_ decisions: Decisions, _ snapshot: Snapshot)
}

/// Something the control loop tells that it is alive (the systemd watchdog): after every
/// pass, whether its step went through or not, and once when it begins to stop. Called on
/// the loop; return quickly and never block.
public protocol LoopHeartbeat: Sendable {
  func loopPassed(stepWentThrough: Bool)
  func loopStopping()
}
