import Foundation

/// A JSON document as OCPP carries it: what a charger sent, before and after it is checked
/// against its schema. Relayed messages keep every field, including ones this appliance
/// does not model (vendor data, newer editions' additions).
public enum JSONValue: Sendable, Hashable {
  case null
  case bool(Bool)
  case number(Double)
  case string(String)
  case array([JSONValue])
  case object([String: JSONValue])

  public subscript(key: String) -> JSONValue? {
    if case .object(let o) = self { return o[key] }
    return nil
  }

  public subscript(index: Int) -> JSONValue? {
    if case .array(let a) = self, a.indices.contains(index) { return a[index] }
    return nil
  }

  public var stringValue: String? {
    if case .string(let s) = self { return s }
    return nil
  }
  public var doubleValue: Double? {
    if case .number(let n) = self { return n }
    return nil
  }
  /// A number with no fractional part (JSON Schema's "integer": 3.0 counts).
  public var intValue: Int? {
    if case .number(let n) = self, n.rounded() == n, abs(n) < 9.0e15 { return Int(n) }
    return nil
  }
  public var boolValue: Bool? {
    if case .bool(let b) = self { return b }
    return nil
  }
  public var arrayValue: [JSONValue]? {
    if case .array(let a) = self { return a }
    return nil
  }
  public var objectValue: [String: JSONValue]? {
    if case .object(let o) = self { return o }
    return nil
  }

  /// The JSON type's name, for error messages ("expected object, found string").
  public var typeName: String {
    switch self {
    case .null: "null"
    case .bool: "boolean"
    case .number(let n): n.rounded() == n ? "integer" : "number"
    case .string: "string"
    case .array: "array"
    case .object: "object"
    }
  }
}

extension JSONValue: Codable {
  public init(from decoder: any Decoder) throws {
    let c = try decoder.singleValueContainer()
    if c.decodeNil() {
      self = .null
    } else if let b = try? c.decode(Bool.self) {
      self = .bool(b)
    } else if let n = try? c.decode(Double.self) {
      self = .number(n)
    } else if let s = try? c.decode(String.self) {
      self = .string(s)
    } else if let a = try? c.decode([JSONValue].self) {
      self = .array(a)
    } else {
      self = .object(try c.decode([String: JSONValue].self))
    }
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.singleValueContainer()
    switch self {
    case .null: try c.encodeNil()
    case .bool(let b): try c.encode(b)
    case .number(let n):
      // Integers go out without ".0": some chargers parse ids and counts as integers only.
      if n.rounded() == n, abs(n) < 9.0e15 { try c.encode(Int64(n)) } else { try c.encode(n) }
    case .string(let s): try c.encode(s)
    case .array(let a): try c.encode(a)
    case .object(let o): try c.encode(o)
    }
  }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByFloatLiteral, ExpressibleByIntegerLiteral,
  ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
  public init(stringLiteral value: String) { self = .string(value) }
  public init(floatLiteral value: Double) { self = .number(value) }
  public init(integerLiteral value: Int) { self = .number(Double(value)) }
  public init(booleanLiteral value: Bool) { self = .bool(value) }
  public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
  public init(dictionaryLiteral elements: (String, JSONValue)...) {
    self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
  }
  public init(nilLiteral: ()) { self = .null }
}

extension JSONValue {
  /// Parses UTF-8 JSON text; throws with the position of the first error.
  public static func parse(_ text: some StringProtocol) throws -> JSONValue {
    try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
  }

  public static func parse(_ data: Data) throws -> JSONValue {
    try JSONDecoder().decode(JSONValue.self, from: data)
  }

  /// Compact JSON text with sorted keys (stable for logs and tests).
  public var jsonText: String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return (try? String(decoding: encoder.encode(self), as: UTF8.self)) ?? "null"
  }
}

/// The two editions this appliance speaks, by their WebSocket subprotocol names.
public enum OCPPVersion: String, Sendable, Hashable, CaseIterable, Codable {
  /// OCPP 2.1: bidirectional (V2X) power transfer, setpoints with a sign.
  case v21 = "ocpp2.1"
  /// OCPP 2.0.1: charge limits only; never asked to discharge.
  case v201 = "ocpp2.0.1"

  /// Subdirectory of the bundled schemas.
  var schemaDirectory: String {
    switch self {
    case .v21: "v21"
    case .v201: "v201"
    }
  }

  /// Whether this edition can carry a discharge setpoint (2.1's CentralSetpoint mode).
  public var supportsDischarge: Bool { self == .v21 }
}
