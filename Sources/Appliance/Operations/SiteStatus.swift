import Control
import Foundation
import Logging
import SiteModel
import Synchronization

/// A command from a panel: one of staff's instructions to the controller, or an alarm
/// acknowledgement (which is the appliance's business, not the controller's).
public enum PanelCommand: Sendable, Hashable {
  case control(OperatorCommand)
  case acknowledgeAlarm(String)

  public var name: String {
    switch self {
    case .control(let c): c.name
    case .acknowledgeAlarm: "acknowledge_alarm"
    }
  }
}

/// What the appliance knows about itself between steps: staff's standing instructions, the
/// alarms, and the latest step. The control loop reads the instructions (as an overlay)
/// and reports each step (as an observer); panels read it and send it commands.
public final class SiteStatus: SnapshotOverlay, StepObserver {
  public struct View: Sendable {
    public var overrides: OperatorOverrides
    public var alarms: [Alarm]
    public var last: StepRecord?
    public var commandsHandled: Int
  }

  private struct Inner {
    var overrides = OperatorOverrides()
    var alarms = AlarmBoard()
    var last: StepRecord?
    var commandsHandled = 0
    var siteIOFailing = false
  }

  public let site: SiteDescription
  public let meters: MeterInputs?
  private let inner = Mutex(Inner())
  private let logger: Logger

  public let enterServiceDelaySeconds: Double

  public init(
    site: SiteDescription, meters: MeterInputs?, enterServiceDelaySeconds: Double = 300, logger: Logger
  ) {
    self.site = site
    self.enterServiceDelaySeconds = enterServiceDelaySeconds
    self.meters = meters
    self.logger = logger
  }

  public var view: View {
    inner.withLock {
      View(overrides: $0.overrides, alarms: $0.alarms.listed, last: $0.last, commandsHandled: $0.commandsHandled)
    }
  }

  // MARK: - Control loop side

  public func overlay(_ snapshot: inout Snapshot) {
    let overrides = inner.withLock { $0.overrides }
    overrides.overlay(&snapshot)
  }

  public func observe(_ step: StepRecord) {
    let statuses = meters?.statuses() ?? []
    let notes = inner.withLock { s -> [String] in
      s.last = step
      var notes = s.overrides.observe(step.snapshot, step.decisions)
      for m in statuses {
        let id = "meter-\(m.id)-stale"
        if m.stale {
          let what =
            m.ageSeconds.map { "no reading for \(Int($0)) s" } ?? "no usable reading since the appliance started"
          if s.alarms.raise(
            id, .critical, "meter \(m.id): \(what) (\(m.topic)); safe state: no discharge", at: step.wallTime)
          {
            notes.append("alarm \(id) raised")
          }
        } else if s.alarms.clear(id) {
          notes.append("alarm \(id) cleared")
        }
      }
      if step.decisions.mode == .blackout {
        if s.alarms.raise(
          "blackout", .critical, "utility lost and no vehicle can carry the building", at: step.wallTime)
        {
          notes.append("alarm blackout raised")
        }
      } else if s.alarms.clear("blackout") {
        notes.append("alarm blackout cleared")
      }
      if s.siteIOFailing {
        s.siteIOFailing = false
        if s.alarms.clear("site-io") { notes.append("alarm site-io cleared") }
      }
      return notes
    }
    for note in notes { logger.notice("\(note)") }
  }

  /// The loop could not read or drive the site this step.
  public func siteIOFailed(_ error: any Error) {
    // Panels see the alarm with the next state: the panel compares the state every 250 ms.
    inner.withLock { s in
      s.siteIOFailing = true
      s.alarms.raise("site-io", .critical, "site I/O failing: \(error)", at: Date())
    }
  }

  // MARK: - Panel side

  /// Checks and carries out a command; the outcome is what the panel is told.
  public func execute(_ command: PanelCommand, by user: String) -> OperatorOverrides.Outcome {
    let outcome = inner.withLock { s -> OperatorOverrides.Outcome in
      s.commandsHandled += 1
      switch command {
      case .control(let c):
        return s.overrides.apply(
          c, by: user, site: site, snapshot: s.last?.snapshot, mode: s.last?.decisions.mode,
          utilityStable: s.last?.utilityStable ?? false, enterServiceDelaySeconds: enterServiceDelaySeconds)
      case .acknowledgeAlarm("all"):
        let ids = s.alarms.listed.filter { $0.acknowledgedBy == nil }.map(\.id)
        for id in ids { _ = s.alarms.acknowledge(id, by: user) }
        return .applied(ids.isEmpty ? "no alarm to acknowledge" : "acknowledged \(ids.joined(separator: ", "))")
      case .acknowledgeAlarm(let id):
        switch s.alarms.acknowledge(id, by: user) {
        case .acknowledged: return .applied("alarm \(id) acknowledged")
        case .alreadyAcknowledged: return .applied("alarm \(id) was already acknowledged")
        case .unknown:
          let known = s.alarms.listed.map(\.id)
          return .refused(
            "no alarm \(id)" + (known.isEmpty ? " (there are none)" : " (listed: \(known.joined(separator: ", ")))"))
        }
      }
    }
    return outcome
  }
}
