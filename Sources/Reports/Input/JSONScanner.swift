import Foundation

/// A JSON value inside a record's bytes, decoded only as far as a report needs: numbers,
/// booleans and null at once, strings and nested values as byte ranges read on demand.
/// A year of 5-second telemetry is millions of lines; a general parser building
/// dictionaries per line would take minutes, this takes seconds.
enum JSONToken {
  case number(Double)
  /// The bytes between the quotes; `escaped` when they hold a backslash.
  case string(Range<Int>, escaped: Bool)
  case bool(Bool)
  case null
  /// From `[` to after `]`.
  case array(Range<Int>)
  /// From `{` to after `}`.
  case object(Range<Int>)
}

/// Why a line is not a JSON object, and where (a 1-based column).
struct JSONScanError: Error, CustomStringConvertible {
  var column: Int
  var problem: String
  var description: String { "column \(column): \(problem)" }
}

/// One JSON object's members over borrowed bytes (valid while the bytes are).
struct JSONObjectView {
  let bytes: UnsafeRawBufferPointer
  private(set) var members: [(key: Range<Int>, value: JSONToken)] = []

  /// Parses the object spanning `range` of `bytes` (the whole of it by default): every
  /// nested value is checked, so a line cut short or garbled is refused here.
  init(bytes: UnsafeRawBufferPointer, range: Range<Int>? = nil) throws(JSONScanError) {
    self.bytes = bytes
    var scanner = JSONScanner(bytes: bytes, position: range?.lowerBound ?? 0, end: range?.upperBound ?? bytes.count)
    scanner.skipSpace()
    members.reserveCapacity(32)
    try scanner.objectMembers { key, value in members.append((key, value)) }
    scanner.skipSpace()
    guard scanner.position == scanner.end else {
      throw JSONScanError(column: scanner.position + 1, problem: "text after the object")
    }
  }

  /// The value of member `key` (an ASCII name), nil when absent.
  subscript(key: StaticString) -> JSONToken? {
    for m in members where self.key(m.key, is: key) { return m.value }
    return nil
  }

  /// Whether the bytes at `range` are `other`.
  @inline(__always) func bytes(_ range: Range<Int>, equal other: [UInt8]) -> Bool {
    guard range.count == other.count else { return false }
    guard !other.isEmpty else { return true }
    return other.withUnsafeBytes { memcmp(bytes.baseAddress! + range.lowerBound, $0.baseAddress!, range.count) == 0 }
  }

  /// Whether the name at `range` is `name`: the length and first byte before the rest.
  @inline(__always) func key(_ range: Range<Int>, is name: StaticString) -> Bool {
    let n = name.utf8CodeUnitCount
    guard range.count == n, n > 0, bytes[range.lowerBound] == name.utf8Start.pointee else { return false }
    return memcmp(bytes.baseAddress! + range.lowerBound, name.utf8Start, n) == 0
  }

  func number(_ key: StaticString) -> Double? {
    if case .number(let v)? = self[key] { return v }
    return nil
  }

  func bool(_ key: StaticString) -> Bool? {
    if case .bool(let v)? = self[key] { return v }
    return nil
  }

  func string(_ key: StaticString) -> String? {
    guard let t = self[key] else { return nil }
    return string(t)
  }

  func string(_ token: JSONToken) -> String? {
    guard case .string(let r, let escaped) = token else { return nil }
    let raw = UnsafeRawBufferPointer(rebasing: bytes[r])
    guard escaped else { return String(decoding: raw, as: UTF8.self) }
    // Rare in records (a staff member's quoted reason): let Foundation unescape it.
    let quoted = Data([UInt8(ascii: "\"")] + Array(raw) + [UInt8(ascii: "\"")])
    return try? JSONDecoder().decode(String.self, from: quoted)
  }

  /// Whether member `key` is a string equal to `value`, without making a String.
  func stringEquals(_ key: StaticString, _ value: StaticString) -> Bool {
    guard case .string(let r, false)? = self[key], r.count == value.utf8CodeUnitCount else { return false }
    return memcmp(bytes.baseAddress! + r.lowerBound, value.utf8Start, r.count) == 0
  }

