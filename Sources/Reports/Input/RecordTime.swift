import Foundation
import SiteModel

/// Record times: `2026-07-14T19:00:01.250Z` (CENTRAL-API's form), read without Foundation's
/// date parsers, which would cost more than the rest of a telemetry line together.
enum RecordTime {
  /// Milliseconds since 1970 UTC; nil when the text is not `YYYY-MM-DDTHH:MM:SS[.fff]Z`
  /// naming a real date.
  static func parseMS(_ b: UnsafeRawBufferPointer) -> Int64? {
    guard b.count >= 20, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"), b[10] == UInt8(ascii: "T"),
      b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"), b[b.count - 1] == UInt8(ascii: "Z")
    else { return nil }
    func digits(_ from: Int, _ n: Int) -> Int? {
      var v = 0
      for i in from..<(from + n) {
        let c = b[i]
        guard c >= 0x30, c <= 0x39 else { return nil }
        v = v * 10 + Int(c - 0x30)
      }
      return v
    }
    guard let year = digits(0, 4), let month = digits(5, 2), let day = digits(8, 2), let hour = digits(11, 2),
      let minute = digits(14, 2), let second = digits(17, 2), (1...12).contains(month), (1...31).contains(day),
      hour < 24, minute < 60, second < 61
    else { return nil }
    var millis = 0
    if b.count > 20 {
      guard b[19] == UInt8(ascii: "."), b.count - 21 >= 1, b.count - 21 <= 9, let f = digits(20, b.count - 21) else {
        return nil
      }
      // Keep milliseconds of however many fraction digits were written.
      let n = b.count - 21
      millis = n >= 3 ? f / Int(pow(10, Double(n - 3))) : f * Int(pow(10, Double(3 - n)))
    }
    let date = CivilDate(year: year, month: month, day: day)
    guard CivilDate(dayNumber: date.dayNumber) == date else { return nil }  // 31 June is not a date
    return (Int64(date.dayNumber) * 86_400 + Int64(hour * 3600 + minute * 60 + second)) * 1000 + Int64(millis)
  }

  static func parseMS(_ s: String) -> Int64? {
    var s = s
    return s.withUTF8 { parseMS(UnsafeRawBufferPointer($0)) }
  }

  /// `2026-07-14T19:00:01Z`.
  static func iso(ms: Int64) -> String {
    let seconds = ms.floorDivided(by: 1000)
    let day = seconds.floorDivided(by: 86_400)
    let s = Int(seconds - day * 86_400)
    return "\(CivilDate(dayNumber: Int(day)))T\(two(s / 3600)):\(two(s / 60 % 60)):\(two(s % 60))Z"
  }

  /// `2026-07-14T14:00` from local seconds.
  static func local(_ seconds: Double) -> String {
    let t = LocalTime(seconds: seconds)
    let s = Int(seconds - Double(t.dayNumber) * 86_400)
    return "\(t.date)T\(two(s / 3600)):\(two(s / 60 % 60))"
  }

  static func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
}

extension Int64 {
  func floorDivided(by d: Int64) -> Int64 {
    let q = self / d
    return (self % d != 0 && (self < 0) != (d < 0)) ? q - 1 : q
  }
}
