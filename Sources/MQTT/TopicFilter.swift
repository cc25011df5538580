/// An MQTT topic filter (`building/+/power`, `microgrid-edge/#`) and the matching rules of
/// MQTT 3.1.1 § 4.7: `+` is one level, `#` is the rest (including none), and filters that
/// start with a wildcard do not match topics starting with `$`.
public struct TopicFilter: Sendable, Hashable, CustomStringConvertible {
  public let text: String
  private let levels: [Substring]

  /// Nil when `text` is not a valid filter (empty, `#` not last, a wildcard sharing a level).
  public init?(_ text: String) {
    guard !text.isEmpty else { return nil }
    let levels = text.split(separator: "/", omittingEmptySubsequences: false)
    for (i, level) in levels.enumerated() {
      if level.contains("#") && (level != "#" || i != levels.count - 1) { return nil }
      if level.contains("+") && level != "+" { return nil }
    }
    self.text = text
    self.levels = levels
  }

  public var description: String { text }
  public var hasWildcards: Bool { levels.contains { $0 == "+" || $0 == "#" } }

  public func matches(_ topic: String) -> Bool {
    if topic.hasPrefix("$") && (levels.first == "+" || levels.first == "#") { return false }
    var index = 0
    for level in topic.split(separator: "/", omittingEmptySubsequences: false) {
      guard index < levels.count else { return false }
      let pattern = levels[index]
      if pattern == "#" { return true }
      if pattern != "+" && pattern != level { return false }
      index += 1
    }
    // "a/#" also matches "a" itself.
    return index == levels.count || (index == levels.count - 1 && levels[index] == "#")
  }

  /// The topic's level that this filter's `+` at `wildcardIndex` (0-based, counting only
  /// `+` levels) matched, e.g. the user in `site/command/+`.
  public func capture(_ topic: String, wildcard wildcardIndex: Int = 0) -> String? {
    guard matches(topic) else { return nil }
    var seen = 0
    for (pattern, level) in zip(levels, topic.split(separator: "/", omittingEmptySubsequences: false))
    where pattern == "+" {
      if seen == wildcardIndex { return String(level) }
      seen += 1
    }
    return nil
  }
}
