import Control
import Foundation
import Logging
import SiteModel
import Store
import Synchronization
import VEN

/// The OpenADR VEN inside the appliance (docs/openadr.md): it gives the VEN each step's
/// telemetry and the site's reasons not to deliver, and takes from it the events the
/// controller follows (into the same list as staff's), what panels show, the alarms and
/// the records; its state goes into the state store.
public final class OpenADRLink: StepObserver, VENHost {
  private let status: SiteStatus
  private let state: SiteState?
  private let recorder: Recorder?
  private let site: SiteDescription
  private let logger: Logger
  private let inner = Mutex(Inner())

  struct Inner {
    var ven: VEN?
    var last: StepRecord?
    var venState = VENState()
    var venStatus: VENStatus?
    var lastSaved: VENState?
    var lastSavedAt: Double = 0
  }

  /// Report progress alone (`sentThrough`) is kept at most this often: the SD card.
  static let reportProgressSaveSeconds = 60.0

  public init(status: SiteStatus, state: SiteState?, recorder: Recorder?, site: SiteDescription, logger: Logger) {
    self.status = status
    self.state = state
    self.recorder = recorder
    self.site = site
    self.logger = logger
  }

  /// What the state store kept of the VEN, if anything.
  public var restored: VENState? { state?.loadVEN() }

  /// Connects the VEN (made with this link as its host) and staff's opt commands.
  public func attach(_ ven: VEN) {
    inner.withLock { $0.ven = ven }
    status.connectOpenADR { id, optOut, user in
      let result = ven.staffOpt(
        eventID: id, optOut: optOut.map { EventBook.StaffOptOut(by: user, reason: $0) })
      switch result {
      case .success(let text): return .applied(text)
      case .failure(let error): return .refused(error.description)
      }
    }
  }

  // MARK: - StepObserver

  public func observe(_ step: StepRecord) {
    let ven = inner.withLock { s -> VEN? in
      s.last = step
      return s.ven
    }
    guard let ven, let utc = step.snapshot.utcSeconds else { return }
    ven.record(Self.sample(step, site: site, utc: utc))
  }

  static func sample(_ step: StepRecord, site: SiteDescription, utc: Double) -> TelemetryWindow.Sample {
    let s = step.snapshot
    // Net: what the vehicles give back less what others charge meanwhile (a car that must
    // charge through an event), the program's payment basis; never the discharge alone.
    let delivered = max(0, -step.applied.chargerKW.reduce(0) { $0 + ($1.isFinite ? $1 : 0) })
    let available = s.chargers.indices.reduce(0.0) { sum, i in
      guard i < site.chargers.count, s.chargers[i].online, let v = s.chargers[i].vehicle, !v.dischargeHeld,
        v.energyKWh > v.reserveFloorKWh + 0.5, !s.dischargePaused
      else { return sum }
      return sum + (s.chargers[i].maxDischargeKW ?? site.chargers[i].maxDischargeKW)
    }
    return TelemetryWindow.Sample(
      utc: utc, gridImportKW: s.meter.gridImportKW ?? step.applied.gridKW, deliveredKW: delivered,
      availableDischargeKW: available)
  }

  // MARK: - VENHost

  public func reasonNotToDeliver(_ entry: EventBook.Entry, now: Double) -> String? {
    let (last, overrides) = (inner.withLock { $0.last }, status.view.overrides)
    guard let last else { return nil }
    return Self.reasonNotToDeliver(entry, step: last, overrides: overrides, site: site, now: now)
  }

