import SiteModel

/// Where the building stands with respect to the utility, and the transfer-switch and
/// load-shed commands that go with it.
///
///     connected ──utility lost──► islanded (a grid-forming charger has a vehicle)
///         ▲                  └──► blackout (none has): dark, switch left on the utility
///         │                           │ utility back: reconnect, DER held for the delay
///         │                           ▼
///         └──stable for the delay── reconnecting ◄──utility back── islanded
///                                      │ utility lost again: back to islanded
///
/// A planned island test (`Snapshot.islandTestRequested`) takes a connected building with a
/// stable utility to `islanded` too, and back through `reconnecting` when it ends.
public struct GridStateMachine: Sendable, Hashable {
  public enum State: String, Sendable, Hashable {
    case connected, islanded, reconnecting, blackout
  }

  public private(set) var state: State = .connected
  /// When the utility came back this time (controller's own view; the safety filter keeps
  /// another).
  public private(set) var utilityBackSince: Double?

  public init() {}

  /// The utility has been available for at least `delay` seconds.
  public func utilityStable(at time: Double, delay: Double) -> Bool {
    utilityBackSince.map { time - $0 >= delay } ?? false
  }

  public struct Output: Sendable, Hashable {
    public var transferSwitch: TransferSwitchCommand
    public var shed: Bool
    public var mode: OperatingMode
  }

  /// Advances the state on this snapshot. `canIsland` says whether a grid-forming charger
  /// has a vehicle with energy to give.
  public mutating func step(_ s: Snapshot, canIsland: Bool, enterServiceDelay: Double) -> Output {
    if s.utilityAvailable {
      if utilityBackSince == nil { utilityBackSince = s.time }
    } else {
      utilityBackSince = nil
    }
    let stable = utilityBackSince.map { s.time - $0 >= enterServiceDelay } ?? false

    switch state {
    case .connected:
      if !s.utilityAvailable {
        state = canIsland ? .islanded : .blackout
      } else if s.islandTestRequested && canIsland && stable {
        // A planned island test: the same island as in an outage, with the utility there.
        state = .islanded
      }
    case .islanded:
      if s.utilityAvailable {
        // Back to the utility when it returns, or when a test ends (or can no longer carry
        // the critical load). A test with the utility there never goes dark.
        if !s.islandTestRequested || !canIsland { state = .reconnecting }
      } else if !canIsland {
        state = .blackout
      }
    case .reconnecting:
      if !s.utilityAvailable {
        state = canIsland ? .islanded : .blackout
      } else if s.transferSwitch == .utility {
        state = .connected
      }
    case .blackout:
      if s.utilityAvailable {
        // The building was never islanded: if the switch is on the utility the loads come
        // back with it (chargers stay off until the filter's enter-service delay passes);
        // otherwise wait out the delay and re-close.
        state = s.transferSwitch == .utility ? .connected : .reconnecting
      } else if canIsland {
        state = .islanded
      }
    }

    switch state {
    case .connected:
      return Output(
        transferSwitch: s.transferSwitch == .utility ? .hold : .toUtility, shed: false,
        mode: .gridConnected)
    case .islanded:
      return Output(transferSwitch: .toIsland, shed: true, mode: .islanded)
    case .reconnecting:
      return Output(transferSwitch: stable ? .toUtility : .hold, shed: true, mode: .reconnecting)
    case .blackout:
      // Nothing can carry the building; leave the switch where it is so the loads return
      // with the utility, and shed so they come back in steps.
      return Output(transferSwitch: .hold, shed: true, mode: .blackout)
    }
  }
}
