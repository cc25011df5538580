import Foundation

/// A small JSON path: `$`, then `.name` members and `[n]` array elements, e.g.
/// `$.power.total`, `$.channels[2].w`, `$["odd key"]` is not supported (meters don't need it).
public struct JSONPath: Sendable, Hashable, CustomStringConvertible {
  enum Step: Sendable, Hashable {
    case member(String)
    case element(Int)
  }
  let steps: [Step]
  public let description: String

  public init?(_ text: String) {
    var rest = Substring(text)
    guard rest.first == "$" else { return nil }
    rest = rest.dropFirst()
    var steps: [Step] = []
    while let c = rest.first {
      if c == "." {
        rest = rest.dropFirst()
        let name = rest.prefix { $0 != "." && $0 != "[" }
        guard !name.isEmpty else { return nil }
        steps.append(.member(String(name)))
        rest = rest.dropFirst(name.count)
      } else if c == "[" {
        guard let close = rest.firstIndex(of: "]"), let n = Int(rest[rest.index(after: rest.startIndex)..<close]),
          n >= 0
        else { return nil }
        steps.append(.element(n))
        rest = rest[rest.index(after: close)...]
      } else {
        return nil
      }
    }
    self.steps = steps
    self.description = text
  }

  /// The value at this path in a parsed JSON document, or why there is none.
  public func value(in document: Any) -> Result<Any, JSONPathError> {
    var node = document
    var walked = "$"
    for step in steps {
      switch step {
      case .member(let name):
        walked += ".\(name)"
        guard let object = node as? [String: Any] else { return .failure(.notAnObject(at: walked)) }
        guard let next = object[name] else { return .failure(.missing(walked)) }
        node = next
      case .element(let n):
        walked += "[\(n)]"
        guard let array = node as? [Any] else { return .failure(.notAnArray(at: walked)) }
        guard n < array.count else { return .failure(.missing(walked)) }
        node = array[n]
      }
    }
    return .success(node)
  }
}

public enum JSONPathError: Error, Sendable, CustomStringConvertible {
  case missing(String)
  case notAnObject(at: String)
  case notAnArray(at: String)
  public var description: String {
    switch self {
    case .missing(let p): "nothing at \(p)"
    case .notAnObject(let p): "no object to look \(p) up in"
    case .notAnArray(let p): "no array to look \(p) up in"
    }
  }
}
