import SiteModel

/// One user of the appliance's broker that provisioning gives a password, and who uses it.
public struct BrokerUser: Sendable, Hashable {
  /// Who logs in with the password, which says where the technician sets it.
  public enum Role: Sendable, Hashable {
    /// The daemon itself (`mqtt.username`): its password lives in `mqtt.password_file`.
    case appliance
    /// A meter gateway: the ACL lets it write under `building/meters/`.
    case meterGateway
    /// Home Assistant: the user its discovered controls command as.
    case homeAssistant
    /// A panel named with `--panel`.
    case panel
    /// Any other user the ACL names.
    case client
  }

  public var name: String
  public var role: Role
  /// Where the name came from (`FILE:LINE`, `site.yaml: mqtt.username`, `--panel`), for errors.
  public var source: String

  public init(name: String, role: Role, source: String) {
    self.name = name
    self.role = role
    self.source = source
  }

  /// Why `name` cannot be a user of this broker, or nil. A user name is one topic level:
  /// the ACL lets each user command only on `P/command/<its name>`, which the appliance
  /// hears through `P/command/+`; a `/` would put that topic deeper than `+` reaches, and
  /// mosquitto denies every `pattern` rule to a name with `+` or `#`. A `:` would end the
  /// name early in mosquitto's password file.
  public static func problem(with name: String) -> String? {
    if name.isEmpty { return "a user name cannot be empty" }
    if name.contains("/") {
      return
        "'\(name)' contains '/': a user name is one topic level (its command topic would be deeper than P/command/+, so the appliance would never hear it)"
    }
    if name.contains("+") || name.contains("#") {
      return
        "'\(name)' contains '+' or '#': mosquitto denies every pattern rule (reading status, commanding) to such a user"
    }
    if name.contains(":") { return "'\(name)' contains ':', which ends the user name in mosquitto's password file" }
    if name.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
      return "'\(name)' contains a space or a control character"
    }
    return nil
  }
}

/// The `user` lines of a mosquitto ACL file (rootfs-overlay/etc/mosquitto/microgrid-edge.acl),
/// read the way mosquitto 2.0 reads them: a line whose first character is `#` is a comment,
/// the first word is the keyword, and after `user` the rest of the line is the name.
public enum MosquittoACL {
  public struct User: Sendable, Hashable {
    public var name: String
    /// 1-based line of its `user` line.
    public var line: Int
    /// Whether a `topic write|readwrite building/meters/...` rule follows it: a meter gateway.
    public var writesMeterTopics: Bool
  }

  /// The users `text` (the file at `path`) names, in the file's order; an error names the
  /// file and line of a `user` line without a name or a file that names nobody.
  public static func users(in text: String, path: String) throws(InputError) -> [User] {
    var users: [User] = []
    for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let line = raw.drop(while: { $0 == " " })
      if raw.first == "#" { continue }
      let words = line.split(separator: " ", maxSplits: 1).map(String.init)
      guard let keyword = words.first else { continue }
      let rest = words.count > 1 ? words[1].trimmingWhitespace() : ""
      switch keyword.trimmingWhitespace() {
      case "user":
        guard !rest.isEmpty else {
          throw InputError(source: path, line: index + 1, message: "a user line names no user")
        }
        users.append(User(name: rest, line: index + 1, writesMeterTopics: false))
      case "topic":
        let parts = rest.split(separator: " ").map(String.init)
        let access = parts.count > 1 ? parts[0] : "readwrite"
        let topic = parts.last ?? ""
        if !users.isEmpty, access == "write" || access == "readwrite", topic.hasPrefix("building/meters/") {
          users[users.count - 1].writesMeterTopics = true
        }
      default: continue
      }
    }
    guard !users.isEmpty else {
      throw InputError(
        source: path, message: "names no user (no 'user NAME' line): there is nobody to give a password to")
    }
    return users
  }
}

extension String {
  func trimmingWhitespace() -> String {
    let scalars = unicodeScalars
    guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
      let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
    else { return "" }
    return String(scalars[first...last])
  }
}