  /// The time member (`"2026-07-14T19:00:01.250Z"`) in milliseconds since 1970 UTC.
  func timeMS(_ key: StaticString) -> Int64? {
    guard case .string(let r, false)? = self[key] else { return nil }
    return RecordTime.parseMS(UnsafeRawBufferPointer(rebasing: bytes[r]))
  }

  /// The objects of the array member `key` (elements that are not objects are skipped).
  func objects(_ key: StaticString) -> [JSONObjectView] {
    guard case .array(let r)? = self[key] else { return [] }
    var out: [JSONObjectView] = []
    var scanner = JSONScanner(bytes: bytes, position: r.lowerBound, end: r.upperBound)
    try? scanner.arrayElements { token in
      if case .object(let o) = token, let view = try? JSONObjectView(bytes: bytes, range: o) { out.append(view) }
    }
    return out
  }
}

/// What `objectsInArray` fills, one per object.
protocol DefaultInitializable { init() }

/// A byte-level JSON reader: RFC 8259 grammar, numbers read as Double.
struct JSONScanner {
  let bytes: UnsafeRawBufferPointer
  var position: Int
  let end: Int

  private func fail(_ problem: String) -> JSONScanError {
    JSONScanError(column: position + 1, problem: position >= end ? "the line ends inside a value" : problem)
  }

  @inline(__always) private func peek() -> UInt8? { position < end ? bytes[position] : nil }

  mutating func skipSpace() {
    while position < end {
      let c = bytes[position]
      guard c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D else { return }
      position += 1
    }
  }

  /// `{ "k": v, ... }` from the current position; calls `member` for each.
  mutating func objectMembers(_ member: (Range<Int>, JSONToken) -> Void) throws(JSONScanError) {
    guard peek() == UInt8(ascii: "{") else { throw fail("expected an object") }
    position += 1
    skipSpace()
    if peek() == UInt8(ascii: "}") {
      position += 1
      return
    }
    while true {
      skipSpace()
      guard peek() == UInt8(ascii: "\"") else { throw fail("expected a member name") }
      guard case .string(let key, _) = try string() else { throw fail("expected a member name") }
      skipSpace()
      guard peek() == UInt8(ascii: ":") else { throw fail("expected ':'") }
      position += 1
      skipSpace()
      member(key, try value())
      skipSpace()
      switch peek() {
      case UInt8(ascii: ","): position += 1
      case UInt8(ascii: "}"):
        position += 1
        return
      default: throw fail("expected ',' or '}'")
      }
    }
  }

  /// For `[{...}, ...]` from the current position: each object's members go to `member`
  /// with a fresh `T`, which `element` then receives. Elements that are not objects are
  /// skipped.
  mutating func objectsInArray<T: DefaultInitializable>(
    _ member: (Range<Int>, JSONToken, inout T) -> Void, element: (T) -> Void
  ) throws(JSONScanError) {
    try eachElement { (scanner: inout JSONScanner) throws(JSONScanError) in
      if scanner.peek() == UInt8(ascii: "{") {
        var t = T()
        try scanner.objectMembers { key, value in member(key, value, &t) }
        element(t)
      } else {
        _ = try scanner.value()
      }
    }
  }

  mutating func arrayElements(_ element: (JSONToken) -> Void) throws(JSONScanError) {
    try eachElement { (scanner: inout JSONScanner) throws(JSONScanError) in element(try scanner.value()) }
  }

  /// `[ e, ... ]` from the current position: `read` consumes each element.
  private mutating func eachElement(_ read: (inout JSONScanner) throws(JSONScanError) -> Void) throws(JSONScanError) {
    guard peek() == UInt8(ascii: "[") else { throw fail("expected an array") }
    position += 1
    skipSpace()
    if peek() == UInt8(ascii: "]") {
      position += 1
      return
    }
    while true {
      skipSpace()
      try read(&self)
      skipSpace()
      switch peek() {
      case UInt8(ascii: ","): position += 1
      case UInt8(ascii: "]"):
        position += 1
        return
      default: throw fail("expected ',' or ']'")
      }
    }
  }

