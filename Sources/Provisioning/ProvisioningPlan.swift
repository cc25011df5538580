import SiteModel

/// What a secret file holds now, as the daemon would read it (its first line, trimmed).
public enum SecretState: Sendable, Hashable {
  case missing
  /// The file is there but gives no secret (e.g. an empty first line): why.
  case unusable(String)
  case present(String)

  var value: String? { if case .present(let value) = self { value } else { nil } }
}

/// Everything provisioning looks at, read from the appliance's files beforehand, so that
/// deciding what to create or fix is a pure function (`ProvisioningPlan.make`).
public struct ProvisioningSurvey: Sendable {
  /// The appliance's own broker login (`mqtt.username` and its password).
  public struct ApplianceLogin: Sendable, Hashable {
    public enum Password: Sendable, Hashable {
      /// `mqtt.password_file`: its path and what it holds.
      case file(path: String, state: SecretState)
      /// `mqtt.password` written in the configuration itself.
      case inline(String)
    }
    public var username: String
    public var password: Password

    public init(username: String, password: Password) {
      self.username = username
      self.password = password
    }
  }

  /// One OCPP charger whose Basic-auth password is in a file of its own.
  public struct ChargerPassword: Sendable, Hashable {
    public var id: String
    public var path: String
    public var state: SecretState

    public init(id: String, path: String, state: SecretState) {
      self.id = id
      self.path = path
      self.state = state
    }
  }

  public struct CentralToken: Sendable, Hashable {
    public var path: String
    public var state: SecretState
    /// A token given to this run (`--central-token-file`, `--central-token -`).
    public var supplied: String?

    public init(path: String, state: SecretState, supplied: String? = nil) {
      self.path = path
      self.state = state
      self.supplied = supplied
    }
  }

  /// The broker's users, the appliance's first; duplicates are dropped, the first kept.
  public var users: [BrokerUser]
  public var appliance: ApplianceLogin?
  /// mosquitto's password file: its path and its entries (nil: it does not exist yet).
  public var passwordFilePath: String
  public var passwordFile: MosquittoPasswordFile?
  public var chargers: [ChargerPassword]
  public var centralToken: CentralToken?
  /// Users (broker users or charger ids) whose password is to be replaced on purpose.
  public var rotate: [String]

  public init(
    users: [BrokerUser], appliance: ApplianceLogin?, passwordFilePath: String, passwordFile: MosquittoPasswordFile?,
    chargers: [ChargerPassword] = [], centralToken: CentralToken? = nil, rotate: [String] = []
  ) {
    self.users = users
    self.appliance = appliance
    self.passwordFilePath = passwordFilePath
    self.passwordFile = passwordFile
    self.chargers = chargers
    self.centralToken = centralToken
    self.rotate = rotate
  }
}

/// What provisioning must write, and what to tell the technician about each secret.
public struct ProvisioningPlan: Sendable {
  /// A secret file to (re)write: its whole content.
  public struct SecretWrite: Sendable, Hashable {
    public var path: String
    public var content: String

    public init(path: String, content: String) {
      self.path = path
      self.content = content
    }
  }

  /// What happened to one secret.
  public struct Outcome: Sendable, Hashable {
    public enum Subject: Sendable, Hashable {
      case brokerUser(BrokerUser)
      case charger(id: String, path: String)
      case centralToken(path: String)
    }
    public enum Change: Sendable, Hashable {
      /// Nothing to do: it exists (and, for the appliance, its file and the broker agree).
      case unchanged
      /// A new password: the technician writes it down and sets it where `Subject` says.
      case created(password: String)
      /// Replaced on purpose (`--rotate`).
      case rotated(password: String)
      /// Something was wrong and was put right (`why`); `password` if a new one was made
      /// that someone other than the appliance must be given.
      case repaired(why: String, password: String?)
      /// The central token: supplied now and written (`replaced`: a different one was there).
      case tokenWritten(replaced: Bool)
      /// The central token is not there and none was supplied.
      case tokenMissing(why: String)
    }
    public var subject: Subject
    public var change: Change
  }

