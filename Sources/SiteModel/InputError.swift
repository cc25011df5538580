/// Bad input from a file or the environment, with what was wrong and where. The executable
/// prints it as one line and exits with status 2; nothing that reads input crashes on it.
public struct InputError: Error, Sendable, Hashable, CustomStringConvertible {
  /// The file (or `environment variable NAME`) the input came from.
  public var source: String
  /// 1-based line, where there is one.
  public var line: Int?
  /// The key, column or field name, dotted for nesting (`chargers[2].max_charge_kw`).
  public var field: String?
  public var message: String

  public init(source: String, line: Int? = nil, field: String? = nil, message: String) {
    self.source = source
    self.line = line
    self.field = field
    self.message = message
  }

  public var description: String {
    var s = source
    if let line { s += ":\(line)" }
    s += ": "
    if let field { s += "\(field): " }
    return s + message
  }
}
