import SiteModel

/// Which part of the records a report covers, in the site's local calendar.
public enum ReportRange: Sendable, Hashable {
  /// Everything there is.
  case all
  /// Local midnight of `from` to local midnight of `to` (exclusive).
  case dates(from: CivilDate, to: CivilDate)
  /// The billing period that starts in this month, on the site's billing cycle day (from
  /// its `site` records); the calendar month when the cycle starts on the 1st.
  case billingPeriod(year: Int, month: Int)

  /// `--month 2023-07`: the calendar month.
  public static func month(_ text: String) -> ReportRange? {
    guard let (y, m) = parseMonth(text) else { return nil }
    return .dates(from: CivilDate(year: y, month: m, day: 1), to: nextMonth(CivilDate(year: y, month: m, day: 1)))
  }

  public static func parseMonth(_ text: String) -> (Int, Int)? {
    let parts = text.split(separator: "-", omittingEmptySubsequences: false)
    guard parts.count == 2, parts[0].count == 4, parts[1].count == 2, let y = Int(parts[0]), let m = Int(parts[1]),
      (1...12).contains(m), y >= 1970
    else { return nil }
    return (y, m)
  }

  public static func parseDate(_ text: String) -> CivilDate? {
    guard let t = CivilDate.parseLocalDateTime(text + "T00:00"), text.count == 10 else { return nil }
    let date = t.date
    return date.description == text ? date : nil
  }

  static func nextMonth(_ d: CivilDate) -> CivilDate {
    d.month == 12
      ? CivilDate(year: d.year + 1, month: 1, day: d.day) : CivilDate(year: d.year, month: d.month + 1, day: d.day)
  }

  /// Local seconds `[from, to)`; unbounded sides are ±infinity.
  func resolved(billingCycleDay: Int) -> (from: Double, to: Double) {
    switch self {
    case .all: return (-.infinity, .infinity)
    case .dates(let from, let to): return (Double(from.dayNumber) * 86_400, Double(to.dayNumber) * 86_400)
    case .billingPeriod(let y, let m):
      let start = CivilDate(year: y, month: m, day: billingCycleDay)
      return (Double(start.dayNumber) * 86_400, Double(Self.nextMonth(start).dayNumber) * 86_400)
    }
  }

  /// `2023-07-01`–`2023-08-01` for messages and the page.
  func describe(billingCycleDay: Int) -> (from: String?, to: String?) {
    guard self != .all else { return (nil, nil) }
    let r = resolved(billingCycleDay: billingCycleDay)
    return (
      LocalTime(seconds: r.from).date.description, LocalTime(seconds: r.to).date.description
    )
  }
}
