import Control
import Foundation
import SiteModel
import Synchronization

/// The billing period's figures as they stand, for panels: the peak so far with V2X and
/// without it, the demand charge saved so far, and the last event's delivery. Reckoned the
/// way `microgrid-edge report` reckons them from records (docs/reports.md): without V2X is
/// the building's load plus every vehicle charged on arrival at full rate until it holds its
/// need, nothing while the utility is away. Saved at every interval's end, so a restart
/// keeps the period's figures.
public final class PeriodFigures: StepObserver {
  /// What panels show.
  public struct View: Sendable, Hashable, Codable {
    /// The period's first day (local), `2026-07-01`.
    public var periodStart: String
    public var peakKW = 0.0
    public var peakWithoutV2XKW = 0.0
    public var demandChargeSaved: Double
    public var lastEvent: Event?

    public struct Event: Sendable, Hashable, Codable {
      public var id: String
      public var meanDeliveredKW: Double
      /// Still under way: the mean so far.
      public var active: Bool
    }
  }

  private struct Interval: Codable, Hashable {
    var key: Int
    var seconds = 0.0
    var grid = 0.0
    var withoutV2X = 0.0
  }
  private struct EventSums: Codable, Hashable {
    var id: String
    var seconds = 0.0
    var delivered = 0.0
  }
  /// What a restart keeps.
  private struct Saved: Codable, Hashable {
    var view: View
    var interval: Interval?
    var event: EventSums?
    /// Per charger: the vehicle and the energy it would hold had it charged on arrival.
    var unmanaged: [String: UnmanagedVehicle]
  }
  private struct UnmanagedVehicle: Codable, Hashable {
    var vehicleID: String
    var energyKWh: Double
  }

  static let stateKey = "period_figures"
  private let site: SiteDescription
  private let billingCycleDay: Int
  private let state: SiteState?
  private let publish: @Sendable (View) -> Void
  private let inner: Mutex<Saved?>

  public init(
    site: SiteDescription, billingCycleDay: Int, state: SiteState?, publish: @escaping @Sendable (View) -> Void
  ) {
    self.site = site
    self.billingCycleDay = billingCycleDay
    self.state = state
    self.publish = publish
    inner = Mutex(state?.load(Self.stateKey, as: Saved.self))
    if let saved = inner.withLock({ $0 }) { publish(saved.view) }
  }

  public var view: View? { inner.withLock { $0?.view } }

  public func observe(_ step: StepRecord) {
    let snap = step.snapshot
    guard let grid = PanelJSON.gridImport(step) else { return }  // nothing measured: nothing to add
    let (changed, save) = inner.withLock { s -> (View?, Saved?) in advance(&s, step, grid: grid, snap: snap) }
    if let save { state?.save(Self.stateKey, save) }
    if let changed { publish(changed) }
  }

  private func advance(_ s: inout Saved?, _ step: StepRecord, grid: Double, snap: Snapshot) -> (View?, Saved?) {
    let period = DemandMeter.billingPeriodStart(of: snap.localTime.date, cycleDay: billingCycleDay).description
    var changed = false
    var closed = false
    if s?.view.periodStart != period {
      changed = true  // a new period shows from its first step, at zero
      s = Saved(
        view: View(periodStart: period, demandChargeSaved: 0, lastEvent: s?.view.lastEvent), interval: nil,
        event: s?.event, unmanaged: s?.unmanaged ?? [:])
    }
    let h = snap.periodSeconds / 3600
    // Charge-on-arrival, step by step: what each plugged vehicle would draw now.
    var unmanagedKW = 0.0
    for (i, charger) in site.chargers.enumerated() {
      guard i < snap.chargers.count, let v = snap.chargers[i].vehicle else {
        s!.unmanaged[charger.id] = nil
        continue
      }
      if s!.unmanaged[charger.id]?.vehicleID != v.vehicleID {
        s!.unmanaged[charger.id] = UnmanagedVehicle(vehicleID: v.vehicleID, energyKWh: v.energyKWh)
      }
      let missing = v.departureNeedKWh - s!.unmanaged[charger.id]!.energyKWh
      guard snap.utilityAvailable, missing > 1e-9, h > 0 else { continue }
      let kW = min(charger.maxChargeKW, missing / (charger.efficiency * h))
      s!.unmanaged[charger.id]!.energyKWh += kW * charger.efficiency * h
      unmanagedKW += kW
    }
    let withoutV2X = (snap.utilityAvailable ? snap.buildingDemandKW : 0) + unmanagedKW

    let key = Int((snap.localTime.seconds / site.demandIntervalSeconds).rounded(.down))
    if let i = s!.interval, i.key != key, i.seconds > 0 {
      // The interval has ended: it may be the period's new peak, with or without V2X.
      let peak = max(s!.view.peakKW, i.grid / i.seconds)
      let without = max(s!.view.peakWithoutV2XKW, i.withoutV2X / i.seconds)
      s!.view.peakKW = peak
      s!.view.peakWithoutV2XKW = without
      s!.view.demandChargeSaved = site.tariff.demandChargePerKWMonth * (without - peak)
      s!.interval = nil
      changed = true
      closed = true
    }
    if s!.interval == nil { s!.interval = Interval(key: key) }
    s!.interval!.seconds += snap.periodSeconds
    s!.interval!.grid += grid * snap.periodSeconds
    s!.interval!.withoutV2X += withoutV2X * snap.periodSeconds

    // Demand-response events: the vehicles' mean net discharge over the window.
    let delivered = -step.applied.chargerKW.reduce(0) { $0 + ($1.isFinite ? $1 : 0) }
    if let e = snap.events.first(where: { $0.isActive(at: snap.time) }) {
      if s!.event?.id != e.id { s!.event = EventSums(id: e.id) }
      s!.event!.seconds += snap.periodSeconds
      s!.event!.delivered += delivered * snap.periodSeconds
      let mean = s!.event!.delivered / s!.event!.seconds
      let next = View.Event(id: e.id, meanDeliveredKW: (mean * 10).rounded() / 10, active: true)
      if s!.view.lastEvent != next {
        s!.view.lastEvent = next
        changed = true
      }
    } else if let e = s!.event {
      s!.view.lastEvent = View.Event(id: e.id, meanDeliveredKW: e.delivered / max(1e-9, e.seconds), active: false)
      s!.event = nil
      changed = true
      closed = true
    }
    // Saved when an interval or an event closes: at most every few minutes on the SD card.
    return (changed ? s!.view : nil, closed ? s : nil)
  }
}
