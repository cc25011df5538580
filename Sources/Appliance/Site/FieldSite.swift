import Control
import Foundation
import Logging
import SiteModel
import Synchronization

/// The building the appliance is wired to, as the control loop's `SiteIO`: every input of
/// the snapshot comes from the device drivers (meters, GPIO, chargers) and from the
/// appliance's own state; no scenario is read. Decisions are carried out by the drivers
/// themselves (the loop's actuators: the transfer switch and relays first, then the
/// chargers), so `apply` only reports what the meters saw.
///
/// Time: the snapshot's timeline is the monotonic clock, anchored at start so that it
/// reads as UTC then; the calendar is the wall clock in the site's time zone. Until the
/// wall clock is synchronized the site does no demand-interval bookkeeping, starts nothing
/// by wall time (`utcSeconds` is nil) and holds the safe state, with an alarm that says why.
public final class FieldSite: SiteIO {
  public struct Configuration: Sendable {
    public var timeZone: SiteTimeZone
    public var demandMeter: DemandMeter.Configuration
    /// A reading held longer than this (a stalled loop) counts as missing beyond it.
    public var maximumReadingGapSeconds: Double = 5
    /// The interval in progress is saved this often (and at each interval's end), seconds.
    public var saveEverySeconds: Double = 5

    public init(timeZone: SiteTimeZone, demandMeter: DemandMeter.Configuration) {
      self.timeZone = timeZone
      self.demandMeter = demandMeter
    }
  }

  /// The grid import now, from the configured source (see `GridImportSource`).
  public typealias GridImport = @Sendable (_ snapshot: Snapshot) -> GridImportReading

  public let site: SiteDescription
  public let configuration: Configuration
  private let clock: any SiteClock
  private let drivers: [any SnapshotOverlay]
  private let gridImport: GridImport
  private let state: SiteState?
  private let status: SiteStatus?
  private let logger: Logger
  private let inner: Mutex<Inner>

  struct Inner {
    var anchor: Double?
    var meter: DemandMeter
    var lastMonotonic: Double?
    var lastSaved: Double?
    /// The meter was taken back from the state store (or there was nothing to take).
    var restored = false
    var synchronized: Bool?
    var lastImport: GridImportReading?
    var lastChargerKW: [Double] = []
    var lastBuildingKW = 0.0
  }

  /// `drivers` fill the snapshot in order: the chargers first (the meters work out the
  /// building from what they draw), then the meters, then the wired signals.
  public init(
    site: SiteDescription, configuration: Configuration, clock: any SiteClock, drivers: [any SnapshotOverlay],
    gridImport: @escaping GridImport, state: SiteState?, status: SiteStatus?, logger: Logger
  ) {
    self.site = site
    self.configuration = configuration
    self.clock = clock
    self.drivers = drivers
    self.gridImport = gridImport
    self.state = state
    self.status = status
    self.logger = logger
    self.inner = Mutex(Inner(meter: DemandMeter(configuration: configuration.demandMeter)))
  }

  /// The demand meter as it stands, for panels and tests.
  public var demandMeter: DemandMeter { inner.withLock { $0.meter } }
  public var lastGridImport: GridImportReading? { inner.withLock { $0.lastImport } }

  /// Staff set the billing period's peak to the utility's own reading.
  public func setPeriodPeak(kW: Double) -> OperatorOverrides.Outcome {
    guard kW.isFinite, kW >= 0, kW <= site.importLimitKW * 2 else {
      return .refused("the peak must be a number from 0 to \(site.importLimitKW * 2) kW, not \(kW)")
    }
    let meter = inner.withLock { i -> DemandMeter? in
      guard i.restored else { return nil }
      i.meter.setPeriodPeak(kW: kW)
      return i.meter
    }
    guard let meter else {
      return .refused("the wall clock is not synchronized yet; the billing period is not known")
    }
    state?.saveDemandMeter(meter)
    return .applied("the billing period's peak is now \(kW) kW (the utility's reading)")
  }