  mutating func value() throws(JSONScanError) -> JSONToken {
    guard let c = peek() else { throw fail("expected a value") }
    switch c {
    case UInt8(ascii: "\""): return try string()
    case UInt8(ascii: "{"), UInt8(ascii: "["):
      // A nested value is only delimited here (strings and brackets), and read when asked
      // for: most lines' arrays are read once, not twice.
      let start = position
      try skipContainer()
      return c == UInt8(ascii: "{") ? .object(start..<position) : .array(start..<position)
    case UInt8(ascii: "t"): return try literal("true", .bool(true))
    case UInt8(ascii: "f"): return try literal("false", .bool(false))
    case UInt8(ascii: "n"): return try literal("null", .null)
    default: return try number()
    }
  }

  /// Past the `{...}` or `[...]` that starts here, brackets balanced outside strings.
  private mutating func skipContainer() throws(JSONScanError) {
    var depth = 0
    while position < end {
      let c = bytes[position]
      switch c {
      case UInt8(ascii: "\""):
        _ = try string()
        continue
      case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
      case UInt8(ascii: "}"), UInt8(ascii: "]"):
        depth -= 1
        if depth == 0 {
          position += 1
          return
        }
      default: break
      }
      position += 1
    }
    throw fail("the line ends inside a value")
  }

  private mutating func literal(_ word: StaticString, _ token: JSONToken) throws(JSONScanError) -> JSONToken {
    let n = word.utf8CodeUnitCount
    guard position + n <= end, memcmp(bytes.baseAddress! + position, word.utf8Start, n) == 0 else {
      throw fail("not a JSON value")
    }
    position += n
    return token
  }

  private mutating func string() throws(JSONScanError) -> JSONToken {
    position += 1  // the opening quote
    let start = position
    var escaped = false
    let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
    var p = position
    while p < end {
      let c = base[p]
      if c == 0x22 {  // "
        position = p + 1
        return .string(start..<p, escaped: escaped)
      }
      if c == 0x5C {  // \
        escaped = true
        p += 2
        continue
      }
      if c < 0x20 {
        position = p
        throw fail("a control character inside a string")
      }
      p += 1
    }
    position = end
    throw fail("a string that does not end")
  }

  private static let powersOfTen: [Double] = (0...22).map { pow(10, Double($0)) }

  private mutating func number() throws(JSONScanError) -> JSONToken {
    let start = position
    var negative = false
    if peek() == UInt8(ascii: "-") {
      negative = true
      position += 1
    }
    var mantissa: UInt64 = 0
    var digits = 0
    var fractionDigits = 0
    while let c = peek(), c >= 0x30, c <= 0x39 {
      if digits < 19 { mantissa = mantissa * 10 + UInt64(c - 0x30) }
      digits += 1
      position += 1
    }
    guard digits > 0 else { throw fail("not a JSON value") }
    if peek() == UInt8(ascii: ".") {
      position += 1
      var count = 0
      while let c = peek(), c >= 0x30, c <= 0x39 {
        count += 1
        if digits < 19 {
          mantissa = mantissa * 10 + UInt64(c - 0x30)
          fractionDigits += 1
        }
        digits += 1
        position += 1
      }
      guard count > 0 else { throw fail("a number with no digits after '.'") }
    }
    var hasExponent = false
    if let c = peek(), c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
      hasExponent = true
      position += 1
      if let s = peek(), s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { position += 1 }
      var expDigits = 0
      while let d = peek(), d >= 0x30, d <= 0x39 {
        expDigits += 1
        position += 1
      }
      guard expDigits > 0 else { throw fail("a number with an empty exponent") }
    }
    if !hasExponent && digits <= 15 && mantissa < (1 << 53) {
      // Exact: an integer below 2^53 divided by an exact power of ten rounds once.
      let v = Double(mantissa) / Self.powersOfTen[fractionDigits]
      return .number(negative ? -v : v)
    }
    let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
    guard let v = Double(text), v.isFinite else { throw fail("not a finite number") }
    return .number(v)
  }
}
