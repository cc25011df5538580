import Foundation
import SiteModel
import Yams

/// A YAML or JSON document that remembers where each value came from, so every error can
/// name the file, the line and the key. Environment variables may override any key.
public struct StructuredDocument {
  public enum Format: Sendable { case yaml, json }

  /// The file name as given.
  public let source: String
  let root: Node
  /// Dotted paths set from the environment, and the variable that set each.
  public private(set) var overrides: [String: String] = [:]

  public init(source: String, root: Node) {
    self.source = source
    self.root = root
  }

  /// Reads and parses a file. JSON goes through Foundation's strict parser first, so that
  /// JSON errors are JSON's, then through the YAML composer for the line of every value.
  public static func load(path: String, format: Format) throws(InputError) -> StructuredDocument {
    let text = try readText(path: path)
    return try parse(text, source: path, format: format)
  }

  public static func parse(_ text: String, source: String, format: Format) throws(InputError)
    -> StructuredDocument
  {
    if format == .json {
      do {
        _ = try JSONSerialization.jsonObject(with: Data(text.utf8))
      } catch {
        throw InputError(
          source: source, line: jsonErrorLine(error, text: text),
          message: "not valid JSON: \(jsonErrorReason(error))")
      }
    }
    do {
      guard let node = try Yams.compose(yaml: text) else {
        throw InputError(source: source, line: 1, message: "the file is empty")
      }
      return StructuredDocument(source: source, root: node)
    } catch let error as InputError {
      throw error
    } catch let error as YamlError {
      var line = yamlErrorLine(error)
      if case .duplicatedKeysInMapping(let duplicates, let context) = error, let key = duplicates.first {
        // Yams marks the mapping; the fix goes where the key is written the second time.
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let repeats = lines.indices.filter { $0 + 1 >= context.mark.line }.filter {
          lines[$0].drop { $0 == " " || $0 == "-" }.hasPrefix("\(key):")
        }
        if repeats.count >= 2 { line = repeats[1] + 1 }
      }
      throw InputError(source: source, line: line, message: "not valid YAML: \(yamlErrorReason(error))")
    } catch {
      throw InputError(source: source, message: "could not be parsed: \(error)")
    }
  }

  // MARK: - Environment overrides

  /// Applies every variable `PREFIX<KEY>__<KEY>...` as an override of that key (matched
  /// without regard to case; `__` separates nesting levels, a number picks a list entry).
  /// The value is read as a YAML scalar, so `600`, `true` and `text` all work.
  public func applyingEnvironment(_ environment: [String: String], prefix: String) throws(InputError)
    -> StructuredDocument
  {
    var root = self.root
    var overrides = self.overrides
    for (name, value) in environment.sorted(by: { $0.key < $1.key }) where name.hasPrefix(prefix) {
      let path = name.dropFirst(prefix.count).components(separatedBy: "__").map { $0.lowercased() }
      guard !path.isEmpty, !path.contains(where: \.isEmpty) else {
        throw InputError(
          source: "environment variable \(name)",
          message: "cannot tell which key it sets; write \(prefix)SECTION__KEY, e.g. \(prefix)SITE__IMPORT_LIMIT_KW")
      }
      root = try Self.setting(root, path: path[...], to: value, variable: name)
      overrides[path.joined(separator: ".")] = name
    }
    var document = StructuredDocument(source: source, root: root)
    document.overrides = overrides
    return document
  }

  private static func setting(_ node: Node, path: ArraySlice<String>, to value: String, variable: String)
    throws(InputError) -> Node
  {
    guard let key = path.first else { return Node(value, Tag(.implicit), .plain) }
    let rest = path.dropFirst()
    switch node {
    case .mapping(var mapping):
      var pairs = Array(mapping)
      if let at = pairs.firstIndex(where: { $0.key.string?.lowercased() == key }) {
        pairs[at].value = try setting(pairs[at].value, path: rest, to: value, variable: variable)
      } else {
        let fresh: Node = rest.isEmpty ? Node("") : (Int(rest.first!) != nil ? Node([Node]()) : Node([(Node, Node)]()))
        pairs.append((Node(key), try setting(fresh, path: rest, to: value, variable: variable)))
      }
      let mark = mapping.mark
      mapping = Node.Mapping(pairs, mapping.tag, mapping.style, mark)
      return .mapping(mapping)
    case .sequence(let sequence):
      var items = Array(sequence)
      guard let index = Int(key), index >= 0, index <= items.count else {
        throw InputError(
          source: "environment variable \(variable)",
          message: "'\(key)' is not an entry of that list (it has \(items.count))")
      }
      if index == items.count { items.append(Node([(Node, Node)]())) }
      items[index] = try setting(items[index], path: rest, to: value, variable: variable)
      return .sequence(Node.Sequence(items, sequence.tag, sequence.style, sequence.mark))
    default:
      if rest.isEmpty && path.count == 1 {
        return .mapping(Node.Mapping([(Node(key), Node(value, Tag(.implicit), .plain))]))
      }
      return .mapping(Node.Mapping([(Node(key), try setting(Node(""), path: rest, to: value, variable: variable))]))
    }
  }

