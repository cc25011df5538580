import SiteModel
import Testing

@Suite("The demand meter: aligned intervals, billing periods, missing data, clock steps")
struct DemandMeterTests {
  /// 2026-07-14T00:00Z, a Tuesday; the meter's clock in these tests is UTC and the local
  /// date is the UTC date unless a test says otherwise.
  let midnight = Double(CivilDate(year: 2026, month: 7, day: 14).dayNumber) * 86_400
  func utcDate(_ t: Double) -> CivilDate { LocalTime(seconds: t).date }

  func meter(interval: Double = 900, cycleDay: Int = 1) -> DemandMeter {
    DemandMeter(configuration: .init(intervalSeconds: interval, billingCycleDay: cycleDay))
  }

  /// Feeds `kW` in 1 s readings from `from` to `to` (meter clock).
  @discardableResult
  func feed(_ m: inout DemandMeter, kW: Double?, from: Double, to: Double) -> [DemandMeter.ClosedInterval] {
    var closed: [DemandMeter.ClosedInterval] = []
    var t = from
    while t < to - 1e-9 {
      t += 1
      closed += m.record(kW: kW, seconds: 1, endingAt: t, localDate: utcDate)
    }
    return closed
  }

  @Test("intervals align to the clock (:00, :15, ...), whenever the appliance starts")
  func alignment() {
    var m = meter()
    // Start at 10:07:30: the first interval is 10:00-10:15, with 7.5 minutes unseen.
    let start = midnight + 10 * 3600 + 450
    m.record(kW: 100, seconds: 0, endingAt: start, localDate: utcDate)
    #expect(m.intervalStart == midnight + 10 * 3600)
    let closed = feed(&m, kW: 100, from: start, to: midnight + 10 * 3600 + 1800)
    #expect(closed.map(\.start) == [midnight + 10 * 3600, midnight + 10 * 3600 + 900])
    #expect(closed[0].missingSeconds == 450)
    #expect(abs(closed[0].measuredSeconds - 450) < 1e-6)
    #expect(abs(closed[0].meanKW - 100) < 1e-9)
    #expect(closed[1].missingSeconds == 0)
    // Half an interval measured still counts toward the peak.
    #expect(closed[0].countsTowardPeak)
  }

  @Test("a reading that spans a boundary is split between the two intervals")
  func split() {
    var m = meter()
    m.record(kW: 0, seconds: 0, endingAt: midnight + 890, localDate: utcDate)
    let closed = m.record(kW: 360, seconds: 20, endingAt: midnight + 910, localDate: utcDate)
    #expect(closed.count == 1)
    #expect(abs(closed[0].meanKW * closed[0].measuredSeconds / 3600 - 1.0) < 1e-9, "10 s at 360 kW = 1 kWh")
    #expect(abs(m.importKWh - 1.0) < 1e-9)
    #expect(abs(m.measuredSeconds - 10) < 1e-9)
  }

  @Test("the period's peak is the highest interval mean; the controller sees the measured part only")
  func peak() {
    var m = meter()
    m.record(kW: 0, seconds: 0, endingAt: midnight, localDate: utcDate)
    feed(&m, kW: 200, from: midnight, to: midnight + 900)
    feed(&m, kW: 300, from: midnight + 900, to: midnight + 1800)
    feed(&m, kW: 250, from: midnight + 1800, to: midnight + 2700)
    #expect(abs(m.periodPeakKW - 300) < 1e-9)
    #expect(m.periodPeakIntervalStart == midnight + 900)
    feed(&m, kW: 400, from: midnight + 2700, to: midnight + 2760)
    let r = m.reading(localDate: utcDate(midnight))
    #expect(abs(r.intervalImportKWh - 400.0 / 60) < 1e-9)
    #expect(abs(r.intervalElapsedSeconds - 60) < 1e-9)
    #expect(abs(r.monthPeakKW - 300) < 1e-9, "an interval in progress is not yet a peak")
    #expect(r.periodDay == 14)
  }

