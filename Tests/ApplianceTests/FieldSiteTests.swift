import Control
import Foundation
import Logging
import SiteModel
import Synchronization
import Testing

@testable import Appliance

/// The field site on an injected clock: time zones through both daylight-saving changes,
/// an unsynchronized boot, NTP steps, billing periods in site time, and state that
/// survives a restart. No sleeping: the test moves the clock and takes snapshots.
@Suite("The field site: site time, the demand meter, state across restarts")
struct FieldSiteTests {
  let site = SiteDescription(
    name: "field test", importLimitKW: 800, exportLimitKW: 0, eventExportLimitKW: 100, criticalLoadFraction: 0.35,
    chargers: [ChargerSpec(id: "C1", maxChargeKW: 60, maxDischargeKW: 60, efficiency: 0.94, gridForming: true)],
    vehicles: [VehicleSpec(id: "BUS-1", batteryKWh: 155, reserveKWh: 20)])
  let newYork = SiteTimeZone(identifier: "America/New_York")!

  /// A grid import the test sets.
  final class Import: Sendable {
    let kW = Mutex<Double?>(250)
  }

  func utc(_ y: Int, _ m: Int, _ d: Int, _ h: Int = 0, _ min: Int = 0) -> Double {
    Double(CivilDate(year: y, month: m, day: d).dayNumber) * 86_400 + Double(h * 3600 + min * 60)
  }

  func make(
    clock: ManualClock, state: SiteState? = nil, status: SiteStatus? = nil, cycleDay: Int = 1,
    grid: Import = Import(), interval: Double = 900, readingGap: Double = 5
  ) -> FieldSite {
    var configuration = FieldSite.Configuration(
      timeZone: newYork, demandMeter: .init(intervalSeconds: interval, billingCycleDay: cycleDay))
    configuration.maximumReadingGapSeconds = readingGap
    return FieldSite(
      site: site, configuration: configuration,
      clock: clock, drivers: [], gridImport: { _ in GridImportReading(kW: grid.kW.withLock { $0 }, source: "test") },
      state: state, status: status, logger: Logger(label: "test"))
  }

  func tempState() throws -> (SiteState, String) {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mge-state-\(UUID().uuidString)")
    let path = dir.appendingPathComponent("state.db").path
    return (try SiteState(path: path, logger: Logger(label: "test")), path)
  }

  /// Steps the site every `every` seconds for `seconds`, returning the snapshots.
  func run(_ site: FieldSite, _ clock: ManualClock, seconds: Double, every: Double = 1) async throws -> [Snapshot] {
    var out: [Snapshot] = []
    var t = 0.0
    while t < seconds {
      clock.advance(every)
      t += every
      out.append(try await site.snapshot(periodSeconds: every))
    }
    return out
  }

