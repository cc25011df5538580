/// One JSON schema (draft-06, the subset the OCPP 2.0.1 and 2.1 schemas use), compiled once
/// so that checking a message walks prepared nodes instead of re-reading schema JSON.
///
/// Checked: type, properties, required, additionalProperties, enum, `$ref` to
/// `#/definitions/X`, items, minItems, maxItems, minimum, maximum, minLength, maxLength and
/// format "date-time". Every other keyword is an annotation here and is ignored.
public struct JSONSchema: Sendable {
  let root: SchemaNode
  /// `$ref`s are resolved to indices into this array at compile time, so a lookup while
  /// validating costs no hashing and a missing definition fails at load, not per message.
  let definitions: [SchemaNode]

  public init(_ document: JSONValue) throws {
    let definitionsJSON = document["definitions"]?.objectValue ?? [:]
    let names = definitionsJSON.keys.sorted()
    let compiler = SchemaCompiler(index: Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, $0) }))
    definitions = try names.map { name in
      try compiler.compile(definitionsJSON[name] ?? .null, at: "definitions.\(name)")
    }
    root = try compiler.compile(document, at: "")
    try Self.rejectReferenceCycles(definitions, names: names)
  }

  /// Checks `value`, returning at most `limit` violations (none when it conforms).
  public func validate(_ value: JSONValue, limit: Int = SchemaViolation.defaultLimit) -> [SchemaViolation] {
    var validation = Validation(definitions: definitions, limit: max(1, limit))
    validation.check(value, against: root)
    return validation.violations
  }

  /// A definition that is only a `$ref` to itself (directly or in a ring) would make the
  /// validator loop forever on any value, so such a schema is refused when compiled.
  private static func rejectReferenceCycles(_ definitions: [SchemaNode], names: [String]) throws {
    for start in definitions.indices {
      var current = definitions[start].ref
      var steps = 0
      while let next = current {
        steps += 1
        if steps > definitions.count {
          throw SchemaCompileError(location: "definitions.\(names[start])", reason: "$ref cycle")
        }
        current = definitions[next].ref
      }
    }
  }
}

/// One way a message fails its schema: where (dotted path, `[i]` for array elements, empty
/// for the whole message) and what.
public struct SchemaViolation: Sendable, Hashable, CustomStringConvertible {
  /// Enough to fix a message without flooding a log when a charger sends garbage.
  public static let defaultLimit = 20

  public var path: String
  public var message: String

  public init(path: String, message: String) {
    self.path = path
    self.message = message
  }

  public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// A schema that cannot be compiled (a keyword with a value of the wrong shape, a `$ref`
/// that names no definition); `location` is the dotted path inside the schema document.
public struct SchemaCompileError: Error, Sendable, CustomStringConvertible {
  public var location: String
  public var reason: String

  public var description: String { location.isEmpty ? reason : "\(location): \(reason)" }
}

// MARK: - Compiled nodes

/// The JSON types a "type" keyword admits.
struct JSONTypes: OptionSet, Sendable, CustomStringConvertible {
  let rawValue: UInt8

  static let null = JSONTypes(rawValue: 1 << 0)
  static let boolean = JSONTypes(rawValue: 1 << 1)
  static let integer = JSONTypes(rawValue: 1 << 2)
  static let number = JSONTypes(rawValue: 1 << 3)
  static let string = JSONTypes(rawValue: 1 << 4)
  static let array = JSONTypes(rawValue: 1 << 5)
  static let object = JSONTypes(rawValue: 1 << 6)

  private static let named: [(String, JSONTypes)] = [
    ("null", .null), ("boolean", .boolean), ("integer", .integer), ("number", .number),
    ("string", .string), ("array", .array), ("object", .object),
  ]

  init?(name: String) {
    guard let match = Self.named.first(where: { $0.0 == name }) else { return nil }
    self = match.1
  }

  init(rawValue: UInt8) { self.rawValue = rawValue }

  func admits(_ value: JSONValue) -> Bool {
    switch value {
    case .null: contains(.null)
    case .bool: contains(.boolean)
    // "integer" is a number with no fractional part, whatever its spelling (3.0 counts).
    case .number(let n): contains(.number) || (contains(.integer) && n.isFinite && n.rounded(.towardZero) == n)
    case .string: contains(.string)
    case .array: contains(.array)
    case .object: contains(.object)
    }
  }