  // MARK: - Decoding

  /// Decodes the whole document, or the value under `key`.
  public func decode<T: Decodable>(_ type: T.Type, key: String? = nil) throws(InputError) -> T {
    var node = root
    var prefix: [String] = []
    if let key {
      guard let sub = root[key] else {
        throw InputError(source: source, line: root.mark?.line, field: key, message: "missing section")
      }
      node = sub
      prefix = [key]
    }
    do {
      return try YAMLDecoder().decode(T.self, from: node)
    } catch let error as DecodingError {
      throw describe(error, prefix: prefix)
    } catch {
      throw InputError(source: source, message: "\(error)")
    }
  }

  /// An error about the value at a dotted path such as `chargers[2].max_charge_kw`.
  public func error(at path: [String], _ message: String) -> InputError {
    let dotted: String? = path.isEmpty ? nil : Self.dotted(path)
    if let variable = overrides[Self.plainPath(path)] {
      return InputError(source: "environment variable \(variable)", field: dotted, message: message)
    }
    return InputError(source: source, line: line(of: path), field: dotted, message: message)
  }

  /// The line of the deepest node along the path that exists.
  public func line(of path: [String]) -> Int? {
    var node = root
    var best = node.mark?.line
    for component in path {
      let next: Node?
      if let index = Int(component), case .sequence(let seq) = node {
        next = index < seq.count ? seq[index] : nil
      } else if case .mapping(let map) = node {
        // The key's own line reads best ("max_charge_kw: abc" is where the fix goes).
        if let pair = map.first(where: { $0.key.string == component }) {
          best = pair.key.mark?.line ?? best
          node = pair.value
          if node.mark != nil, case .scalar = node { best = node.mark?.line ?? best }
          continue
        }
        next = nil
      } else {
        next = nil
      }
      guard let found = next else { break }
      node = found
      best = node.mark?.line ?? best
    }
    return best
  }

  func describe(_ error: DecodingError, prefix: [String]) -> InputError {
    func components(_ path: [any CodingKey]) -> [String] {
      prefix + path.map { $0.intValue.map(String.init) ?? $0.stringValue }
    }
    switch error {
    case .keyNotFound(let key, let context):
      let parent = components(context.codingPath)
      if let typo = similarKey(to: key.stringValue, under: parent) {
        return self.error(at: parent + [typo], "unknown key; did you mean '\(key.stringValue)'?")
      }
      return self.error(at: parent + [key.stringValue], "missing; add `\(key.stringValue): ...`")
    case .typeMismatch(let type, let context):
      let path = components(context.codingPath)
      let found = node(at: path).map(Self.describeFound) ?? "something else"
      return self.error(at: path, "expected \(Self.describeType(type)), found \(found)")
    case .valueNotFound(let type, let context):
      return self.error(at: components(context.codingPath), "expected \(Self.describeType(type)), found nothing")
    case .dataCorrupted(let context):
      let path = components(context.codingPath)
      if context.debugDescription.hasPrefix("Cannot initialize"), let found = node(at: path) {
        // An enumeration's raw value: say what was written, the type's own doc lists the rest.
        return self.error(at: path, "\(Self.describeFound(found)) is not a value this key takes")
      }
      return self.error(at: path, context.debugDescription)
    @unknown default:
      return InputError(source: source, message: "\(error)")
    }
  }

  /// The node at a path, if there is one.
  func node(at path: [String]) -> Node? {
    var node = root
    for component in path {
      if let index = Int(component), case .sequence(let seq) = node {
        guard index < seq.count else { return nil }
        node = seq[index]
      } else if case .mapping(let map) = node, let next = map[component] {
        node = next
      } else {
        return nil
      }
    }
    return node
  }

  static func describeFound(_ node: Node) -> String {
    switch node {
    case .scalar(let scalar): return "'\(scalar.string.prefix(60))'"
    case .mapping: return "a mapping"
    case .sequence: return "a list"
    case .alias: return "an alias"
    }
  }

  /// A key under `parent` that is not `key` but close to it (a typo), if there is one.
  func similarKey(to key: String, under parent: [String]) -> String? {
    guard case .mapping(let map)? = node(at: parent) else { return nil }
    let candidates = map.keys.compactMap(\.string).filter { $0 != key }
    return candidates.min { editDistance($0, key) < editDistance($1, key) }
      .flatMap { editDistance($0, key) <= max(2, key.count / 4) ? $0 : nil }
  }

  static func describeType(_ type: Any.Type) -> String {
    switch type {
    case is Double.Type, is Float.Type: return "a number"
    case is Int.Type: return "a whole number"
    case is Bool.Type: return "true or false"
    case is String.Type: return "text"
    default:
      let name = String(describing: type)
      if name.hasPrefix("Array") || name.hasSuffix("Sequence") { return "a list" }
      if name.hasPrefix("Dictionary") || name.hasSuffix("Mapping") { return "a mapping (key: value lines)" }
      if name.hasSuffix("Scalar") { return "a single value" }
      return "a \(name)"
    }
  }