  @Test("site time follows the zone through the 23-hour spring day and the 25-hour autumn day")
  func daylightSaving() async throws {
    for (day, hours) in [(CivilDate(year: 2026, month: 3, day: 8), 23), (CivilDate(year: 2026, month: 11, day: 1), 25)]
    {
      // From 23:00 local the evening before (04:00Z or 03:00Z) for 27 hours, minute by minute.
      let start = Double(day.dayNumber) * 86_400 - 3600 + (hours == 23 ? 5 * 3600 : 4 * 3600)
      let clock = ManualClock(utc: start)
      // A reading a minute holds for that minute here (the appliance reads every second).
      let field = make(clock: clock, readingGap: 60)
      let snapshots = try await run(field, clock, seconds: 27 * 3600, every: 60)
      let minutesOnTheDay = snapshots.filter { $0.localTime.date == day }.count
      #expect(minutesOnTheDay == hours * 60, "\(day): \(minutesOnTheDay) minutes, not \(hours) hours")
      // The timeline is the monotonic clock: no step at the change.
      for (a, b) in zip(snapshots, snapshots.dropFirst()) { #expect(abs(b.time - a.time - 60) < 1e-6) }
      // The demand meter counts real time: one interval per 15 minutes, none cut short.
      let meter = field.demandMeter
      #expect(meter.missingSeconds == 0)
      #expect(abs(meter.periodPeakKW - 250) < 1e-6)
      #expect(snapshots.allSatisfy { !$0.wallClockUnsynchronized && $0.utcSeconds != nil })
    }
    // Local wall times back to UTC: 01:30 on the autumn day is the first (EDT) one; 02:30
    // on the spring day does not exist and reads as 03:30 EDT.
    let autumn = CivilDate.parseLocalDateTime("2026-11-01T01:30")!
    #expect(newYork.utc(of: autumn) == utc(2026, 11, 1, 5, 30))
    let spring = CivilDate.parseLocalDateTime("2026-03-08T02:30")!
    #expect(newYork.localTime(atUTC: newYork.utc(of: spring)) == CivilDate.parseLocalDateTime("2026-03-08T03:30")!)
    #expect(newYork.isoText(atUTC: utc(2026, 7, 14, 18)) == "2026-07-14T14:00:00-04:00")
  }

  @Test("a billing period starts at local midnight of its cycle day, not at UTC midnight")
  func billingPeriodInSiteTime() async throws {
    // 2026-07-15 00:00 EDT is 04:00Z. Start at 02:00Z on the 15th (22:00 EDT on the 14th).
    let clock = ManualClock(utc: utc(2026, 7, 15, 2))
    let grid = Import()
    grid.kW.withLock { $0 = 400 }
    let field = make(clock: clock, cycleDay: 15, grid: grid)
    _ = try await run(field, clock, seconds: 3600)
    #expect(field.demandMeter.periodStart == CivilDate(year: 2026, month: 6, day: 15))
    #expect(abs(field.demandMeter.periodPeakKW - 400) < 1e-6)
    grid.kW.withLock { $0 = 100 }
    // To 04:30Z: the period of 2026-07-15 begins at 04:00Z, and its peak with it.
    _ = try await run(field, clock, seconds: 2.5 * 3600)
    #expect(field.demandMeter.periodStart == CivilDate(year: 2026, month: 7, day: 15))
    #expect(abs(field.demandMeter.periodPeakKW - 100) < 1e-6)
    let last = try await field.snapshot(periodSeconds: 1)
    #expect(last.meter.periodDay == 1)
  }

  @Test("an unsynchronized clock at boot: safe state, no intervals, an alarm; all begins when NTP has set it")
  func unsynchronizedBoot() async throws {
    // A Pi without RTC boots at its last saved time, hours behind.
    let clock = ManualClock(utc: utc(2026, 7, 14, 6), synchronized: false)
    let status = SiteStatus(site: site, meters: nil, logger: Logger(label: "test"))
    let field = make(clock: clock, status: status)
    let before = try await run(field, clock, seconds: 120)
    #expect(before.allSatisfy { $0.wallClockUnsynchronized && !$0.inputsFresh && $0.utcSeconds == nil })
    #expect(field.demandMeter.intervalStart == nil, "no demand-interval bookkeeping on an untrusted clock")
    let alarm = status.view.alarms.first { $0.id == "clock-unsynchronized" }
    #expect(alarm?.active == true)
    #expect(alarm?.message.contains("not synchronized") == true)
    // NTP steps the clock five hours ahead and marks it synchronized.
    clock.stepWall(5 * 3600)
    clock.setSynchronized(true)
    let after = try await run(field, clock, seconds: 60)
    #expect(after.allSatisfy { !$0.wallClockUnsynchronized && $0.inputsFresh && $0.utcSeconds != nil })
    #expect(field.demandMeter.intervalStart == utc(2026, 7, 14, 11))
    #expect(status.view.alarms.first { $0.id == "clock-unsynchronized" }?.active == false)
    // The controller's timeline did not jump.
    #expect(abs(after.first!.time - before.last!.time - 1) < 1e-6)
  }

  @Test("NTP steps either way never corrupt the interval in progress or the period's peak")
  func clockSteps() async throws {
    let clock = ManualClock(utc: utc(2026, 7, 14, 14))
    let grid = Import()
    grid.kW.withLock { $0 = 300 }
    let field = make(clock: clock, grid: grid)
    _ = try await run(field, clock, seconds: 900 + 300)
    #expect(abs(field.demandMeter.periodPeakKW - 300) < 1e-6)
    grid.kW.withLock { $0 = 200 }
    for step in [3 * 3600.0, -7 * 60.0, -2 * 3600.0, 40.0] {
      let peak = field.demandMeter.periodPeakKW
      clock.stepWall(step)
      let s = try await run(field, clock, seconds: 5)
      #expect(field.demandMeter.periodPeakKW == peak, "a \(step) s step changed the peak")
      // The interval in progress holds only what was measured since the step.
      #expect(s.last!.meter.intervalElapsedSeconds <= 5 + 1e-6)
      #expect(abs(s.last!.meter.intervalImportKWh - 200 * s.last!.meter.intervalElapsedSeconds / 3600) < 1e-6)
    }
    // A step of a second is ordinary drift, not a step.
    clock.stepWall(1)
    let elapsed = field.demandMeter.measuredSeconds
    _ = try await run(field, clock, seconds: 1)
    #expect(field.demandMeter.measuredSeconds > elapsed)
  }

  @Test("the period's peak and the interval in progress survive a restart; the down time is missing")
  func restart() async throws {
    let (state, path) = try tempState()
    let clock = ManualClock(utc: utc(2026, 7, 14, 14))
    let grid = Import()
    grid.kW.withLock { $0 = 320 }
    let first = make(clock: clock, state: state, grid: grid)
    _ = try await run(first, clock, seconds: 900)
    grid.kW.withLock { $0 = 180 }
    _ = try await run(first, clock, seconds: 400)
    let before = first.demandMeter
    #expect(abs(before.periodPeakKW - 320) < 1e-6)
    // A power cut: the process is gone, 20 s pass, the appliance starts again.
    clock.advance(20)
    let reopened = try SiteState(path: path, logger: Logger(label: "test"))
    let second = make(clock: clock, state: reopened, grid: grid)
    let s = try await second.snapshot(periodSeconds: 1)
    let after = second.demandMeter
    #expect(after.periodPeakKW == before.periodPeakKW)
    #expect(after.intervalStart == before.intervalStart)
    // Saved every 5 s: at most 5 s of the interval's measurement is lost.
    #expect(before.measuredSeconds - after.measuredSeconds <= 5 + 1e-6)
    #expect(after.measuredSeconds > 390)
    #expect(s.meter.monthPeakKW == before.periodPeakKW)
    // The closed intervals are kept (a year at most).
    #expect(reopened.demandIntervals().first?.start == utc(2026, 7, 14, 14))
  }

  @Test("staff set the period's peak to the utility's reading; it survives a restart")
  func staffSetsPeak() async throws {
    let (state, path) = try tempState()
    let clock = ManualClock(utc: utc(2026, 7, 14, 14))
    let field = make(clock: clock, state: state)
    #expect(
      {
        if case .refused = field.setPeriodPeak(kW: 400) { return true }
        return false
      }(), "before the first synchronized step the period is not known")
    _ = try await run(field, clock, seconds: 10)
    if case .refused(let why) = field.setPeriodPeak(kW: -3) { #expect(why.contains("-3")) } else { Issue.record() }
    guard case .applied = field.setPeriodPeak(kW: 412) else {
      Issue.record("set_period_peak refused")
      return
    }
    let reopened = make(clock: clock, state: try SiteState(path: path, logger: Logger(label: "test")))
    let s = try await reopened.snapshot(periodSeconds: 1)
    #expect(s.meter.monthPeakKW == 412)
  }

  @Test("a damaged state file is moved aside and a fresh one carries on")
  func damagedStateFile() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mge-state-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let path = dir.appendingPathComponent("state.db").path
    try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: path))
    let state = try SiteState(path: path, logger: Logger(label: "test"))
    #expect(state.movedAside?.contains("moved aside") == true)
    let files = try FileManager.default.contentsOfDirectory(atPath: dir.path)
    #expect(files.contains { $0.hasPrefix("state.db.bad-") })
    var overrides = OperatorOverrides()
    _ = overrides.apply(.pauseV2X, by: "u", site: site, snapshot: nil, mode: nil)
    state.saveOverrides(overrides)
    #expect(state.loadOverrides()?.dischargePaused == true)
  }
}
