/// The demand meter's accounting, as the utility bills it: grid import integrated into
/// demand intervals aligned to the meter's clock (:00, :15, :30, :45 for 15 minutes), and the
/// highest interval mean of the billing period, which starts on a configurable day of the
/// month (utility cycles rarely match calendar months).
///
/// One pure type for the simulated plant and the field site alike: time comes in, as the
/// meter's clock (`clock`, seconds; UTC at a real site) and how long each reading held
/// (from a monotonic clock). It never guesses: time with no measurement is counted as
/// missing, and an interval with too little of it measured is flagged and kept out of the
/// period's peak. A clock that steps (NTP correcting by minutes or hours, either way) closes
/// the interval in progress as it was measured and starts the one the clock now shows; the
/// billing period only ever moves forward, so a step back cannot reset the peak.
public struct DemandMeter: Sendable, Hashable, Codable {
  public struct Configuration: Sendable, Hashable, Codable {
    /// The demand interval, seconds (divides a day).
    public var intervalSeconds: Double
    /// The day of the month each billing period starts, 1...28.
    public var billingCycleDay: Int
    /// An interval counts toward the period's peak when at least this share of it was
    /// measured; below, it is recorded and flagged only.
    public var minimumMeasuredShare: Double
    /// A reading whose start is further than this from where the last one ended is a clock
    /// step, seconds.
    public var clockStepToleranceSeconds: Double

    public init(
      intervalSeconds: Double, billingCycleDay: Int = 1, minimumMeasuredShare: Double = 0.5,
      clockStepToleranceSeconds: Double = 2
    ) {
      self.intervalSeconds = intervalSeconds
      self.billingCycleDay = billingCycleDay
      self.minimumMeasuredShare = minimumMeasuredShare
      self.clockStepToleranceSeconds = clockStepToleranceSeconds
    }
  }

  /// A demand interval that has ended.
  public struct ClosedInterval: Sendable, Hashable, Codable {
    /// Its start on the meter's clock.
    public var start: Double
    /// Mean grid import over the measured part, kW.
    public var meanKW: Double
    public var measuredSeconds: Double
    /// Seconds of the interval with no measurement (meter stale, appliance down, clock step).
    public var missingSeconds: Double
    /// Counted toward the period's peak.
    public var countsTowardPeak: Bool
    /// Why it was cut short, if it was.
    public var note: String?

    public init(
      start: Double, meanKW: Double, measuredSeconds: Double, missingSeconds: Double, countsTowardPeak: Bool,
      note: String?
    ) {
      self.start = start
      self.meanKW = meanKW
      self.measuredSeconds = measuredSeconds
      self.missingSeconds = missingSeconds
      self.countsTowardPeak = countsTowardPeak
      self.note = note
    }
  }

  public let configuration: Configuration
  /// First day of the billing period in progress (local date); nil before any reading.
  public private(set) var periodStart: CivilDate?
  /// Highest counted interval mean this billing period, kW (0 at its start).
  public private(set) var periodPeakKW = 0.0
  /// Where that peak came from: an interval's start on the meter's clock, or nil when set
  /// by staff (the utility's own reading).
  public private(set) var periodPeakIntervalStart: Double?
  public private(set) var periodPeakSetByStaff = false
  /// The interval in progress: its start on the meter's clock, nil before any reading.
  public private(set) var intervalStart: Double?
  /// Import so far in the interval in progress, kWh (export negative), over `measuredSeconds`.
  public private(set) var importKWh = 0.0
  public private(set) var measuredSeconds = 0.0
  public private(set) var missingSeconds = 0.0
  /// Where the last reading ended on the meter's clock.
  public private(set) var lastClock: Double?

  public init(configuration: Configuration) {
    self.configuration = configuration
  }

  var interval: Double { configuration.intervalSeconds }

  /// What the controller is shown: the period's peak and the interval so far. The elapsed
  /// time is the measured part only, so a restart or a stale meter mid-interval reads as a
  /// shorter interval, never as headroom nobody measured.
  public func reading(localDate: CivilDate? = nil) -> DemandMeterReading {
    var r = DemandMeterReading(
      monthPeakKW: periodPeakKW, intervalImportKWh: importKWh, intervalElapsedSeconds: measuredSeconds)
    if let localDate, let periodStart { r.periodDay = localDate.dayNumber - periodStart.dayNumber + 1 }
    return r
  }