  public var secretWrites: [SecretWrite]
  /// The password file's new text (nil: it stays as it is).
  public var passwordFileText: String?
  public var outcomes: [Outcome]
  /// Entries of the password file that no configuration names, left as they are.
  public var otherUsers: [String]

  /// The new passwords of this run, for the technician (nothing for the appliance's own,
  /// which only the daemon needs and which is in its file).
  public var credentials: [(outcome: Outcome, password: String)] {
    outcomes.compactMap { outcome in
      if case .brokerUser(let user) = outcome.subject, user.role == .appliance { return nil }
      return switch outcome.change {
      case .created(let password), .rotated(let password), .repaired(_, let password?): (outcome, password)
      default: nil
      }
    }
  }

  /// Decides what to create or fix. `generator` gives new passwords and salts; `survey`
  /// says what is there. Nothing is read or written here.
  public static func make(_ survey: ProvisioningSurvey, generator: SecretGenerator) throws -> ProvisioningPlan {
    var seen: Set<String> = []
    var users = survey.users.filter { seen.insert($0.name).inserted }
    // A user only the password file has (a panel added by an earlier run) may be rotated too.
    for name in survey.rotate where !seen.contains(name) && survey.passwordFile?.hash(of: name) != nil {
      users.append(BrokerUser(name: name, role: .client, source: survey.passwordFilePath))
      seen.insert(name)
    }
    for user in users {
      if let problem = BrokerUser.problem(with: user.name) { throw InputError(source: user.source, message: problem) }
    }
    let chargerIDs = Set(survey.chargers.map(\.id))
    for name in survey.rotate where !seen.contains(name) && !chargerIDs.contains(name) {
      throw InputError(
        source: "--rotate \(name)",
        message:
          "is neither a broker user (\(users.map(\.name).joined(separator: ", ")), or one in \(survey.passwordFilePath)) nor a charger with a password file (\(survey.chargers.map(\.id).joined(separator: ", ")))"
      )
    }
    let rotate = Set(survey.rotate)

    var writes: [SecretWrite] = []
    var outcomes: [Outcome] = []
    var file = survey.passwordFile ?? MosquittoPasswordFile()
    func hash(_ password: String) throws -> String {
      MosquittoPasswordHash.make(password: password, salt: try generator.salt())
    }

    for user in users {
      let subject = Outcome.Subject.brokerUser(user)
      let existing = file.hash(of: user.name)
      if let appliance = survey.appliance, appliance.username == user.name {
        outcomes.append(
          Outcome(
            subject: subject,
            change: try applianceChange(
              appliance, existing: existing, rotate: rotate.contains(user.name), file: &file, writes: &writes,
              generator: generator, hash: hash)))
      } else if rotate.contains(user.name) {
        let password = try generator.password()
        file.set(user.name, hash: try hash(password))
        outcomes.append(Outcome(subject: subject, change: .rotated(password: password)))
      } else if existing != nil {
        outcomes.append(Outcome(subject: subject, change: .unchanged))
      } else {
        let password = try generator.password()
        file.set(user.name, hash: try hash(password))
        outcomes.append(Outcome(subject: subject, change: .created(password: password)))
      }
    }

    // Chargers that share a password file share its new password too (written once).
    var chargerPasswords: [String: Outcome.Change] = [:]
    for charger in survey.chargers {
      let subject = Outcome.Subject.charger(id: charger.id, path: charger.path)
      if let shared = chargerPasswords[charger.path] {
        outcomes.append(Outcome(subject: subject, change: shared))
        continue
      }
      let change: Outcome.Change
      switch (charger.state, rotate.contains(charger.id)) {
      case (_, true): change = .rotated(password: try generator.password())
      case (.present, false): change = .unchanged
      case (.missing, false): change = .created(password: try generator.password())
      case (.unusable(let why), false):
        change = .repaired(why: "\(charger.path) \(why); a new password was made", password: try generator.password())
      }
      switch change {
      case .created(let password), .rotated(let password), .repaired(_, let password?):
        writes.append(SecretWrite(path: charger.path, content: password + "\n"))
      default: break
      }
      chargerPasswords[charger.path] = change
      outcomes.append(Outcome(subject: subject, change: change))
    }

    if let token = survey.centralToken {
      let subject = Outcome.Subject.centralToken(path: token.path)
      if let supplied = token.supplied, supplied != token.state.value {
        writes.append(SecretWrite(path: token.path, content: supplied + "\n"))
        outcomes.append(Outcome(subject: subject, change: .tokenWritten(replaced: token.state.value != nil)))
      } else {
        switch token.state {
        case .present: outcomes.append(Outcome(subject: subject, change: .unchanged))
        case .missing: outcomes.append(Outcome(subject: subject, change: .tokenMissing(why: "the file does not exist")))
        case .unusable(let why):
          outcomes.append(Outcome(subject: subject, change: .tokenMissing(why: "the file \(why)")))
        }
      }
    }

    let text = file.text
    let changed = survey.passwordFile.map { $0.text != text } ?? true
    return ProvisioningPlan(
      secretWrites: writes, passwordFileText: changed ? text : nil, outcomes: outcomes,
      otherUsers: file.users.filter { !seen.contains($0) })
  }