  var description: String {
    Self.named.filter { contains($0.1) }.map(\.0).joined(separator: " or ")
  }
}

enum AdditionalProperties: Sendable {
  case allowed
  case forbidden
  case schema(SchemaNode)
}

struct NamedProperty: Sendable {
  let name: String
  let node: SchemaNode
}

/// A compiled (sub)schema. A class because schemas nest (items, properties) and are shared.
final class SchemaNode: Sendable {
  /// Index into `JSONSchema.definitions`; in draft-06 a `$ref` replaces its siblings.
  let ref: Int?
  let types: JSONTypes?
  /// Sorted by name so that violations come out in the same order on every run.
  let properties: [NamedProperty]
  let propertyNames: Set<String>
  let required: [String]
  let additional: AdditionalProperties
  let allowed: Set<JSONValue>?
  let allowedText: String
  let items: SchemaNode?
  let minItems: Int?
  let maxItems: Int?
  let minimum: Double?
  let maximum: Double?
  let minLength: Int?
  let maxLength: Int?
  let isDateTime: Bool

  init(ref: Int) {
    self.ref = ref
    (types, properties, propertyNames, required, additional) = (nil, [], [], [], .allowed)
    (allowed, allowedText, items, minItems, maxItems) = (nil, "", nil, nil, nil)
    (minimum, maximum, minLength, maxLength, isDateTime) = (nil, nil, nil, nil, false)
  }

  init(_ keywords: [String: JSONValue], at location: String, compiler: SchemaCompiler) throws {
    let read = KeywordReader(keywords: keywords, location: location)
    ref = nil
    types = try read.types()
    properties = try (keywords["properties"]?.objectValue ?? [:]).sorted { $0.key < $1.key }.map { name, schema in
      NamedProperty(name: name, node: try compiler.compile(schema, at: read.child("properties.\(name)")))
    }
    propertyNames = Set(properties.map(\.name))
    required = try read.strings("required")
    switch keywords["additionalProperties"] {
    case .bool(false): additional = .forbidden
    case .object(let o): additional = .schema(try compiler.compile(.object(o), at: read.child("additionalProperties")))
    default: additional = .allowed
    }
    let enumValues = try keywords["enum"].map { value in
      guard let list = value.arrayValue else { throw read.error("enum must be an array") }
      return list
    }
    allowed = enumValues.map(Set.init)
    allowedText = (enumValues ?? []).map { $0.stringValue ?? $0.jsonText }.joined(separator: ", ")
    items = try keywords["items"].map { try compiler.compile($0, at: read.child("items")) }
    minItems = try read.count("minItems")
    maxItems = try read.count("maxItems")
    minimum = try read.number("minimum")
    maximum = try read.number("maximum")
    minLength = try read.count("minLength")
    maxLength = try read.count("maxLength")
    isDateTime = keywords["format"]?.stringValue == "date-time"
  }
}

/// Turns schema JSON into nodes; knows the definition names so `$ref`s become indices.
struct SchemaCompiler {
  private static let definitionPrefix = "#/definitions/"
  let index: [String: Int]

  func compile(_ schema: JSONValue, at location: String) throws -> SchemaNode {
    guard let keywords = schema.objectValue else {
      throw SchemaCompileError(location: location, reason: "a schema must be an object, found \(schema.typeName)")
    }
    guard let ref = keywords["$ref"] else { return try SchemaNode(keywords, at: location, compiler: self) }
    guard let target = ref.stringValue, target.hasPrefix(Self.definitionPrefix),
      let position = index[String(target.dropFirst(Self.definitionPrefix.count))]
    else {
      throw SchemaCompileError(location: location, reason: "$ref \(ref.jsonText) names no definition in this file")
    }
    return SchemaNode(ref: position)
  }
}

/// Reads keyword values of the expected shape, naming the keyword when one is malformed.
private struct KeywordReader {
  let keywords: [String: JSONValue]
  let location: String