  /// Adds a reading: `kW` of grid import (nil: none was measured) held for `seconds`,
  /// ending at `clock`. `localDate` turns a clock value into the local date, for the
  /// billing period. Returns the intervals this closed, oldest first.
  @discardableResult
  public mutating func record(
    kW: Double?, seconds: Double, endingAt clock: Double, localDate: (Double) -> CivilDate
  ) -> [ClosedInterval] {
    guard seconds >= 0, seconds.isFinite, clock.isFinite else { return [] }
    var closed: [ClosedInterval] = []
    let from = clock - seconds
    if let last = lastClock, abs(from - last) > configuration.clockStepToleranceSeconds, intervalStart != nil {
      // The clock stepped: what was measured stays measured; the new interval starts
      // where the clock now says, with what came before it unseen.
      let direction = from > last ? "forward" : "back"
      closed.append(close(note: "clock stepped \(direction) by \(Int(abs(from - last).rounded())) s"))
      intervalStart = nil
    }
    if intervalStart == nil { begin(at: from, localDate: localDate) }
    var t = from
    let measuredKW = kW.flatMap { $0.isFinite ? $0 : nil }
    while t < clock {
      let end = min(clock, intervalStart! + interval)
      let span = end - t
      if let measuredKW {
        importKWh += measuredKW * (span / 3600)
        measuredSeconds += span
      } else {
        missingSeconds += span
      }
      t = end
      if end >= intervalStart! + interval - 1e-9 {
        closed.append(close(note: nil))
        begin(at: intervalStart! + interval, localDate: localDate)
      }
    }
    lastClock = clock
    return closed
  }

  /// Staff set the period's peak to the utility's own reading.
  public mutating func setPeriodPeak(kW: Double) {
    periodPeakKW = max(0, kW)
    periodPeakIntervalStart = nil
    periodPeakSetByStaff = true
  }

  /// Starts the interval that contains `clock` (time before `clock` in it is missing).
  private mutating func begin(at clock: Double, localDate: (Double) -> CivilDate) {
    let start = (clock / interval).rounded(.down) * interval
    intervalStart = start
    importKWh = 0
    measuredSeconds = 0
    missingSeconds = max(0, clock - start)
    let period = Self.billingPeriodStart(of: localDate(start), cycleDay: configuration.billingCycleDay)
    if let current = periodStart {
      guard period.dayNumber > current.dayNumber else { return }
    }
    periodStart = period
    periodPeakKW = 0
    periodPeakIntervalStart = nil
    periodPeakSetByStaff = false
  }

  private mutating func close(note: String?) -> ClosedInterval {
    let start = intervalStart ?? 0
    // Time after the last reading that the interval did not see (a step cut it short).
    let unseen = note == nil ? 0 : max(0, interval - measuredSeconds - missingSeconds)
    let missing = missingSeconds + unseen
    let mean = measuredSeconds > 0 ? importKWh / (measuredSeconds / 3600) : 0
    let counts = measuredSeconds >= configuration.minimumMeasuredShare * interval
    if counts && mean > periodPeakKW {
      periodPeakKW = mean
      periodPeakIntervalStart = start
      periodPeakSetByStaff = false
    }
    return ClosedInterval(
      start: start, meanKW: mean, measuredSeconds: measuredSeconds, missingSeconds: missing, countsTowardPeak: counts,
      note: note ?? (counts ? nil : "only \(Int(measuredSeconds)) of \(Int(interval)) s measured"))
  }

  /// The first day of the billing period that `date` falls in.
  public static func billingPeriodStart(of date: CivilDate, cycleDay: Int) -> CivilDate {
    if date.day >= cycleDay { return CivilDate(year: date.year, month: date.month, day: cycleDay) }
    return date.month == 1
      ? CivilDate(year: date.year - 1, month: 12, day: cycleDay)
      : CivilDate(year: date.year, month: date.month - 1, day: cycleDay)
  }
}