  /// The appliance's login: its password file (or inline password) is what the daemon
  /// sends, so it decides; the broker's entry is made to match it. Only when the daemon has
  /// no password is a new one made, and then it goes in both places.
  private static func applianceChange(
    _ appliance: ProvisioningSurvey.ApplianceLogin, existing: String?, rotate: Bool,
    file: inout MosquittoPasswordFile, writes: inout [SecretWrite], generator: SecretGenerator,
    hash: (String) throws -> String
  ) throws -> Outcome.Change {
    let name = appliance.username
    let configured: String?
    let path: String?
    switch appliance.password {
    case .inline(let password):
      guard !rotate else {
        throw InputError(
          source: "--rotate \(name)",
          message:
            "the appliance's password is written in the configuration (mqtt.password): change it there, or move it to mqtt.password_file"
        )
      }
      configured = password
      path = nil
    case .file(let filePath, let state):
      configured = rotate ? nil : state.value
      path = filePath
    }
    if let configured {
      let source = path ?? "mqtt.password"
      guard let existing else {
        file.set(name, hash: try hash(configured))
        return .repaired(
          why: "\(name) was not in the broker's password file; added with the password in \(source)", password: nil)
      }
      switch MosquittoPasswordHash.verify(password: configured, against: existing) {
      case .matches: return .unchanged
      case .differs:
        file.set(name, hash: try hash(configured))
        return .repaired(
          why: "the broker's password for \(name) did not match \(source); set to the one in \(source)",
          password: nil)
      case .unknownFormat:
        file.set(name, hash: try hash(configured))
        return .repaired(
          why: "the broker's entry for \(name) is in a format this build cannot check; hashed again from \(source)",
          password: nil)
      }
    }
    // The daemon has no password (or is to get a new one): a new one in both places.
    let password = try generator.password()
    file.set(name, hash: try hash(password))
    if let path { writes.append(SecretWrite(path: path, content: password + "\n")) }
    if rotate { return .rotated(password: password) }
    if case .file(let path, .unusable(let why)) = appliance.password {
      return .repaired(why: "\(path) \(why); a new password is in it and in the broker's password file", password: nil)
    }
    if existing != nil, case .file(let path, _) = appliance.password {
      return .repaired(
        why: "\(path) was missing; the broker's old password for \(name) cannot be recovered, so a new one is in both",
        password: nil)
    }
    return .created(password: password)
  }
}
