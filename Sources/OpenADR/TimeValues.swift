// Date-times and durations as OpenADR writes them (xcal: RFC 5545 in XML, ISO 8601
// spellings), read and written by hand: no DateFormatter (locale, time zone and thread
// state are not wanted in a codec), and every rule checked here is visible.
//
// Durations, read: `[+-]P[nY][nM][nD][T[nH][nM][nS]]` or `[+-]PnW`, numbers with an optional
// fraction (`PT0.5S`). Years are 365 days and months 30 days, as openleadr reads them
// (docs/openadr-study.md, "Value formats"): a VTN that sends them means a length, not a
// calendar step. openleadr writes a zero duration as a bare `P`: that is 0. A sign is read
// (the xcal schema's pattern allows one); whether a negative value makes sense is the
// decoder's call (it refuses them everywhere OpenADR uses a duration).
// Durations, written: `P[nD]T[nH][nM][nS]` in whole seconds (the schema's pattern has no
// fractions; openleadr's `parse_duration` reads no fractions either), zero as `PT0S`.
//
// Date-times, read: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM|±HHMM)`, any number of fraction
// digits; a time without a zone (a "floating" time) is refused, since it names no instant.
// Date-times, written: UTC with microseconds, `2026-12-02T14:44:59.001921Z`, the only form
// openleadr's `parse_datetime` reads.

import Foundation

enum TimeValues {
  // MARK: Durations

  /// Seconds of an xcal/ISO 8601 duration, or nil when it is not one.
  static func parseDuration(_ text: String) -> Double? {
    var chars = Substring(text)
    var sign = 1.0
    if chars.first == "+" || chars.first == "-" {
      if chars.first == "-" { sign = -1 }
      chars = chars.dropFirst()
    }
    guard chars.first == "P" else { return nil }
    chars = chars.dropFirst()
    if chars.isEmpty { return 0 }  // openleadr's zero

    // PnW stands alone.
    if chars.last == "W" {
      guard let weeks = number(chars.dropLast()) else { return nil }
      return sign * weeks * 7 * 86_400
    }
    var total = 0.0
    var inTime = false
    // Designators in the order they may appear; each at most once.
    let dateUnits: [(Character, Double)] = [("Y", 365 * 86_400), ("M", 30 * 86_400), ("D", 86_400)]
    let timeUnits: [(Character, Double)] = [("H", 3_600), ("M", 60), ("S", 1)]
    var nextUnit = 0
    while !chars.isEmpty {
      if chars.first == "T" {
        guard !inTime else { return nil }
        inTime = true
        nextUnit = 0
        chars = chars.dropFirst()
        continue
      }
      let digits = chars.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
      guard !digits.isEmpty, let value = number(digits) else { return nil }
      chars = chars.dropFirst(digits.count)
      guard let designator = chars.first else { return nil }
      chars = chars.dropFirst()
      let units = inTime ? timeUnits : dateUnits
      guard let index = units[nextUnit...].firstIndex(where: { $0.0 == designator }) else { return nil }
      nextUnit = index + 1
      total += value * units[index].1
    }
    // "PT" with nothing after it is allowed by the schema's pattern; it is 0 like "P".
    return sign * total
  }

  /// Digits with at most one '.', at least one digit.
  private static func number(_ text: Substring) -> Double? {
    guard !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
      text.filter({ $0 == "." }).count <= 1, text.contains(where: \.isNumber)
    else { return nil }
    return Double(text)
  }

  /// `P[nD]T[nH][nM][nS]`, whole seconds (rounded), zero as `PT0S`.
  static func formatDuration(seconds: Double) -> String {
    guard seconds.isFinite else { return "PT0S" }
    var rest = Int64(abs(seconds).rounded())
    let sign = seconds < 0 && rest > 0 ? "-" : ""
    let days = rest / 86_400
    rest %= 86_400
    let hours = rest / 3_600
    rest %= 3_600
    let minutes = rest / 60
    let secs = rest % 60
    var text = sign + "P"
    if days > 0 { text += "\(days)D" }
    text += "T"
    if hours > 0 { text += "\(hours)H" }
    if minutes > 0 { text += "\(minutes)M" }
    if secs > 0 || (days == 0 && hours == 0 && minutes == 0) { text += "\(secs)S" }
    if text.hasSuffix("T") { text.removeLast() }
    return text
  }