  public func snapshot(periodSeconds: Double) async throws -> Snapshot {
    let now = clock.read()
    let zone = configuration.timeZone
    let (anchor, justSynchronized) = inner.withLock { i -> (Double, Bool?) in
      if i.anchor == nil { i.anchor = now.utc - now.monotonic }
      let changed = i.synchronized != now.synchronized ? now.synchronized : nil
      i.synchronized = now.synchronized
      return (i.anchor!, changed)
    }
    var s = Snapshot(
      time: now.monotonic + anchor, localTime: zone.localTime(atUTC: now.utc), periodSeconds: periodSeconds,
      buildingDemandKW: 0, chargers: site.chargers.map { _ in ChargerReading(online: false) })
    s.utcSeconds = now.synchronized ? now.utc : nil
    s.wallClockUnsynchronized = !now.synchronized
    for driver in drivers { driver.overlay(&s) }
    if let justSynchronized { clockChanged(synchronized: justSynchronized, now: now) }
    if !now.synchronized { s.inputsFresh = false }

    let reading = gridImport(s)
    // The meter's step under one lock: what closed, what to save (every few seconds and
    // at each interval's end), and what the controller is shown.
    let step = inner.withLock { i -> (closed: [DemandMeter.ClosedInterval], save: DemandMeter?, meter: DemandMeter) in
      defer {
        i.lastMonotonic = now.monotonic
        i.lastImport = reading
        i.lastBuildingKW = s.buildingDemandKW
        i.lastChargerKW = s.chargers.map(\.measuredKW)
      }
      guard now.synchronized else { return ([], nil, i.meter) }
      let localDate = { (utc: Double) in zone.localTime(atUTC: utc).date }
      var closed: [DemandMeter.ClosedInterval] = []
      if !i.restored {
        i.restored = true
        if let saved = state?.loadDemandMeter(configuration: configuration.demandMeter) {
          i.meter = saved
          // The time the appliance was down (up to a day) is missing from its intervals;
          // after longer, or on a clock that now reads earlier, the meter starts afresh
          // where the clock is, keeping the period's peak.
          if let last = saved.lastClock, now.utc > last, now.utc - last <= 86_400 {
            closed += i.meter.record(kW: nil, seconds: now.utc - last, endingAt: now.utc, localDate: localDate)
          }
        }
      }
      let seconds = i.lastMonotonic.map { max(0, now.monotonic - $0) } ?? 0
      let measured = min(seconds, configuration.maximumReadingGapSeconds)
      if seconds > measured {
        closed += i.meter.record(
          kW: nil, seconds: seconds - measured, endingAt: now.utc - measured, localDate: localDate)
      }
      closed += i.meter.record(kW: reading.kW, seconds: measured, endingAt: now.utc, localDate: localDate)
      let due = i.lastSaved.map { now.monotonic - $0 >= configuration.saveEverySeconds } ?? true
      if due || !closed.isEmpty { i.lastSaved = now.monotonic }
      return (closed, due || !closed.isEmpty ? i.meter : nil, i.meter)
    }
    if let meter = step.save {
      state?.saveDemandMeter(meter)
      for interval in step.closed { state?.appendDemandInterval(interval) }
    }
    for interval in step.closed { logInterval(interval) }
    if now.synchronized { s.meter = step.meter.reading(localDate: s.localTime.date) }
    s.meter.gridImportKW = reading.kW
    s.meter.gridImportSource = reading.source
    return s
  }

  public func apply(_ decisions: Decisions, periodSeconds: Double) async throws -> AppliedStep {
    inner.withLock { i in
      AppliedStep(gridKW: i.lastImport?.kW ?? .nan, servedKW: i.lastBuildingKW, chargerKW: i.lastChargerKW)
    }
  }

  private func clockChanged(synchronized: Bool, now: ClockReading) {
    status?.setAlarm(
      "clock-unsynchronized", .warning,
      "the system clock is not synchronized (no NTP yet; a Raspberry Pi has no real-time clock): no demand-interval bookkeeping and nothing started by wall time; vehicles charge for their departures only",
      active: !synchronized)
    if synchronized {
      logger.notice(
        "system clock synchronized", metadata: ["utc": "\(configuration.timeZone.isoText(atUTC: now.utc))"])
    } else {
      logger.warning("system clock not synchronized; safe state until it is")
    }
  }