  static func dotted(_ path: [String]) -> String {
    var s = ""
    for c in path {
      if Int(c) != nil { s += "[\(c)]" } else { s += s.isEmpty ? c : ".\(c)" }
    }
    return s
  }

  static func plainPath(_ path: [String]) -> String { path.map { $0.lowercased() }.joined(separator: ".") }

  // MARK: - Unknown keys

  /// Keys in the document (under `key`, if given) that `value` does not have when encoded:
  /// typos such as `import_limt_kw` that a decoder would silently ignore.
  public func unknownKeys<T: Encodable>(comparedWith value: T, key: String? = nil) -> [InputError] {
    guard let encoded = try? Yams.compose(yaml: YAMLEncoder().encode(value)) else { return [] }
    var found: [InputError] = []
    let start = key.flatMap { root[$0] } ?? root
    walk(start, against: encoded, path: key.map { [$0] } ?? [], into: &found)
    return found
  }

  private func walk(_ node: Node, against known: Node, path: [String], into found: inout [InputError]) {
    switch (node, known) {
    case (.mapping(let map), .mapping(let knownMap)):
      for (k, v) in map {
        guard let name = k.string else { continue }
        if let knownValue = knownMap[name] {
          walk(v, against: knownValue, path: path + [name], into: &found)
        } else {
          found.append(error(at: path + [name], "unknown key; check its spelling"))
        }
      }
    case (.sequence(let seq), .sequence(let knownSeq)):
      for (i, item) in seq.enumerated() where i < knownSeq.count {
        walk(item, against: knownSeq[i], path: path + [String(i)], into: &found)
      }
    default:
      break
    }
  }
}

// MARK: - Reading files

/// Reads a text file, with an error that says which and why.
public func readText(path: String) throws(InputError) -> String {
  var isDirectory: ObjCBool = false
  guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
    throw InputError(source: path, message: "no such file")
  }
  if isDirectory.boolValue {
    throw InputError(source: path, message: "is a directory, not a file")
  }
  guard let data = FileManager.default.contents(atPath: path) else {
    throw InputError(source: path, message: "cannot be read (permissions?)")
  }
  guard let text = String(data: data, encoding: .utf8) else {
    throw InputError(source: path, message: "is not UTF-8 text")
  }
  return text
}

private func jsonErrorReason(_ error: any Error) -> String {
  let ns = error as NSError
  if let detail = ns.userInfo[NSDebugDescriptionErrorKey] as? String { return detail }
  return ns.localizedDescription
}

/// Foundation reports where JSON broke as a character index or in its description; turn
/// either into a line.
private func jsonErrorLine(_ error: any Error, text: String) -> Int? {
  let ns = error as NSError
  let description = jsonErrorReason(error)
  if let range = description.range(of: #"line (\d+)"#, options: .regularExpression) {
    return Int(description[range].dropFirst(5))
  }
  var index = ns.userInfo["NSJSONSerializationErrorIndex"] as? Int
  if index == nil, let range = description.range(of: #"character (\d+)"#, options: .regularExpression) {
    index = Int(description[range].dropFirst(10))
  }
  if description.localizedCaseInsensitiveContains("end of file")
    || description.localizedCaseInsensitiveContains("unexpected end")
  {
    return text.utf8.reduce(1) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) } - (text.hasSuffix("\n") ? 1 : 0)
  }
  if let index {
    let prefix = text.utf8.prefix(index)
    return prefix.reduce(1) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
  }
  return nil
}

private func yamlErrorLine(_ error: YamlError) -> Int? {
  switch error {
  case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
    return mark.line
  case .duplicatedKeysInMapping(_, let context):
    return context.mark.line
  default:
    return nil
  }
}

/// The problem in one line: Yams' own descriptions carry the whole document as context.
private func yamlErrorReason(_ error: YamlError) -> String {
  switch error {
  case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _):
    return problem
  case .duplicatedKeysInMapping(let duplicates, _):
    return "the key \(duplicates.map { "'\($0)'" }.joined(separator: ", ")) appears twice in one mapping"
  case .reader(let problem, _, _, _):
    return problem
  default:
    return String(describing: error).split(separator: "\n").first.map(String.init) ?? "unreadable"
  }
}

/// Levenshtein distance, for "did you mean" suggestions.
func editDistance(_ a: String, _ b: String) -> Int {
  let a = Array(a)
  let b = Array(b)
  if a.isEmpty || b.isEmpty { return max(a.count, b.count) }
  var previous = Array(0...b.count)
  for i in 1...a.count {
    var current = [i] + Array(repeating: 0, count: b.count)
    for j in 1...b.count {
      current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.count]
}
