/// IEEE 1547-2018 enter service: after the utility comes back (or the appliance starts, or
/// an emergency stop is released), no export for the delay, then discharge rises linearly
/// from nothing to full over the ramp. The controller plans with it and the safety filter
/// enforces it, each from its own view of the utility.
public struct EnterService: Sendable, Hashable {
  public var delaySeconds: Double
  public var rampSeconds: Double

  public init(delaySeconds: Double, rampSeconds: Double) {
    self.delaySeconds = delaySeconds
    self.rampSeconds = rampSeconds
  }

  /// The share of each charger's discharge rating allowed onto the grid at `time`.
  /// - Parameters:
  ///   - availableSince: when the utility came back (nil: it is not there).
  ///   - restartedAt: a later restart of service (the release of an emergency stop): the
  ///     delay runs again from then.
  ///   - reclosedAt: when the transfer switch last closed back onto the utility (after an
  ///     outage's delay, or an island test): the ramp runs again from then.
  public func dischargeShare(
    at time: Double, availableSince: Double?, restartedAt: Double?, reclosedAt: Double? = nil
  ) -> Double {
    guard let since = availableSince else { return 0 }
    let start = max(max(since, restartedAt ?? since) + delaySeconds, reclosedAt ?? -.infinity)
    guard time >= start else { return 0 }
    guard rampSeconds > 0 else { return 1 }
    return min(1, (time - start) / rampSeconds)
  }

  /// Where entering service stands: still waiting out the delay, ramping (including the
  /// first instant of the ramp, when the share is still 0), or in full service.
  public enum Stage: Sendable, Hashable {
    case waiting, ramping, full
  }

  public func stage(
    at time: Double, availableSince: Double?, restartedAt: Double?, reclosedAt: Double? = nil
  ) -> Stage {
    guard let since = availableSince, time >= max(since, restartedAt ?? since) + delaySeconds else { return .waiting }
    let share = dischargeShare(at: time, availableSince: since, restartedAt: restartedAt, reclosedAt: reclosedAt)
    return share < 1 ? .ramping : .full
  }

}