  func child(_ name: String) -> String { location.isEmpty ? name : "\(location).\(name)" }
  func error(_ reason: String) -> SchemaCompileError { SchemaCompileError(location: location, reason: reason) }

  func types() throws -> JSONTypes? {
    switch keywords["type"] {
    case nil: return nil
    case .string(let name)?:
      guard let t = JSONTypes(name: name) else { throw error("unknown type \"\(name)\"") }
      return t
    case .array(let names)?:
      return try names.reduce(into: JSONTypes()) { all, name in
        guard let t = name.stringValue.flatMap(JSONTypes.init(name:)) else {
          throw error("unknown type \(name.jsonText)")
        }
        all.formUnion(t)
      }
    case let other?: throw error("type must be a string or an array, found \(other.typeName)")
    }
  }

  func strings(_ key: String) throws -> [String] {
    guard let value = keywords[key] else { return [] }
    guard let list = value.arrayValue?.compactMap(\.stringValue), list.count == value.arrayValue?.count else {
      throw error("\(key) must be an array of strings")
    }
    return list
  }

  func count(_ key: String) throws -> Int? {
    guard let value = keywords[key] else { return nil }
    guard let n = value.intValue, n >= 0 else { throw error("\(key) must be a non-negative integer") }
    return n
  }

  func number(_ key: String) throws -> Double? {
    guard let value = keywords[key] else { return nil }
    guard let n = value.doubleValue else { throw error("\(key) must be a number") }
    return n
  }
}

// MARK: - Validation

/// One walk over a message. The path is kept as components and only rendered into a string
/// when a violation is recorded: a valid message (the usual case) builds no strings at all.
struct Validation {
  enum Step {
    case key(String)
    case index(Int)
  }

  let definitions: [SchemaNode]
  let limit: Int
  private(set) var violations: [SchemaViolation] = []
  private var path: [Step] = []

  init(definitions: [SchemaNode], limit: Int) {
    self.definitions = definitions
    self.limit = limit
  }

  private var isFull: Bool { violations.count >= limit }

  mutating func check(_ value: JSONValue, against node: SchemaNode) {
    guard !isFull else { return }
    if let ref = node.ref { return check(value, against: definitions[ref]) }
    if let types = node.types, !types.admits(value) {
      // The other keywords would only repeat the same mistake in other words.
      return report("expected \(types), found \(value.typeName)")
    }
    if let allowed = node.allowed, !allowed.contains(value) {
      report("\(Self.show(value)) is not one of \(node.allowedText)")
    }
    switch value {
    case .number(let n): checkNumber(n, node)
    case .string(let s): checkString(s, node)
    case .array(let elements): checkArray(elements, node)
    case .object(let members): checkObject(members, node)
    case .null, .bool: break
    }
  }

  private mutating func checkNumber(_ n: Double, _ node: SchemaNode) {
    if let minimum = node.minimum, n < minimum {
      report("value \(Self.show(.number(n))) is below the minimum \(Self.show(.number(minimum)))")
    }
    if let maximum = node.maximum, n > maximum {
      report("value \(Self.show(.number(n))) is above the maximum \(Self.show(.number(maximum)))")
    }
  }

  private mutating func checkString(_ s: String, _ node: SchemaNode) {
    // JSON Schema counts code points. UTF-8 bytes are never fewer, so short strings (nearly
    // all of them) pass maxLength without counting.
    if let maxLength = node.maxLength, s.utf8.count > maxLength, s.unicodeScalars.count > maxLength {
      report("longer than \(Self.plural(maxLength, "character"))")
    }
    if let minLength = node.minLength, s.unicodeScalars.count < minLength {
      report("shorter than \(Self.plural(minLength, "character"))")
    }
    if node.isDateTime, !DateTimeFormat.isDateTime(s) {
      report("\(Self.show(.string(s))) is not an RFC 3339 date-time")
    }
  }

  private mutating func checkArray(_ elements: [JSONValue], _ node: SchemaNode) {
    if let minItems = node.minItems, elements.count < minItems {
      report("has \(Self.plural(elements.count, "item")), fewer than the minimum \(minItems)")
    }
    if let maxItems = node.maxItems, elements.count > maxItems {
      report("has \(Self.plural(elements.count, "item")), more than the maximum \(maxItems)")
    }
    guard let items = node.items else { return }
    for (i, element) in elements.enumerated() {
      path.append(.index(i))
      check(element, against: items)
      path.removeLast()
    }
  }

