import Appliance
import ArgumentParser
import Foundation
import Provisioning
import SiteFiles
import SiteModel

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// `microgrid-edge provision`: the appliance's secrets, made or checked in one idempotent
/// step (rootfs-overlay/README.md). It reads what is there, plans what must be created or
/// fixed (`ProvisioningPlan`, pure), checks that every file can be written, then writes.
struct Provision: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "provision",
    abstract: "Create or check the broker's users and passwords, the charger passwords and the central token.",
    discussion: """
      Gives every MQTT user of the ACL file, the appliance's own user and each --panel a \
      random password in mosquitto's password file (root:mosquitto 640), writes the \
      appliance's password file and each OCPP charger's (root:microgrid-edge 640), and the \
      central token when one is supplied. Run again, it keeps what exists and is valid, \
      fixes owners and modes, adds what is missing, and makes the appliance's password file \
      and its broker entry agree. New passwords go to the terminal, or, when standard \
      output is not one, to a root-only file whose path it prints: never to a log. \
      Exit status 0 when done, 2 for bad input, 1 when a file cannot be read or written.
      """)

  @Option(
    help: ArgumentHelp(
      "The site configuration (default: /etc/microgrid-edge/site.yaml, under --root).", valueName: "path"))
  var config: String?

  @Option(
    help: ArgumentHelp(
      "The broker's ACL file, whose `user` lines name the MQTT users (default: /etc/mosquitto/microgrid-edge.acl, under --root).",
      valueName: "path")
  )
  var acl: String?

  @Option(
    name: .customLong("broker-passwords"),
    help: ArgumentHelp(
      "mosquitto's password file (default: /etc/mosquitto/microgrid-edge.passwd, under --root).", valueName: "path"))
  var brokerPasswords: String?

  @Option(
    name: .customLong("panel"),
    help: ArgumentHelp("A panel's MQTT user name (repeat for more panels).", valueName: "name"))
  var panels: [String] = []

  @Option(
    name: .customLong("rotate"),
    help: ArgumentHelp(
      "Replace this user's password on purpose: an MQTT user or a charger id (repeat for more).", valueName: "user"))
  var rotate: [String] = []

  @Option(help: ArgumentHelp("Copy the central program's token from this file (its first line).", valueName: "path"))
  var centralTokenFile: String?

  @Option(
    help: ArgumentHelp(
      "'-': read the central program's token from standard input (never give it on the command line).", valueName: "-"))
  var centralToken: String?

  @Option(
    help: ArgumentHelp(
      "Treat DIR as the appliance's root: the files named in the configuration and the defaults above are under it, and groups come from DIR/etc/group (tests, image building).",
      valueName: "dir")
  )
  var root: String = "/"

  @Flag(help: "Print new passwords on standard output even when it is not a terminal.")
  var showPasswords = false

  @Option(
    help: ArgumentHelp(
      "Write new passwords to this file (created, mode 600) instead of the terminal (default when standard output is not a terminal: /root/microgrid-edge-credentials-<time>.txt, under --root).",
      valueName: "path")
  )
  var credentialsOut: String?

  /// Who owns the secret files: root, and the group the daemon runs in (or mosquitto's).
  static let daemonGroup = "microgrid-edge"
  static let brokerGroup = "mosquitto"
  static let secretMode: UInt16 = 0o640

  func run() throws {
    try exitOnProvisioningFailure {
      try exitOnInputError { try provision() }
    }
  }

  private func provision() throws {
    let files = ApplianceFileSystem(root: root)
    let configPath = config ?? files.path("/etc/microgrid-edge/site.yaml")
    let aclPath = acl ?? files.path("/etc/mosquitto/microgrid-edge.acl")
    let passwordFilePath = brokerPasswords ?? files.path("/etc/mosquitto/microgrid-edge.passwd")
    let supplied = try suppliedToken()

    let loaded = try SiteConfigurationFile.load(path: configPath, environment: ProcessInfo.processInfo.environment)
    let site = loaded.configuration
    guard let aclText = try SecretFileIO.text(at: aclPath) else {
      throw ProvisioningFailure("\(aclPath) does not exist: the broker's ACL file names the MQTT users (--acl)")
    }
    let aclUsers = try MosquittoACL.users(in: aclText, path: aclPath)

    var users: [BrokerUser] = []
    var appliance: ProvisioningSurvey.ApplianceLogin?
    if let mqtt = site.mqtt {
      guard let username = mqtt.username else {
        throw InputError(
          source: configPath, field: "mqtt.username",
          message: "is not set: the broker refuses anonymous clients, so the appliance needs a user (microgrid-edge)")
      }
      if let file = mqtt.passwordFile {
        let path = files.path(file)
        appliance = .init(username: username, password: .file(path: path, state: try SecretFileIO.state(at: path)))
      } else if let password = mqtt.password {
        appliance = .init(username: username, password: .inline(password))
      } else {
        throw InputError(
          source: configPath, field: "mqtt.password_file",
          message:
            "is not set: the appliance would log in to the broker without a password (/etc/microgrid-edge/mqtt-password)"
        )
      }
      users.append(BrokerUser(name: username, role: .appliance, source: "\(configPath): mqtt.username"))
    }
    let homeAssistant = site.mqtt.flatMap { $0.discovery.enabled ? $0.discovery.commandUser : nil }
    for user in aclUsers {
      let role: BrokerUser.Role =
        user.name == appliance?.username
        ? .appliance
        : user.name == homeAssistant ? .homeAssistant : user.writesMeterTopics ? .meterGateway : .client
      users.append(BrokerUser(name: user.name, role: role, source: "\(aclPath):\(user.line)"))
    }
    users += panels.map { BrokerUser(name: $0, role: .panel, source: "--panel \($0)") }

    let chargers = try (site.ocpp?.chargers ?? []).compactMap { charger -> ProvisioningSurvey.ChargerPassword? in
      guard let file = charger.passwordFile else { return nil }
      let path = files.path(file)
      return .init(id: charger.id, path: path, state: try SecretFileIO.state(at: path))
    }
    var token: ProvisioningSurvey.CentralToken?
    if let central = site.central {
      let path = files.path(central.tokenFile)
      token = .init(path: path, state: try SecretFileIO.state(at: path), supplied: supplied)
    } else if supplied != nil {
      throw InputError(
        source: configPath, field: "central", message: "is not set, so there is no token file to put the token in")
    }
    let passwordText = try SecretFileIO.text(at: passwordFilePath)
    let survey = ProvisioningSurvey(
      users: users, appliance: appliance, passwordFilePath: passwordFilePath,
      passwordFile: passwordText.map(MosquittoPasswordFile.init(text:)), chargers: chargers, centralToken: token,
      rotate: rotate)
    let plan = try ProvisioningPlan.make(survey, generator: .system)

    // Who the files belong to, before anything is written.
    var gids: [String: UInt32] = [:]
    var warnings: [String] = []
    for group in [Self.daemonGroup, Self.brokerGroup] {
      switch files.group(named: group) {
      case .found(let gid): gids[group] = gid
      case .missing(let place):
        guard !files.isLive else {
          throw ProvisioningFailure(
            "group \(group) does not exist (\(place)): "
              + (group == Self.brokerGroup
                ? "install mosquitto first (apt-get install mosquitto)"
                : "create the appliance's user first (useradd --system --home /var/lib/microgrid-edge microgrid-edge)")
              + "; nothing was written")
        }
        warnings.append(
          "warning: group \(group) is not in \(place): its files are left group root; run provision again once it exists"
        )
        gids[group] = 0
      }
    }
    let secretOwnership = Ownership(uid: 0, gid: gids[Self.daemonGroup]!, mode: Self.secretMode)
    let brokerOwnership = Ownership(uid: 0, gid: gids[Self.brokerGroup]!, mode: Self.secretMode)

    // Files whose content stays: only their owner and mode may need fixing.
    var owned: [(path: String, ownership: Ownership)] = []
    if case .file(let path, _)? = appliance?.password { owned.append((path, secretOwnership)) }
    owned += chargers.map { ($0.path, secretOwnership) }
    if let token { owned.append((token.path, secretOwnership)) }
    owned.append((passwordFilePath, brokerOwnership))
    let rewritten = Set(plan.secretWrites.map(\.path) + (plan.passwordFileText == nil ? [] : [passwordFilePath]))
    var fixes: [(path: String, ownership: Ownership, change: String)] = []
    for (path, wanted) in owned where !rewritten.contains(path) {
      guard let current = SecretFileIO.ownership(of: path),
        let change = current.difference(to: wanted, names: { files.groupName($0, known: gids) })
      else { continue }
      fixes.append((path, wanted, change))
    }

    let report = ProvisioningReport(
      plan: plan, passwordFilePath: passwordFilePath, ownershipFixes: fixes.map { ($0.path, $0.change) },
      appliancePasswordFile: { if case .file(let path, _)? = appliance?.password { path } else { nil } }())
    let credentials = report.credentials(heading: "New passwords (write them down: they are not shown again):")
    let showOnTerminal = showPasswords || (credentialsOut == nil && isatty(STDOUT_FILENO) == 1)
    let credentialsPath =
      credentials == nil
      ? nil
      : credentialsOut
        ?? (showOnTerminal
          ? nil : Self.newCredentialsPath(files.path("/root/microgrid-edge-credentials-\(Self.timestamp())")))

    // Every file can be written before any is.
    for path in plan.secretWrites.map(\.path) + (plan.passwordFileText == nil ? [] : [passwordFilePath]) {
      try SecretFileIO.checkWritableFolder(for: path)
    }
    if let credentialsPath {
      guard !SecretFileIO.exists(credentialsPath) else {
        throw ProvisioningFailure(
          "\(credentialsPath) already exists: give another --credentials-out; nothing was written")
      }
      try SecretFileIO.checkWritableFolder(for: credentialsPath)
    }

    // The daemon's files first, the broker's last: should a write fail, the next run finds
    // the daemon's password in its file and makes the broker's entry match it.
    for write in plan.secretWrites {
      try SecretFileIO.makeFolders(for: write.path)
      try SecretFileIO.writeAtomically(write.content, to: write.path, ownership: secretOwnership)
    }
    if let text = plan.passwordFileText {
      try SecretFileIO.makeFolders(for: passwordFilePath)
      try SecretFileIO.writeAtomically(text, to: passwordFilePath, ownership: brokerOwnership)
    }
    for fix in fixes { try SecretFileIO.setOwnership(of: fix.path, to: fix.ownership) }
    if let credentialsPath, let credentials {
      do {
        try SecretFileIO.makeFolders(for: credentialsPath, mode: 0o700)
        // Which appliance and when, for a technician who finds the file later.
        let header = "# microgrid-edge provision --config \(configPath), \(Self.timestamp())\n"
        try SecretFileIO.createPrivate(header + credentials, at: credentialsPath)
      } catch {
        let names = plan.credentials.map { ProvisioningReport.rotateName(of: $0.outcome.subject) }
        throw ProvisioningFailure(
          "\(error); the new passwords are set but were not saved: run provision again with "
            + names.map { "--rotate \($0)" }.joined(separator: " "))
      }
    }

    for warning in warnings { FileHandle.standardError.write(Data("microgrid-edge: \(warning)\n".utf8)) }
    let whereCredentials = [
      credentialsPath.map {
        "New passwords are in \($0) (root only, mode 600): write them down, then delete it (shred -u \($0))."
      },
      showOnTerminal ? credentials?.trimmingCharacters(in: .newlines) : nil,
    ].compactMap { $0 }
    print("provision: \(configPath)")
    for line in report.summary(credentials: whereCredentials.isEmpty ? nil : whereCredentials.joined(separator: "\n")) {
      print(line)
    }
  }

  /// The token given to this run, from a file or standard input (never from argv: any user
  /// can read a command line with ps).
  private func suppliedToken() throws -> String? {
    if centralTokenFile != nil && centralToken != nil {
      throw InputError(source: "--central-token", message: "give --central-token - or --central-token-file, not both")
    }
    let text: String
    let source: String
    if let path = centralTokenFile {
      guard let read = try SecretFileIO.text(at: path) else {
        throw ProvisioningFailure("\(path) (--central-token-file) does not exist")
      }
      text = read
      source = path
    } else if let value = centralToken {
      guard value == "-" else {
        throw InputError(
          source: "--central-token",
          message:
            "takes only '-' (read the token from standard input): a token on the command line can be read by anyone with ps; or use --central-token-file"
        )
      }
      text = Self.readLineFromStandardInput(prompt: "Central token (not shown), then Enter: ")
      source = "standard input (--central-token -)"
    } else {
      return nil
    }
    let first = String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
      .trimmingCharacters(in: .whitespacesAndNewlines)
    guard !first.isEmpty else { throw InputError(source: source, message: "has no token on its first line") }
    guard !first.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F })
    else {
      throw InputError(source: source, message: "the token has a space or a control character in it")
    }
    return first
  }

  /// The first line of standard input; at a terminal, asked for without echoing it.
  static func readLineFromStandardInput(prompt: String) -> String {
    guard isatty(STDIN_FILENO) == 1 else { return readLine(strippingNewline: true) ?? "" }
    FileHandle.standardError.write(Data(prompt.utf8))
    var saved = termios()
    let canHide = tcgetattr(STDIN_FILENO, &saved) == 0
    if canHide {
      var hidden = saved
      hidden.c_lflag &= ~tcflag_t(ECHO)
      tcsetattr(STDIN_FILENO, TCSAFLUSH, &hidden)
    }
    defer {
      if canHide { tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved) }
      FileHandle.standardError.write(Data("\n".utf8))
    }
    return readLine(strippingNewline: true) ?? ""
  }

  /// `<base>.txt`, or `<base>-2.txt` and so on when runs come within the same second.
  static func newCredentialsPath(_ base: String) -> String {
    var path = base + ".txt"
    var n = 2
    while SecretFileIO.exists(path) {
      path = "\(base)-\(n).txt"
      n += 1
    }
    return path
  }

  static func timestamp() -> String {
    let formatter = DateFormatter()
    formatter.locale = Locale(identifier: "en_US_POSIX")
    formatter.timeZone = TimeZone(identifier: "UTC")
    formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
    return formatter.string(from: Date())
  }
}

/// A file provisioning cannot read or write: one line, exit status 1.
func exitOnProvisioningFailure(_ body: () throws -> Void) throws {
  do {
    try body()
  } catch let failure as ProvisioningFailure {
    FileHandle.standardError.write(Data("microgrid-edge: error: \(failure)\n".utf8))
    throw ExitCode(1)
  }
}
