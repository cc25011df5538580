import SiteModel
import Testing

@testable import Reports

@Suite("Report ranges: months, billing periods and dates in the site's calendar")
struct ReportRangeTests {
  @Test func aBillingPeriodStartsOnTheSitesCycleDay() {
    let r = ReportRange.billingPeriod(year: 2026, month: 12).resolved(billingCycleDay: 15)
    #expect(LocalTime(seconds: r.from).date == CivilDate(year: 2026, month: 12, day: 15))
    #expect(LocalTime(seconds: r.to).date == CivilDate(year: 2027, month: 1, day: 15))
    #expect(ReportRange.billingPeriod(year: 2026, month: 12).describe(billingCycleDay: 15).from == "2026-12-15")
  }

  @Test func aMonthIsTheCalendarMonth() throws {
    let r = try #require(ReportRange.month("2024-02")).resolved(billingCycleDay: 15)
    #expect(LocalTime(seconds: r.to).seconds - LocalTime(seconds: r.from).seconds == 29 * 86_400)  // a leap year
  }

  @Test(arguments: ["2024-13", "24-02", "2024-2", "2024-02-01", "", "july"])
  func notAMonth(_ text: String) {
    #expect(ReportRange.month(text) == nil)
  }

  @Test(arguments: ["2024-02-30", "2024-2-01", "20240201", "2024-02-01T00:00"])
  func notADate(_ text: String) {
    #expect(ReportRange.parseDate(text) == nil)
  }
}