  @Test("missing data is counted and flagged, never guessed; too little measured stays out of the peak")
  func missing() {
    var m = meter()
    m.record(kW: 0, seconds: 0, endingAt: midnight, localDate: utcDate)
    feed(&m, kW: 100, from: midnight, to: midnight + 300)
    feed(&m, kW: nil, from: midnight + 300, to: midnight + 900)
    #expect(m.intervalStart == midnight + 900)
    feed(&m, kW: 100, from: midnight + 900, to: midnight + 1800)
    let closed = m.record(kW: 100, seconds: 1, endingAt: midnight + 1801, localDate: utcDate)
    #expect(closed.isEmpty)
    // The first interval: 300 s measured at 900 kW would be a peak, but it is not counted.
    var n = meter()
    n.record(kW: 0, seconds: 0, endingAt: midnight, localDate: utcDate)
    let first =
      feed(&n, kW: 900, from: midnight, to: midnight + 300)
      + feed(&n, kW: nil, from: midnight + 300, to: midnight + 900)
    #expect(first.count == 1)
    #expect(first[0].missingSeconds == 600)
    #expect(!first[0].countsTowardPeak)
    #expect(first[0].note?.contains("300 of 900") == true)
    #expect(n.periodPeakKW == 0)
  }

  @Test("billing periods start on the configured day; the peak starts again then")
  func billingCycle() {
    var m = meter(cycleDay: 17)
    let july16 = Double(CivilDate(year: 2026, month: 7, day: 16).dayNumber) * 86_400
    m.record(kW: 0, seconds: 0, endingAt: july16 + 86_400 - 1800, localDate: utcDate)
    #expect(m.periodStart == CivilDate(year: 2026, month: 6, day: 17))
    feed(&m, kW: 500, from: july16 + 86_400 - 1800, to: july16 + 86_400 - 1)
    #expect(abs(m.periodPeakKW - 500) < 1e-9)
    feed(&m, kW: 500, from: july16 + 86_400 - 1, to: july16 + 86_400)
    // The first interval of the 17th starts a new period.
    feed(&m, kW: 100, from: july16 + 86_400, to: july16 + 86_400 + 900)
    #expect(m.periodStart == CivilDate(year: 2026, month: 7, day: 17))
    #expect(abs(m.periodPeakKW - 100) < 1e-9)
    // January's period started in December.
    #expect(
      DemandMeter.billingPeriodStart(of: CivilDate(year: 2027, month: 1, day: 3), cycleDay: 17)
        == CivilDate(year: 2026, month: 12, day: 17))
    #expect(
      DemandMeter.billingPeriodStart(of: CivilDate(year: 2027, month: 1, day: 1), cycleDay: 1)
        == CivilDate(year: 2027, month: 1, day: 1))
  }

  @Test("an NTP step forwards closes the interval as measured and starts the one the clock shows")
  func stepForward() {
    var m = meter()
    m.record(kW: 0, seconds: 0, endingAt: midnight, localDate: utcDate)
    feed(&m, kW: 300, from: midnight, to: midnight + 600)
    let peakBefore = m.periodPeakKW
    // The clock jumps two hours ahead between two 1 s readings.
    let jumped = midnight + 600 + 7200
    let closed = m.record(kW: 300, seconds: 1, endingAt: jumped + 1, localDate: utcDate)
    #expect(closed.count == 1)
    #expect(closed[0].start == midnight)
    #expect(closed[0].note?.contains("forward") == true)
    #expect(abs(closed[0].measuredSeconds - 600) < 1e-9, "what was measured stays measured")
    #expect(m.intervalStart == midnight + 7200, "the interval the clock now shows")
    #expect(abs(m.measuredSeconds - 1) < 1e-9)
    #expect(m.periodPeakKW >= peakBefore)
    // No interval in between was invented.
    #expect(!closed.contains { $0.start > midnight && $0.start < midnight + 7200 })
  }

  @Test("an NTP step back never resets the period's peak or loses what was measured")
  func stepBack() {
    var m = meter(cycleDay: 14)
    // Late on the 14th, the first day of a billing period.
    let t0 = midnight + 3600
    m.record(kW: 0, seconds: 0, endingAt: t0, localDate: utcDate)
    feed(&m, kW: 450, from: t0, to: t0 + 900)
    #expect(abs(m.periodPeakKW - 450) < 1e-9)
    // Back into the previous day (and the previous billing period) by two hours.
    let closed = m.record(kW: 100, seconds: 1, endingAt: t0 + 900 - 7200 + 1, localDate: utcDate)
    #expect(closed.count == 1 && closed[0].note?.contains("back") == true)
    #expect(abs(m.periodPeakKW - 450) < 1e-9, "the period only moves forward")
    #expect(m.periodStart == CivilDate(year: 2026, month: 7, day: 14))
  }

  @Test("staff can set the period's peak to the utility's reading; a higher interval still raises it")
  func staffPeak() {
    var m = meter()
    m.record(kW: 0, seconds: 0, endingAt: midnight, localDate: utcDate)
    m.setPeriodPeak(kW: 420)
    #expect(m.periodPeakSetByStaff && m.periodPeakKW == 420)
    feed(&m, kW: 300, from: midnight, to: midnight + 900)
    #expect(m.periodPeakKW == 420)
    feed(&m, kW: 500, from: midnight + 900, to: midnight + 1800)
    #expect(abs(m.periodPeakKW - 500) < 1e-9 && !m.periodPeakSetByStaff)
  }

  @Test("bad readings change nothing")
  func badReadings() {
    var m = meter()
    m.record(kW: 0, seconds: 0, endingAt: midnight, localDate: utcDate)
    let before = m
    #expect(m.record(kW: 100, seconds: -1, endingAt: midnight + 1, localDate: utcDate).isEmpty)
    #expect(m.record(kW: 100, seconds: .nan, endingAt: midnight + 1, localDate: utcDate).isEmpty)
    #expect(m == before)
    // A non-finite kW counts as missing.
    m.record(kW: .infinity, seconds: 1, endingAt: midnight + 1, localDate: utcDate)
    #expect(m.importKWh == 0 && m.missingSeconds == 1)
  }
}

