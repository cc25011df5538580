import Foundation
import GPIO
import Logging
import SiteModel
import Synchronization

/// The field site's wired signals when they may not be there yet: a GPIO chip that is
/// missing, busy or not permitted at start does not stop the appliance. Until `FieldIO`
/// can be had, the site holds its safe state (no discharge: without the utility contact an
/// outage could not be seen, and the appliance must never export into a dead grid), raises
/// `gpio-unavailable` naming the line and the reason, and tries again every
/// `retrySeconds`.
public final class WiredSignals: SnapshotOverlay, DecisionActuator, Sendable {
  public typealias Make = @Sendable () throws(FieldError) -> FieldIO

  private let make: Make
  private let status: SiteStatus?
  private let logger: Logger
  private let retrySeconds: Double
  private let state = Mutex<(field: FieldIO?, lastTry: ContinuousClock.Instant?, failures: Int)>((nil, nil, 0))

  public init(retrySeconds: Double = 30, status: SiteStatus?, logger: Logger, make: @escaping Make) {
    self.make = make
    self.status = status
    self.logger = logger
    self.retrySeconds = retrySeconds
    _ = current()
  }

  /// The wired signals, once they could be had.
  public var field: FieldIO? { state.withLock { $0.field } }

  private func current() -> FieldIO? {
    let now = ContinuousClock.now
    let due = state.withLock { s -> Bool in
      guard s.field == nil else { return false }
      if let last = s.lastTry, now - last < .seconds(retrySeconds) { return false }
      s.lastTry = now
      return true
    }
    guard due else { return field }
    do {
      let field = try make()
      field.start()
      let failures = state.withLock { s -> Int in
        s.field = field
        return s.failures
      }
      if failures > 0 { logger.notice("GPIO available again", metadata: ["attempts": "\(failures + 1)"]) }
      status?.setAlarm("gpio-unavailable", .critical, "", active: false)
      return field
    } catch {
      let failures = state.withLock { s -> Int in
        s.failures += 1
        return s.failures
      }
      if failures == 1 || failures % 20 == 0 {
        logger.error(
          "GPIO \(error.key): \(error.error); safe state (no discharge), retrying every \(Int(retrySeconds)) s",
          metadata: ["attempts": "\(failures)"])
      }
      status?.setAlarm(
        "gpio-unavailable", .critical,
        "the wired signals cannot be had (\(error.key): \(error.error.detail)); no discharge without the utility contact",
        active: true)
      return nil
    }
  }

  public func overlay(_ s: inout Snapshot) {
    guard let field = current() else {
      s.inputsFresh = false
      return
    }
    field.overlay(&s)
  }

  public func actuate(_ decisions: Decisions, _ snapshot: Snapshot) {
    field?.actuate(decisions, snapshot)
  }

  public func pulseMeterKW() -> Double? { field?.pulseMeterKW() }

  public func stop() { field?.stop() }
}
