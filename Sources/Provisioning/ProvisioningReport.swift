/// What `provision` tells the technician. The summary holds no secret (it may be read by
/// anyone near the terminal or end up in a ticket); the new passwords are in `credentials`,
/// which goes to the terminal or to a root-only file, never to a log.
public struct ProvisioningReport: Sendable {
  public var plan: ProvisioningPlan
  public var passwordFilePath: String
  /// Owner or mode changes made to files whose content stayed: (path, what changed).
  public var ownershipFixes: [(path: String, change: String)]
  /// Where the appliance's own password is (for the line about its user).
  public var appliancePasswordFile: String?

  public init(
    plan: ProvisioningPlan, passwordFilePath: String, ownershipFixes: [(path: String, change: String)],
    appliancePasswordFile: String?
  ) {
    self.plan = plan
    self.passwordFilePath = passwordFilePath
    self.ownershipFixes = ownershipFixes
    self.appliancePasswordFile = appliancePasswordFile
  }

  public var changedAnything: Bool {
    plan.passwordFileText != nil || !plan.secretWrites.isEmpty || !ownershipFixes.isEmpty
  }

  /// The summary, one line per secret; `credentials` says where the new passwords went.
  public func summary(credentials: String?) -> [String] {
    var lines: [String] = []
    let users = plan.outcomes.filter { if case .brokerUser = $0.subject { true } else { false } }
    let chargers = plan.outcomes.filter { if case .charger = $0.subject { true } else { false } }
    let token = plan.outcomes.filter { if case .centralToken = $0.subject { true } else { false } }
    if !users.isEmpty { lines.append("MQTT users in \(passwordFilePath):") }
    lines += users.map { "  " + Self.describe($0, appliancePasswordFile: appliancePasswordFile) }
    if !plan.otherUsers.isEmpty {
      lines.append(
        "  also in the file, named by no configuration, left as they are: \(plan.otherUsers.joined(separator: ", "))")
    }
    if !chargers.isEmpty { lines.append("OCPP chargers (Basic auth: the user is the charger's id):") }
    lines += chargers.map { "  " + Self.describe($0, appliancePasswordFile: appliancePasswordFile) }
    lines += token.map { Self.describe($0, appliancePasswordFile: appliancePasswordFile) }
    for fix in ownershipFixes { lines.append("fixed \(fix.path): \(fix.change)") }
    if plan.passwordFileText != nil {
      lines.append("\(passwordFilePath) changed: run `systemctl reload mosquitto` so the broker reads it.")
    }
    if let credentials { lines.append(credentials) }
    if !changedAnything { lines.append("Nothing was created or changed.") }
    return lines
  }

  /// The new passwords of this run, for the technician to write down (nil: none).
  public func credentials(heading: String) -> String? {
    let entries = plan.credentials
    guard !entries.isEmpty else { return nil }
    var lines = [heading]
    for (outcome, password) in entries {
      lines.append("  \(Self.name(of: outcome.subject)): \(password)")
      lines.append("    \(Self.whereSet(outcome.subject))")
    }
    return lines.joined(separator: "\n") + "\n"
  }

  static func name(of subject: ProvisioningPlan.Outcome.Subject) -> String {
    switch subject {
    case .brokerUser(let user): "MQTT user \(user.name)"
    case .charger(let id, _): "charger \(id)"
    case .centralToken: "central token"
    }
  }

  /// What `--rotate` takes to replace this secret.
  public static func rotateName(of subject: ProvisioningPlan.Outcome.Subject) -> String {
    switch subject {
    case .brokerUser(let user): user.name
    case .charger(let id, _): id
    case .centralToken: "central-token"
    }
  }

  static func whereSet(_ subject: ProvisioningPlan.Outcome.Subject) -> String {
    switch subject {
    case .brokerUser(let user):
      switch user.role {
      case .appliance: "the appliance's own (nothing to set elsewhere)"
      case .meterGateway: "set it in the meter gateway that logs in to the broker as \(user.name)"
      case .homeAssistant: "set it in Home Assistant's MQTT integration (user \(user.name))"
      case .panel: "set it in the panel that logs in as \(user.name)"
      case .client: "set it in the client that logs in to the broker as \(user.name)"
      }
    case .charger(let id, _): "set it on charger \(id) as its BasicAuthPassword (Basic auth user \(id))"
    case .centralToken: "from the program office"
    }
  }

  static func describe(_ outcome: ProvisioningPlan.Outcome, appliancePasswordFile: String?) -> String {
    var who = name(of: outcome.subject)
    if case .brokerUser(let user) = outcome.subject {
      who = user.name + (user.role == .appliance ? " (the appliance)" : "")
    }
    if case .charger(let id, let path) = outcome.subject { who = "\(id) (\(path))" }
    if case .centralToken(let path) = outcome.subject { who = "central token \(path)" }
    let isAppliance: Bool = {
      if case .brokerUser(let user) = outcome.subject { return user.role == .appliance }
      return false
    }()
    let applianceFile =
      appliancePasswordFile.map { "its password is in \($0)" } ?? "its password is in the configuration"
    switch outcome.change {
    case .unchanged:
      return isAppliance
        ? "\(who): unchanged, matches \(appliancePasswordFile ?? "mqtt.password")" : "\(who): unchanged"
    case .created:
      return isAppliance
        ? "\(who): created; \(applianceFile) (nothing to write down)"
        : "\(who): created, new password below; \(whereSet(outcome.subject))"
    case .rotated:
      return isAppliance
        ? "\(who): new password (--rotate); \(applianceFile) (nothing to write down)"
        : "\(who): new password (--rotate), below; \(whereSet(outcome.subject))"
    case .repaired(let why, let password):
      return "\(who): fixed: \(why)" + (password == nil ? "" : "; new password below, \(whereSet(outcome.subject))")
    case .tokenWritten(let replaced):
      return "\(who): \(replaced ? "replaced with the one supplied" : "written from the one supplied")"
    case .tokenMissing(let why):
      return
        "\(who): STILL MISSING (\(why)): ask the program office for the site's token, then run provision again with --central-token-file FILE or --central-token - (standard input)"
    }
  }
}