@Suite("Departure timetables: the next departure by weekday, skipping days with no service")
struct DepartureTimetableTests {
  let schoolDays = DepartureTimetable(
    departures: [
      .init(weekdays: [1, 2, 3, 4, 5], minuteOfDay: 6 * 60 + 40),
      .init(weekdays: [1, 2, 3, 4, 5], minuteOfDay: 14 * 60 + 20),
    ],
    noServiceDates: [CivilDate(year: 2026, month: 12, day: 24), CivilDate(year: 2026, month: 12, day: 25)])

  func at(_ text: String) -> LocalTime { CivilDate.parseLocalDateTime(text)! }

  @Test func nextDepartures() {
    // Tuesday 2026-12-01: the afternoon route, then Wednesday morning.
    #expect(schoolDays.next(after: at("2026-12-01T10:00")) == at("2026-12-01T14:20"))
    #expect(schoolDays.next(after: at("2026-12-01T14:20")) == at("2026-12-02T06:40"), "strictly after")
    // Friday evening: Monday morning.
    #expect(schoolDays.next(after: at("2026-12-04T18:00")) == at("2026-12-07T06:40"))
    // Wednesday 23rd evening: Thursday 24th and Friday 25th have no service.
    #expect(schoolDays.next(after: at("2026-12-23T15:00")) == at("2026-12-28T06:40"))
    #expect(DepartureTimetable(departures: []).next(after: at("2026-12-01T10:00")) == nil)
  }
}
