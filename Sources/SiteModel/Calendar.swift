// Civil calendar arithmetic without Foundation, so the controller core stays free of clocks
// and time zones: adapters hand it seconds on the local wall clock, and this turns them into
// the month (demand charges are monthly), weekday and time of day.

/// A point on the local wall-clock timeline, in seconds since 1970-01-01T00:00 local time.
public struct LocalTime: Sendable, Hashable, Comparable {
  public var seconds: Double
  public init(seconds: Double) { self.seconds = seconds }

  public static func < (a: LocalTime, b: LocalTime) -> Bool { a.seconds < b.seconds }

  /// Days since 1970-01-01.
  public var dayNumber: Int { Int((seconds / 86_400).rounded(.down)) }
  /// Minutes since local midnight, 0..<1440.
  public var minuteOfDay: Int { Int((seconds - Double(dayNumber) * 86_400) / 60) }
  /// 0 = Sunday ... 6 = Saturday.
  public var weekday: Int { ((dayNumber % 7) + 7 + 4) % 7 }
  public var date: CivilDate { CivilDate(dayNumber: dayNumber) }
  /// A number that changes exactly when the calendar month does: year * 12 + month - 1.
  public var monthKey: Int {
    let d = date
    return d.year * 12 + d.month - 1
  }

  public static func + (t: LocalTime, s: Double) -> LocalTime { LocalTime(seconds: t.seconds + s) }
}

extension LocalTime: CustomStringConvertible {
  /// `2024-07-15T16:45:00`: ISO 8601 without a zone, as panels show site time.
  public var description: String {
    // Whole seconds, down; but a time a hair under a second (floating error from adding
    // and subtracting timelines, e.g. 07:29:59.9999999 for 07:30) is that second.
    let whole = LocalTime(seconds: (seconds + 1e-6).rounded(.down))
    let s = Int(whole.seconds - Double(whole.dayNumber) * 86_400)
    func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(whole.date)T\(two(s / 3600)):\(two(s / 60 % 60)):\(two(s % 60))"
  }
}

/// A proleptic Gregorian date.
public struct CivilDate: Sendable, Hashable, Codable, CustomStringConvertible {
  public var year: Int
  public var month: Int
  public var day: Int

  public init(year: Int, month: Int, day: Int) {
    self.year = year
    self.month = month
    self.day = day
  }

  /// From days since 1970-01-01 (H. Hinnant's civil_from_days).
  public init(dayNumber: Int) {
    let z = dayNumber + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    day = doy - (153 * mp + 2) / 5 + 1
    month = mp < 10 ? mp + 3 : mp - 9
    year = yoe + era * 400 + (month <= 2 ? 1 : 0)
  }

  /// Days since 1970-01-01 (H. Hinnant's days_from_civil).
  public var dayNumber: Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = month > 2 ? month - 3 : month + 9
    let doy = (153 * mp + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    return era * 146_097 + doe - 719_468
  }

  public var description: String {
    func pad(_ v: Int, _ n: Int) -> String {
      let s = String(v)
      return String(repeating: "0", count: max(0, n - s.count)) + s
    }
    return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))"
  }

  /// Parses `YYYY-MM-DDTHH:MM[:SS]` (the scenario's naive local start, a panel's departure)
  /// into local seconds.
  public static func parseLocalDateTime(_ text: String) -> LocalTime? {
    let parts = text.split(separator: "T", omittingEmptySubsequences: false)
    guard parts.count == 2 else { return nil }
    let ymd = parts[0].split(separator: "-").compactMap { Int($0) }
    let hm = parts[1].split(separator: ":").compactMap { Int($0) }
    guard ymd.count == 3, hm.count >= 2, (1...12).contains(ymd[1]), (1...31).contains(ymd[2]),
      (0..<24).contains(hm[0]), (0..<60).contains(hm[1])
    else { return nil }
    let days = CivilDate(year: ymd[0], month: ymd[1], day: ymd[2]).dayNumber
    let seconds = hm.count >= 3 && (0..<60).contains(hm[2]) ? hm[2] : 0
    return LocalTime(seconds: Double(days) * 86_400 + Double(hm[0] * 3600 + hm[1] * 60 + seconds))
  }
}
