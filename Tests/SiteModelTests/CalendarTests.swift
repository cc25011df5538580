import SiteModel
import Testing

@Suite("Civil calendar without Foundation")
struct CalendarTests {
  @Test("the scenarios' calendar starts on a Sunday, 2023-01-01")
  func scenarioStart() {
    let start = CivilDate.parseLocalDateTime("2023-01-01T00:00")!
    #expect(start.weekday == 0)
    #expect(start.date == CivilDate(year: 2023, month: 1, day: 1))
    #expect(start.minuteOfDay == 0)
  }

  @Test("known dates and weekdays")
  func knownDates() {
    #expect(CivilDate(year: 1970, month: 1, day: 1).dayNumber == 0)
    #expect(CivilDate(year: 2000, month: 3, day: 1).dayNumber == 11_017)
    // 2024-02-29 was a Thursday.
    #expect(LocalTime(seconds: Double(CivilDate(year: 2024, month: 2, day: 29).dayNumber) * 86_400).weekday == 4)
    #expect(CivilDate(dayNumber: -1) == CivilDate(year: 1969, month: 12, day: 31))
  }

  @Test("day numbers round-trip over four centuries")
  func roundTrip() {
    for day in stride(from: -200_000, through: 200_000, by: 37) {
      let date = CivilDate(dayNumber: day)
      #expect(date.dayNumber == day)
      #expect((1...12).contains(date.month) && (1...31).contains(date.day))
    }
  }

  @Test("site times show whole seconds, and floating error does not cost a second")
  func description() {
    let t = CivilDate.parseLocalDateTime("2023-01-02T07:30")!
    #expect(t.description == "2023-01-02T07:30:00")
    #expect((t + 0.7).description == "2023-01-02T07:30:00")
    #expect((t + -1e-9).description == "2023-01-02T07:30:00")
    #expect((t + -0.5).description == "2023-01-02T07:29:59")
    // At midnight too: a hair under the new day is the new day.
    let midnight = CivilDate.parseLocalDateTime("2023-01-03T00:00")!
    #expect((midnight + -1e-9).description == "2023-01-03T00:00:00")
  }

  @Test("the month key changes exactly at month boundaries")
  func monthKey() {
    let jan31 = CivilDate.parseLocalDateTime("2023-01-31T23:59")!
    #expect((jan31 + 59).monthKey == jan31.monthKey)
    #expect((jan31 + 60).monthKey == jan31.monthKey + 1)
    #expect((jan31 + 60).date == CivilDate(year: 2023, month: 2, day: 1))
    let dec = CivilDate.parseLocalDateTime("2023-12-31T12:00")!
    #expect((dec + 43_200).date == CivilDate(year: 2024, month: 1, day: 1))
  }

  @Test(
    "malformed local times are refused",
    arguments: ["2023-13-01T00:00", "2023-01-01", "yesterday", "2023-01-01T25:00", ""])
  func malformed(text: String) {
    #expect(CivilDate.parseLocalDateTime(text) == nil)
  }

  @Test("an input error reads as file:line: field: message")
  func inputErrorText() {
    let e = InputError(source: "site.yaml", line: 12, field: "site.import_limit_kw", message: "expected a number")
    #expect(e.description == "site.yaml:12: site.import_limit_kw: expected a number")
    #expect(InputError(source: "x.csv", message: "no such file").description == "x.csv: no such file")
  }
}
