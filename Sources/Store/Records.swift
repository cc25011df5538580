import Foundation

/// The four kinds of record the central program takes (../shared/CENTRAL-API.md).
public enum RecordKind: String, Sendable, Hashable, CaseIterable {
  /// Periodic measurements and setpoints. The only kind the disk budget may thin.
  case telemetry
  /// Mode changes, outages, transfer switch operations, demand-response participation,
  /// alarms, the appliance starting and stopping.
  case event
  /// Who asked for what over a panel, and the outcome.
  case command
  /// A vehicle's plug-in session summary.
  case session
}

/// A record before the store numbers it. `body` is a JSON object holding every member
/// except `seq`, `kind` and `time`, which the store adds when it writes the line.
public struct RecordDraft: Sendable, Hashable {
  public var kind: RecordKind
  /// Milliseconds since 1970 UTC.
  public var timeMS: Int64
  /// A JSON object, `{...}`; `{}` for a record with nothing else to say.
  public var body: String

  public init(kind: RecordKind, time: Date, body: String) {
    self.kind = kind
    self.timeMS = Int64((time.timeIntervalSince1970 * 1000).rounded())
    self.body = body
  }

  public init(kind: RecordKind, timeMS: Int64, body: String) {
    self.kind = kind
    self.timeMS = timeMS
    self.body = body
  }
}

/// One numbered record as it is uploaded: an NDJSON line without its newline.
enum RecordLine {
  /// `{"seq":N,"kind":"K","time":"T",<body members>}`. The body is spliced in as text:
  /// it was valid JSON when it was drafted, and parsing it again per upload would cost
  /// more than the rest of the upload together.
  static func make(seq: Int64, kind: String, timeMS: Int64, body: String) -> String {
    var line = "{\"seq\":\(seq),\"kind\":\"\(kind)\",\"time\":\"\(isoTime(ms: timeMS))\""
    let members = body.utf8.dropFirst().dropLast()  // without { and }
    if members.contains(where: { $0 != UInt8(ascii: " ") }) {
      line += ","
      line += String(decoding: members, as: UTF8.self)
    }
    line += "}"
    return line
  }

  /// UTC, ISO 8601 with milliseconds: `2026-07-14T19:00:01.250Z`.
  static func isoTime(ms: Int64) -> String {
    var seconds = time_t(ms.floorDiv(1000))
    let millis = Int(ms - Int64(seconds) * 1000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func pad(_ v: Int32, _ width: Int) -> String {
      let s = String(v)
      return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
    return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
      + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(millis), 3))Z"
  }
}

/// JSON text helpers for record bodies, so that every writer of bodies quotes alike.
public enum RecordJSON {
  /// A JSON string literal.
  public static func string(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      case _ where scalar.value < 0x20:
        let hex = String(scalar.value, radix: 16)
        out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
      default: out.unicodeScalars.append(scalar)
      }
    }
    return out + "\""
  }

  /// A time as records carry it: UTC, ISO 8601 with milliseconds, quoted.
  public static func time(_ date: Date) -> String {
    string(RecordLine.isoTime(ms: Int64((date.timeIntervalSince1970 * 1000).rounded())))
  }

  /// A JSON number with at most `decimals` decimals; non-finite values become null
  /// (JSON has no NaN, and the receiver refuses it).
  public static func number(_ v: Double, decimals: Int = 3) -> String {
    guard v.isFinite else { return "null" }
    let scale = pow(10, Double(decimals))
    let rounded = (v * scale).rounded() / scale
    if rounded == rounded.rounded(.towardZero) && abs(rounded) < 1e15 { return String(Int64(rounded)) }
    return String(rounded)
  }

  /// `{"a":1,"b":"x"}` from members already encoded as JSON values, in the given order.
  public static func object(_ members: [(String, String)]) -> String {
    "{" + members.map { "\(string($0.0)):\($0.1)" }.joined(separator: ",") + "}"
  }
}