  // MARK: Date-times

  /// The instant of an RFC 3339 / xcal date-time with a zone, or nil.
  static func parseDateTime(_ text: String) -> Date? {
    let b = Array(text.utf8)
    func digits(_ from: Int, _ count: Int) -> Int? {
      guard from + count <= b.count else { return nil }
      var value = 0
      for i in from..<(from + count) {
        guard b[i] >= 0x30 && b[i] <= 0x39 else { return nil }
        value = value * 10 + Int(b[i] - 0x30)
      }
      return value
    }
    func byte(_ i: Int, _ c: Character) -> Bool { i < b.count && b[i] == c.asciiValue! }
    guard let year = digits(0, 4), byte(4, "-"), let month = digits(5, 2), byte(7, "-"), let day = digits(8, 2),
      byte(10, "T") || byte(10, "t"), let hour = digits(11, 2), byte(13, ":"), let minute = digits(14, 2),
      byte(16, ":"), let second = digits(17, 2)
    else { return nil }
    guard (1...12).contains(month), (1...daysIn(month: month, year: year)).contains(day), (0...23).contains(hour),
      (0...59).contains(minute), (0...60).contains(second), year >= 1
    else { return nil }
    var i = 19
    var fraction = 0.0
    if byte(i, ".") {
      var scale = 0.1
      i += 1
      let start = i
      while i < b.count, b[i] >= 0x30 && b[i] <= 0x39 {
        fraction += Double(b[i] - 0x30) * scale
        scale /= 10
        i += 1
      }
      guard i > start else { return nil }
    }
    var offsetSeconds = 0
    if byte(i, "Z") || byte(i, "z") {
      i += 1
    } else if byte(i, "+") || byte(i, "-") {
      let negative = byte(i, "-")
      guard let oh = digits(i + 1, 2) else { return nil }
      var j = i + 3
      if byte(j, ":") { j += 1 }
      guard let om = digits(j, 2), oh <= 23, om <= 59 else { return nil }
      i = j + 2
      offsetSeconds = (oh * 3_600 + om * 60) * (negative ? -1 : 1)
    } else {
      return nil  // no zone: a floating time names no instant
    }
    guard i == b.count else { return nil }
    let days = daysFromCivil(year: year, month: month, day: day)
    let seconds = Double(days * 86_400 + hour * 3_600 + minute * 60 + second - offsetSeconds) + fraction
    return Date(timeIntervalSince1970: seconds)
  }

  /// UTC with microseconds: `2026-12-02T14:44:59.001921Z`.
  static func formatDateTime(_ date: Date) -> String {
    let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
    var seconds = micros / 1_000_000
    var micro = micros % 1_000_000
    if micro < 0 {
      micro += 1_000_000
      seconds -= 1
    }
    var days = seconds / 86_400
    var secondOfDay = seconds % 86_400
    if secondOfDay < 0 {
      secondOfDay += 86_400
      days -= 1
    }
    let (year, month, day) = civilFromDays(Int(days))
    func pad(_ value: Int, _ width: Int) -> String {
      let digits = String(value)
      return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
    return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(Int(secondOfDay / 3_600), 2)):"
      + "\(pad(Int(secondOfDay % 3_600 / 60), 2)):\(pad(Int(secondOfDay % 60), 2)).\(pad(Int(micro), 6))Z"
  }

  private static func isLeap(_ year: Int) -> Bool { year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) }

  private static func daysIn(month: Int, year: Int) -> Int {
    switch month {
    case 2: return isLeap(year) ? 29 : 28
    case 4, 6, 9, 11: return 30
    default: return 31
    }
  }

  /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
  static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yearOfEra = y - era * 400
    let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
    let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
    return era * 146_097 + dayOfEra - 719_468
  }

  /// The inverse of `daysFromCivil` (Hinnant's civil_from_days).
  static func civilFromDays(_ days: Int) -> (year: Int, month: Int, day: Int) {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let dayOfEra = z - era * 146_097
    let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
    let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
    let mp = (5 * dayOfYear + 2) / 153
    let day = dayOfYear - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
  }
}