  /// Pure: why the site cannot deliver in an event, judged from the latest step.
  static func reasonNotToDeliver(
    _ entry: EventBook.Entry, step: StepRecord, overrides: OperatorOverrides, site: SiteDescription, now: Double
  ) -> String? {
    let s = step.snapshot
    switch step.decisions.mode {
    case .islanded, .blackout:
      return "the site is islanded (utility outage): nothing can go back to the grid"
    default: break
    }
    if overrides.dischargePaused || s.dischargePaused { return "staff have paused V2X" }
    guard let utc = s.utcSeconds else { return "the site's clock is not synchronized" }
    // A vehicle with energy to spare that is plugged in and stays past the event's start.
    let start = s.time + (entry.siteStart - utc)
    let spare = s.chargers.indices.contains { i in
      guard i < site.chargers.count, site.chargers[i].maxDischargeKW > 0, s.chargers[i].online,
        let v = s.chargers[i].vehicle, !v.dischargeHeld
      else { return false }
      return v.departureTime > start && v.energyKWh > v.reserveFloorKWh + 1
    }
    if !spare {
      return "no vehicle with energy to spare is plugged in to stay past the event's start"
    }
    return nil
  }

  public func stateChanged(_ venState: VENState) {
    let now = Date().timeIntervalSince1970
    let save = inner.withLock { s -> Bool in
      s.venState = venState
      var progressOnly = venState
      var saved = s.lastSaved
      for i in progressOnly.reports.indices { progressOnly.reports[i].sentThrough = 0 }
      if saved != nil { for i in saved!.reports.indices { saved!.reports[i].sentThrough = 0 } }
      guard s.lastSaved != venState else { return false }
      if progressOnly == saved && now - s.lastSavedAt < Self.reportProgressSaveSeconds { return false }
      s.lastSaved = venState
      s.lastSavedAt = now
      return true
    }
    if save { state?.saveVEN(venState) }
    publish()
  }

  public func statusChanged(_ venStatus: VENStatus) {
    inner.withLock { $0.venStatus = venStatus }
    publish()
  }

  /// The events the controller follows and what panels see, from the VEN's latest word.
  private func publish() {
    let (venState, venStatus) = inner.withLock { ($0.venState, $0.venStatus) }
    let now = Date().timeIntervalSince1970
    let deliveries = venState.book.deliveries(at: now)
    let counts = Dictionary(grouping: deliveries, by: { $0.entry.eventID }).mapValues(\.count)
    let events = deliveries.map { d in
      SiteStatus.UtilityEvent(
        id: (counts[d.entry.eventID] ?? 1) > 1 ? "\(d.entry.eventID)-\(d.index + 1)" : d.entry.eventID,
        notifyUTC: d.entry.firstReceivedAt, startUTC: d.window.start, endUTC: d.window.end)
    }
    let view = SiteStatus.OpenADRView(
      link: venStatus?.link.rawValue ?? "starting", venID: venStatus?.venID ?? venState.registration?.venID,
      vtnID: venStatus?.vtnID ?? venState.registration?.vtnID,
      lastContact: venStatus?.lastContact.map { Date(timeIntervalSince1970: $0) }, lastError: venStatus?.lastError,
      events: venState.book.entries.values.sorted { $0.siteStart < $1.siteStart }.map { e in
        SiteStatus.OpenADRView.Event(
          id: e.eventID, modificationNumber: e.modificationNumber, status: e.status(at: now),
          start: Date(timeIntervalSince1970: e.siteStart), end: Date(timeIntervalSince1970: e.siteEnd),
          opt: e.opt.rawValue, reason: e.optReason, asks: e.windows.map(\.asked).joined(separator: "; "),
          requestedKW: e.windows.compactMap(\.requestedKW).max(), testEvent: e.testEvent)
      })
    status.updateOpenADR(events: events, view: view)
  }

  public func alarm(_ id: String, _ message: String, active: Bool) {
    status.setAlarm(id, id == "openadr-silent" ? .warning : .critical, message, active: active)
  }

  public func record(_ kind: String, _ fields: [(String, String)]) {
    recorder?.event(kind, at: Date(), fields.map { ($0.0, RecordJSON.string($0.1)) })
  }
}

/// The VEN's loop waits on the same primitive as the control loop.
extension StepTrigger: VENWakeUp {}