  private mutating func checkObject(_ members: [String: JSONValue], _ node: SchemaNode) {
    for name in node.required where members[name] == nil {
      report("required property \"\(name)\" is missing")
    }
    // Walking the schema's sorted names (not the dictionary, whose order changes from run to
    // run) keeps the report stable; counting matches tells whether any member is left over.
    var matched = 0
    for property in node.properties {
      guard let member = members[property.name] else { continue }
      matched += 1
      path.append(.key(property.name))
      check(member, against: property.node)
      path.removeLast()
    }
    guard matched < members.count else { return }
    let extra = members.keys.filter { !node.propertyNames.contains($0) }.sorted()
    switch node.additional {
    case .allowed: break
    case .forbidden: extra.forEach { report("property \"\($0)\" is not allowed") }
    case .schema(let schema):
      for name in extra {
        path.append(.key(name))
        check(members[name] ?? .null, against: schema)
        path.removeLast()
      }
    }
  }

  private mutating func report(_ message: String) {
    guard !isFull else { return }
    var rendered = ""
    for step in path {
      switch step {
      case .key(let name): rendered += rendered.isEmpty ? name : ".\(name)"
      case .index(let i): rendered += "[\(i)]"
      }
    }
    violations.append(SchemaViolation(path: rendered, message: message))
  }

  /// A value as it appears in a message: strings quoted (and cut short, since a charger may
  /// send kilobytes), integral numbers without ".0".
  private static func show(_ value: JSONValue) -> String {
    switch value {
    case .string(let s): s.count > 60 ? "\"\(s.prefix(60))…\"" : "\"\(s)\""
    case .number(let n) where n.isFinite && n.rounded() == n && abs(n) < 1e15: String(Int64(n))
    default: value.jsonText
    }
  }

  private static func plural(_ n: Int, _ noun: String) -> String { n == 1 ? "1 \(noun)" : "\(n) \(noun)s" }
}

/// RFC 3339 section 5.6 date-time (what JSON Schema's "date-time" format means), checked by
/// hand on the UTF-8 bytes: it runs for every timestamp of every message.
enum DateTimeFormat {
  static func isDateTime(_ text: String) -> Bool {
    var text = text
    return text.withUTF8 { isDateTime(bytes: $0) }
  }

  private static func isDateTime(bytes b: UnsafeBufferPointer<UInt8>) -> Bool {
    func number(_ at: Int, _ width: Int) -> Int? {
      guard at + width <= b.count else { return nil }
      var n = 0
      for i in at..<(at + width) {
        guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(b[i]) else { return nil }
        n = n * 10 + Int(b[i] - UInt8(ascii: "0"))
      }
      return n
    }
    func byte(_ at: Int, _ allowed: String) -> Bool { at < b.count && allowed.utf8.contains(b[at]) }

    guard let year = number(0, 4), byte(4, "-"), let month = number(5, 2), byte(7, "-"),
      let day = number(8, 2), byte(10, "Tt"), let hour = number(11, 2), byte(13, ":"),
      let minute = number(14, 2), byte(16, ":"), let second = number(17, 2),
      (1...12).contains(month), (1...daysIn(month, of: year)).contains(day),
      hour <= 23, minute <= 59, second <= 60  // 60: a leap second
    else { return false }
    var i = 19
    if byte(i, ".") {
      i += 1
      let digits = i
      while number(i, 1) != nil { i += 1 }
      guard i > digits else { return false }
    }
    if byte(i, "Zz") { return i + 1 == b.count }
    guard byte(i, "+-"), let offsetHour = number(i + 1, 2), byte(i + 3, ":"), let offsetMinute = number(i + 4, 2)
    else { return false }
    return offsetHour <= 23 && offsetMinute <= 59 && i + 6 == b.count
  }

  private static func daysIn(_ month: Int, of year: Int) -> Int {
    switch month {
    case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
    case 4, 6, 9, 11: 30
    default: 31
    }
  }
}
