import Foundation
import Testing

@testable import OpenADR

@Suite("ISO 8601 durations and date-times, read and written by hand")
struct TimeValuesTests {
  @Test(
    "durations",
    arguments: [
      ("PT1S", 1.0), ("PT10M", 600), ("PT1H30M", 5_400), ("P1D", 86_400), ("P1DT2H3M4S", 93_784), ("P2W", 1_209_600),
      ("P1Y", 31_536_000), ("P1M", 2_592_000), ("P1Y2M3DT4H5M6S", 31_536_000 + 5_184_000 + 273_906),
      ("PT0.5S", 0.5), ("PT1.25M", 75), ("P", 0), ("PT", 0), ("PT0S", 0), ("+PT5S", 5), ("-PT1H", -3_600),
    ] as [(String, Double)])
  func durations(text: String, seconds: Double) {
    #expect(TimeValues.parseDuration(text) == seconds)
  }

  @Test(
    "not durations",
    arguments: [
      "", "1H", "T1H", "PT1H1H", "P1H", "PT1D", "PM", "P1.2.3S", "PT-1S", "P1DT2", "P1S", "PTS", "P1W2D", "p1d",
    ])
  func notDurations(text: String) {
    #expect(TimeValues.parseDuration(text) == nil, "\(text)")
  }

  @Test(
    "durations written as openleadr reads them",
    arguments: [
      (0.0, "PT0S"), (0.4, "PT0S"), (1, "PT1S"), (59.6, "PT1M"), (600, "PT10M"), (3_601, "PT1H1S"),
      (90_061, "P1DT1H1M1S"), (86_400, "P1D"), (-30, "-PT30S"),
    ] as [(Double, String)])
  func formatDuration(seconds: Double, text: String) {
    #expect(TimeValues.formatDuration(seconds: seconds) == text)
  }

  @Test("every written duration reads back")
  func durationRoundTrip() {
    for seconds in stride(from: 0, through: 200_000, by: 997) {
      #expect(TimeValues.parseDuration(TimeValues.formatDuration(seconds: Double(seconds))) == Double(seconds))
    }
  }

  @Test(
    "date-times",
    arguments: [
      ("2026-12-02T14:49:58.408273Z", 1_796_222_998.408273), ("2026-12-02T14:49:58Z", 1_796_222_998),
      ("2026-12-02T14:49:58.4Z", 1_796_222_998.4), ("2026-12-02T14:49:58.408273123Z", 1_796_222_998.408273123),
      ("2026-12-02T15:49:58+01:00", 1_796_222_998), ("2026-12-02T09:19:58-0530", 1_796_222_998),
      ("2026-12-02t14:49:58z", 1_796_222_998), ("1970-01-01T00:00:00Z", 0), ("2024-02-29T00:00:00Z", 1_709_164_800),
      ("2000-03-01T00:00:00Z", 951_868_800), ("1969-12-31T23:59:59Z", -1),
    ] as [(String, Double)])
  func dateTimes(text: String, seconds: Double) {
    expectDate(TimeValues.parseDateTime(text), seconds)
  }

  @Test(
    "not date-times",
    arguments: [
      "", "2026-12-02T14:49:58", "2026-12-02 14:49:58Z", "2026-13-02T14:49:58Z", "2026-02-29T00:00:00Z",
      "2026-12-32T00:00:00Z", "2026-12-02T24:00:00Z", "2026-12-02T14:60:00Z", "2026-12-02T14:49:58.Z",
      "2026-12-02T14:49:58+25:00", "2026-12-02T14:49:58Zjunk", "26-12-02T14:49:58Z", "2026-1a-02T14:49:58Z",
    ])
  func notDateTimes(text: String) {
    #expect(TimeValues.parseDateTime(text) == nil, "\(text)")
  }

  @Test("written UTC with microseconds, read back to the microsecond")
  func dateTimeRoundTrip() {
    #expect(
      TimeValues.formatDateTime(Date(timeIntervalSince1970: 1_796_222_998.408273)) == "2026-12-02T14:49:58.408273Z")
    #expect(TimeValues.formatDateTime(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000000Z")
    #expect(TimeValues.formatDateTime(Date(timeIntervalSince1970: -0.5)) == "1969-12-31T23:59:59.500000Z")
    #expect(
      TimeValues.formatDateTime(Date(timeIntervalSince1970: 951_868_799.9999996)) == "2000-03-01T00:00:00.000000Z")
    var seconds = 946_684_800.0  // 2000-01-01
    while seconds < 4_102_444_800 {  // 2100-01-01
      let date = Date(timeIntervalSince1970: seconds)
      expectDate(TimeValues.parseDateTime(TimeValues.formatDateTime(date)), seconds)
      seconds += 7_654_321.123456
    }
  }

  @Test("civil dates agree with Foundation's Gregorian calendar")
  func civilDates() {
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: "UTC")!
    for days in stride(from: -800_000, through: 800_000, by: 4_999) {
      let (year, month, day) = TimeValues.civilFromDays(days)
      #expect(TimeValues.daysFromCivil(year: year, month: month, day: day) == days)
      if year >= 1600 {  // Foundation's calendar is Julian before 1582
        let date = calendar.date(from: DateComponents(year: year, month: month, day: day))!
        #expect(date.timeIntervalSince1970 == Double(days) * 86_400, "\(year)-\(month)-\(day)")
      }
    }
  }
}
