import Control
import Foundation
import Logging
import SiteModel
import Store
import Synchronization

/// A command from a panel: one of staff's instructions to the controller, or an alarm
/// acknowledgement (which is the appliance's business, not the controller's).
public enum PanelCommand: Sendable, Hashable {
  case control(OperatorCommand)
  case acknowledgeAlarm(String)
  /// The utility's own reading of the billing period's peak, when it differs from ours.
  case setPeriodPeak(kW: Double)
  /// Staff opt out of an event the utility's VTN sent (OpenADR), or back in.
  case optOutEvent(id: String, reason: String?)
  case optInEvent(id: String)

  public var name: String {
    switch self {
    case .control(let c): c.name
    case .acknowledgeAlarm: "acknowledge_alarm"
    case .setPeriodPeak: "set_period_peak"
    case .optOutEvent: "opt_out_event"
    case .optInEvent: "opt_in_event"
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
    /// The outbox and the upload (nil: the appliance keeps no records).
    public var records: RecordsView?
    /// The OpenADR VEN's link and events (nil: no VEN).
    public var openADR: OpenADRView?
    /// The billing period's figures so far (nil: none reckoned yet).
    public var period: PeriodFigures.View?
  }

  /// What panels see of the VEN: its link with the VTN and the events it sent.
  public struct OpenADRView: Sendable {
    public var link: String
    public var venID: String?
    public var vtnID: String?
    public var lastContact: Date?
    public var lastError: String?
    public var events: [Event]

    public struct Event: Sendable {
      public var id: String
      public var modificationNumber: Int
      public var status: String
      public var start: Date
      public var end: Date
      public var opt: String
      public var reason: String?
      public var asks: String
      public var requestedKW: Double?
      public var testEvent: Bool
    }

    public init(
      link: String, venID: String?, vtnID: String?, lastContact: Date?, lastError: String?, events: [Event]
    ) {
      self.link = link
      self.venID = venID
      self.vtnID = vtnID
      self.lastContact = lastContact
      self.lastError = lastError
      self.events = events
    }
  }

  /// An event the VTN sent, as the controller follows it: on the wall clock (UTC seconds).
  public struct UtilityEvent: Sendable, Hashable {
    public var id: String
    public var notifyUTC: Double
    public var startUTC: Double
    public var endUTC: Double
    public init(id: String, notifyUTC: Double, startUTC: Double, endUTC: Double) {
      self.id = id
      self.notifyUTC = notifyUTC
      self.startUTC = startUTC
      self.endUTC = endUTC
    }
  }

  /// How staff's opt-outs reach the VEN: (event id, opt out with this reason, or nil
  /// to opt back in, by whom) → the outcome.
  public typealias OpenADROpt = @Sendable (_ id: String, _ optOut: String?, _ by: String) -> OperatorOverrides.Outcome

  private struct Inner {
    var overrides = OperatorOverrides()
    var alarms = AlarmBoard()
    var last: StepRecord?
    var commandsHandled = 0
    var siteIOFailing = false
    var records: RecordsView?
    var openADR: OpenADRView?
    var utilityEvents: [UtilityEvent] = []
    var period: PeriodFigures.View?
  }

  public let site: SiteDescription
  public let meters: MeterInputs?
  private let inner = Mutex(Inner())
  private let logger: Logger

  public let enterServiceDelaySeconds: Double
  /// Alarms and panel commands become records through it (nil: no store).
  public let recorder: Recorder?
  /// Where staff's instructions are kept across restarts (nil: in memory only).
  public let state: SiteState?
  /// The field site's demand meter, for `set_period_peak` (nil: a simulated plant).
  private let periodPeak = Mutex<(@Sendable (Double) -> OperatorOverrides.Outcome)?>(nil)
  /// The OpenADR VEN, for `opt_out_event` and `opt_in_event` (nil: no VEN).
  private let openADROpt = Mutex<OpenADROpt?>(nil)

  public init(
    site: SiteDescription, meters: MeterInputs?, enterServiceDelaySeconds: Double = 300, recorder: Recorder? = nil,
    state: SiteState? = nil, logger: Logger
  ) {
    self.recorder = recorder
    self.site = site
    self.enterServiceDelaySeconds = enterServiceDelaySeconds
    self.meters = meters
    self.logger = logger
    self.state = state
    if let saved = state?.loadOverrides() {
      var overrides = saved
      let dropped = overrides.restoredAfterRestart()
      inner.withLock { $0.overrides = overrides }
      logger.notice(
        "staff's instructions restored",
        metadata: [
          "demand_target_kw": "\(overrides.demandTargetKW.map { "\($0)" } ?? "auto")",
          "held": "\(overrides.heldVehicles.sorted())", "v2x_paused": "\(overrides.dischargePaused)",
          "events": "\(overrides.events.keys.sorted())",
        ])
      for note in dropped {
        logger.warning("\(note)")
        recorder?.event("instruction_dropped", at: Date(), [("reason", RecordJSON.string(note))])
      }
      if !dropped.isEmpty { state?.saveOverrides(overrides) }
    }
    state?.onWriteProblem { [weak self] problem in
      self?.setAlarm("state-store", .critical, problem ?? "", active: problem != nil)
    }
    if let aside = state?.movedAside {
      inner.withLock { s in
        _ = s.alarms.raise("state-store-replaced", .warning, "state store replaced: \(aside)", at: Date())
      }
    }
  }

  /// Connects `set_period_peak` to the field site's demand meter.
  public func connectPeriodPeak(_ set: @escaping @Sendable (Double) -> OperatorOverrides.Outcome) {
    periodPeak.withLock { $0 = set }
  }

  /// Connects `opt_out_event` and `opt_in_event` to the VEN.
  public func connectOpenADR(_ opt: @escaping OpenADROpt) {
    openADROpt.withLock { $0 = opt }
  }

  /// The VEN's events the site follows now (replacing the ones it gave before), and what
  /// panels show of it.
  public func updateOpenADR(events: [UtilityEvent], view: OpenADRView) {
    inner.withLock {
      $0.utilityEvents = events
      $0.openADR = view
    }
  }

  public var view: View {
    inner.withLock {
      View(
        overrides: $0.overrides, alarms: $0.alarms.listed, last: $0.last, commandsHandled: $0.commandsHandled,
        records: $0.records, openADR: $0.openADR, period: $0.period)
    }
  }

  /// Whether the last step's site I/O failed (cleared by the next step that goes through).
  public var siteIOFailing: Bool { inner.withLock { $0.siteIOFailing } }

  // MARK: - Control loop side

  public func overlay(_ snapshot: inout Snapshot) {
    let (overrides, utility) = inner.withLock { ($0.overrides, $0.utilityEvents) }
    overrides.overlay(&snapshot)
    Self.overlay(utility, on: &snapshot)
  }

  /// The VTN's events join the same list as the ones staff announce, converted from the
  /// wall clock onto the snapshot's timeline; nothing starts by a clock not known right.
  static func overlay(_ events: [UtilityEvent], on s: inout Snapshot) {
    guard !events.isEmpty, let utc = s.utcSeconds, !s.wallClockUnsynchronized else { return }
    for e in events.sorted(by: { $0.startUTC < $1.startUTC }) where !s.events.contains(where: { $0.id == e.id }) {
      s.events.append(
        DemandResponseEvent(
          id: e.id, notifyTime: s.time + min(0, e.notifyUTC - utc), startTime: s.time + (e.startUTC - utc),
          endTime: s.time + (e.endUTC - utc)))
    }
  }

  public func observe(_ step: StepRecord) {
    let statuses = meters?.statuses() ?? []
    let (notes, changes, changed) = inner.withLock { s -> ([String], [AlarmChange], OperatorOverrides?) in
      s.last = step
      let before = s.overrides
      let notes = s.overrides.observe(step.snapshot, step.decisions)
      let changed = s.overrides != before ? s.overrides : nil
      var changes: [AlarmChange] = []
      for m in statuses {
        let what =
          m.ageSeconds.map { "no reading for \(Int($0)) s" } ?? "no usable reading since the appliance started"
        changes += Self.set(
          &s, "meter-\(m.id)-stale", .critical, "meter \(m.id): \(what) (\(m.topic)); safe state: no discharge",
          active: m.alarming, at: step.wallTime)
      }
      changes += Self.set(
        &s, "blackout", .critical, "utility lost and no vehicle can carry the building",
        active: step.decisions.mode == .blackout, at: step.wallTime)
      changes += Self.set(
        &s, "transfer-switch-stuck", .critical,
        "the transfer switch did not confirm the commanded transfer; chargers off while it is between sources",
        active: step.decisions.phase == .transferStuck, at: step.wallTime)
      changes += Self.set(
        &s, "emergency-stop", .critical, "emergency stop pressed: every charger off, the switch left where it is",
        active: step.snapshot.emergencyStop, at: step.wallTime)
      if s.siteIOFailing {
        s.siteIOFailing = false
        changes += Self.set(&s, "site-io", .critical, "", active: false, at: step.wallTime)
      }
      if changed != nil { changes += noteUnkept(&s, at: step.wallTime) }
      return (notes, changes, changed)
    }
    if let changed { state?.saveOverrides(changed) }
    for note in notes { logger.notice("\(note)") }
    report(changes)
  }

  /// An alarm went up or down.
  struct AlarmChange {
    var id: String
    var severity: Alarm.Severity
    var message: String
    var raised: Bool
    var at: Date
  }

  private static func set(
    _ s: inout Inner, _ id: String, _ severity: Alarm.Severity, _ message: String, active: Bool, at now: Date,
    latches: Bool = true
  ) -> [AlarmChange] {
    if active {
      return s.alarms.raise(id, severity, message, at: now, latches: latches)
        ? [AlarmChange(id: id, severity: severity, message: message, raised: true, at: now)] : []
    }
    return s.alarms.clear(id) ? [AlarmChange(id: id, severity: severity, message: message, raised: false, at: now)] : []
  }

  private func report(_ changes: [AlarmChange]) {
    for c in changes {
      logger.notice("alarm \(c.id) \(c.raised ? "raised" : "cleared")")
      recorder?.event(
        c.raised ? "alarm_raised" : "alarm_cleared", at: c.at,
        [("id", RecordJSON.string(c.id))]
          + (c.raised
            ? [("severity", RecordJSON.string(c.severity.rawValue)), ("message", RecordJSON.string(c.message))] : []))
    }
  }

  /// Raises (active) or clears an alarm that the appliance's own parts keep: the store,
  /// the upload. Raising an active alarm again updates its message; clearing a cleared one
  /// does nothing.
  public func setAlarm(_ id: String, _ severity: Alarm.Severity, _ message: String, active: Bool, at now: Date = Date())
  {
    let changes = inner.withLock { s in Self.set(&s, id, severity, message, active: active, at: now) }
    report(changes)
  }

  /// The billing period's figures so far, for panels.
  public func updatePeriodFigures(_ view: PeriodFigures.View) {
    inner.withLock { $0.period = view }
  }

  /// The outbox's and the upload's state, for panels.
  public func updateRecords(_ view: RecordsView) {
    inner.withLock { $0.records = view }
  }

  /// The loop could not read or drive the site this step.
  public func siteIOFailed(_ error: any Error) {
    // Panels see the alarm with the next state: the panel compares the state every 250 ms.
    let changes = inner.withLock { s in
      s.siteIOFailing = true
      return Self.set(&s, "site-io", .critical, "site I/O failing: \(error)", active: true, at: Date())
    }
    report(changes)
  }

  // MARK: - Panel side

  /// Checks and carries out a command; the outcome is what the panel is told.
  public func execute(_ command: PanelCommand, by user: String) -> OperatorOverrides.Outcome {
    switch command {
    case .optOutEvent(let id, let reason): return openADR(id, optOut: reason ?? "no reason given", by: user)
    case .optInEvent(let id): return openADR(id, optOut: nil, by: user)
    case .control(.cancelEvent(let id)) where isUtilityEvent(id):
      inner.withLock { $0.commandsHandled += 1 }
      return .refused("event \(id) came from the utility's VTN (OpenADR); opt out of it with opt_out_event")
    default: break
    }
    if case .setPeriodPeak(let kW) = command {
      inner.withLock { $0.commandsHandled += 1 }
      guard let set = periodPeak.withLock({ $0 }) else {
        return .refused("the period's peak is the simulated plant's; it cannot be set")
      }
      return set(kW)
    }
    var changed: OperatorOverrides?
    var changes: [AlarmChange] = []
    let outcome = inner.withLock { s -> OperatorOverrides.Outcome in
      s.commandsHandled += 1
      defer { if changed != nil { changes = noteUnkept(&s, at: Date()) } }
      switch command {
      case .setPeriodPeak, .optOutEvent, .optInEvent: return .refused("unreachable")
      case .control(let c):
        let before = s.overrides
        let outcome = s.overrides.apply(
          c, by: user, site: site, snapshot: s.last?.snapshot, mode: s.last?.decisions.mode,
          utilityStable: s.last?.utilityStable ?? false, enterServiceDelaySeconds: enterServiceDelaySeconds)
        if s.overrides != before { changed = s.overrides }
        return outcome
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
    // Kept before the reply goes out: an instruction staff saw applied survives a power cut.
    if let changed { state?.saveOverrides(changed) }
    report(changes)
    if state == nil, changed != nil, case .applied(let text) = outcome, !changed!.standingInstructions.isEmpty {
      return .applied(text + " (kept in memory only: a restart drops it)")
    }
    return outcome
  }

  private func openADR(_ id: String, optOut: String?, by user: String) -> OperatorOverrides.Outcome {
    inner.withLock { $0.commandsHandled += 1 }
    guard let opt = openADROpt.withLock({ $0 }) else {
      return .refused(
        "the appliance has no OpenADR VEN (no openadr: section); events staff announce are cancelled with cancel_event")
    }
    return opt(id, optOut, user)
  }

  private func isUtilityEvent(_ id: String) -> Bool {
    inner.withLock { s in
      s.overrides.events[id] == nil
        && (s.openADR?.events.contains { $0.id == id } ?? false || s.utilityEvents.contains { $0.id == id })
    }
  }

  // MARK: - Instructions nothing keeps

  /// Without a state store, staff's instructions live in memory only: while any is in force
  /// an alarm says what a restart would drop (it does not latch: it is a standing
  /// condition, not a fault, and ends when the instructions do).
  private func noteUnkept(_ s: inout Inner, at now: Date) -> [AlarmChange] {
    guard state == nil else { return [] }
    let standing = s.overrides.standingInstructions
    return Self.set(
      &s, "instructions-not-kept", .warning,
      "staff's instructions are kept in memory only (no state store): a restart drops "
        + standing.joined(separator: "; "),
      active: !standing.isEmpty, at: now, latches: false)
  }

  /// The appliance is stopping. Instructions that nothing keeps are dropped loudly: a
  /// warning and a record each, so the next shift can see why a held vehicle discharged.
  public func applianceStopping() {
    guard state == nil else { return }
    let standing = inner.withLock { $0.overrides.standingInstructions }
    let now = Date()
    for instruction in standing {
      logger.warning("stopping with no state store: staff's instruction dropped: \(instruction)")
      recorder?.event(
        "instruction_dropped", at: now,
        [("reason", RecordJSON.string("the appliance stopped with no state store to keep it: \(instruction)"))])
    }
  }
}
