import Foundation

/// A secret kept in a file of its own (a broker password, a charger's password, the
/// central program's token): its first line, trimmed. Read when it is needed, not when the
/// configuration loads, so that an appliance installed before its secrets are put in
/// place comes up, says which file it waits for, and uses the file once it is there.
public enum SecretFile {
  public struct Problem: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case unreadable, empty }
    public let kind: Kind
    public let path: String
    public var description: String {
      kind == .unreadable ? "\(path) cannot be read" : "\(path) has nothing on its first line"
    }
  }

  /// The first line of the file at `path`, or why there is none.
  public static func firstLine(of path: String) -> Result<String, Problem> {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      return .failure(Problem(kind: .unreadable, path: path))
    }
    let first = String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
      .trimmingCharacters(in: .whitespaces)
    guard !first.isEmpty else { return .failure(Problem(kind: .empty, path: path)) }
    return .success(first)
  }
}