  private func logInterval(_ interval: DemandMeter.ClosedInterval) {
    let zone = configuration.timeZone
    var meta: Logger.Metadata = [
      "start": "\(zone.isoText(atUTC: interval.start))", "mean_kw": "\((interval.meanKW * 10).rounded() / 10)",
      "measured_s": "\(Int(interval.measuredSeconds))",
    ]
    if interval.missingSeconds >= 1 { meta["missing_s"] = "\(Int(interval.missingSeconds))" }
    if let note = interval.note { meta["note"] = "\(note)" }
    if interval.missingSeconds >= 1 || !interval.countsTowardPeak {
      logger.warning("demand interval closed with missing meter data", metadata: meta)
    } else {
      logger.info("demand interval closed", metadata: meta)
    }
    status?.setAlarm(
      "demand-data-missing", .warning,
      "the demand interval from \(zone.isoText(atUTC: interval.start)) misses \(Int(interval.missingSeconds)) s of grid-import data\(interval.countsTowardPeak ? "" : "; not counted toward the period's peak")",
      active: interval.missingSeconds >= 60 || !interval.countsTowardPeak)
  }
}

/// The grid import at one instant, and where the figure came from.
public struct GridImportReading: Sendable, Hashable {
  /// kW (+ importing); nil: no source could say this step.
  public var kW: Double?
  /// `grid-meter <id>`, `pulse-meter`, `building-meters+chargers`, `island` or why none.
  public var source: String

  public init(kW: Double?, source: String) {
    self.kW = kW
    self.source = source
  }
}

/// Which figure is the site's grid import, when several could say it.
///
/// 1. A `grid_import` meter (over MQTT), while it is fresh: it measures the service itself.
/// 2. The utility meter's KYZ pulses (GPIO), while pulses come.
/// 3. Building meters plus what every charger driver measures, while all are fresh.
///
/// The first that is fresh wins; when the preferred one goes stale the next takes over
/// (so a meter gateway that drops out does not blind the demand meter while the chargers
/// and building meters still report), and when none can say, the step counts as missing
/// in the demand interval (never guessed). On the island, or with the utility gone, the
/// service carries nothing: import is 0.
public struct GridImportSource: Sendable {
  public var meters: MeterInputs?
  public var pulseMeterKW: (@Sendable () -> Double?)?
  /// Every charger driver's measured power, including chargers the controller does not
  /// rely on (their draw still passes the meter).
  public var chargersKW: (@Sendable () -> Double)?

  public init(
    meters: MeterInputs?, pulseMeterKW: (@Sendable () -> Double?)?, chargersKW: (@Sendable () -> Double)?
  ) {
    self.meters = meters
    self.pulseMeterKW = pulseMeterKW
    self.chargersKW = chargersKW
  }

  /// The sources a configuration has, in the order they are tried (for check-config and
  /// the start-up log); empty: the demand meter can see nothing.
  public static func order(meters: [MeterSpec], pulseMeter: Bool) -> [String] {
    var sources: [String] = []
    if let grid = meters.first(where: { $0.role == .gridImport }) { sources.append("grid meter \(grid.id)") }
    if pulseMeter { sources.append("the utility meter's pulses") }
    if meters.contains(where: { $0.role == .buildingLoad }) { sources.append("building meters + chargers") }
    return sources
  }

  public func reading(_ s: Snapshot) -> GridImportReading {
    if s.transferSwitch == .island || !s.utilityAvailable { return GridImportReading(kW: 0, source: "island") }
    let statuses = meters?.statuses() ?? []
    if let grid = statuses.first(where: { $0.role == .gridImport && !$0.stale }), let kW = grid.kW {
      return GridImportReading(kW: kW, source: "grid-meter \(grid.id)")
    }
    if let kW = pulseMeterKW?() { return GridImportReading(kW: kW, source: "pulse-meter") }
    let building = statuses.filter { $0.role == .buildingLoad }
    if !building.isEmpty, building.allSatisfy({ !$0.stale && $0.kW != nil }) {
      let kW = building.reduce(0) { $0 + ($1.kW ?? 0) } + (chargersKW?() ?? 0)
      return GridImportReading(kW: kW, source: "building-meters+chargers")
    }
    let configured =
      statuses.contains { $0.role.isPower } || pulseMeterKW != nil
    return GridImportReading(kW: nil, source: configured ? "stale" : "no demand source configured")
  }
}
