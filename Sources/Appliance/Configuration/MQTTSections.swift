import Foundation
import MQTT
import SiteFiles
import SiteModel

/// `mqtt:` in the site configuration: the broker, and how the appliance appears on it.
/// See docs/mqtt-api.md.
public struct MQTTSection: Codable, Sendable, Hashable {
  public var host: String = "127.0.0.1"
  public var port: Int = 1883
  /// "5" or "3.1.1".
  public var `protocol`: String = "5"
  public var clientID: String?
  public var username: String?
  public var password: String?
  /// A file whose first line is the password (preferred over `password`).
  public var passwordFile: String?
  public var keepaliveSeconds: Int = 30
  public var tls: TLSSection?
  public var topicPrefix: String?
  public var stateEverySeconds: Double = 5
  /// If not empty, only these users may command.
  public var commandUsers: [String] = []
  public var discovery: DiscoverySection = DiscoverySection()

  public struct TLSSection: Codable, Sendable, Hashable {
    public var caFile: String
    public var certFile: String?
    public var keyFile: String?
    public var insecure: Bool = false
    enum CodingKeys: String, CodingKey {
      case caFile = "ca_file"
      case certFile = "cert_file"
      case keyFile = "key_file"
      case insecure
    }
    public init(from decoder: any Decoder) throws {
      let c = try decoder.container(keyedBy: CodingKeys.self)
      caFile = try c.decode(String.self, forKey: .caFile)
      certFile = try c.decodeIfPresent(String.self, forKey: .certFile)
      keyFile = try c.decodeIfPresent(String.self, forKey: .keyFile)
      insecure = try c.decodeIfPresent(Bool.self, forKey: .insecure) ?? false
    }
  }

  public struct DiscoverySection: Codable, Sendable, Hashable {
    public var enabled: Bool = true
    public var prefix: String = "homeassistant"
    /// The MQTT user Home Assistant logs in as: its controls publish to that user's
    /// command topic.
    public var commandUser: String = "homeassistant"
    public init() {}
    enum CodingKeys: String, CodingKey {
      case enabled, prefix
      case commandUser = "command_user"
    }
    public init(from decoder: any Decoder) throws {
      let c = try decoder.container(keyedBy: CodingKeys.self)
      enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled) ?? true
      prefix = try c.decodeIfPresent(String.self, forKey: .prefix) ?? "homeassistant"
      commandUser = try c.decodeIfPresent(String.self, forKey: .commandUser) ?? "homeassistant"
    }
  }

  enum CodingKeys: String, CodingKey {
    case host, port, `protocol`, username, password, tls, discovery
    case clientID = "client_id"
    case passwordFile = "password_file"
    case keepaliveSeconds = "keepalive_seconds"
    case topicPrefix = "topic_prefix"
    case stateEverySeconds = "state_every_seconds"
    case commandUsers = "command_users"
  }

  public init() {}

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    host = try c.decodeIfPresent(String.self, forKey: .host) ?? host
    port = try c.decodeIfPresent(Int.self, forKey: .port) ?? port
    `protocol` = try c.decodeIfPresent(String.self, forKey: .protocol) ?? `protocol`
    clientID = try c.decodeIfPresent(String.self, forKey: .clientID)
    username = try c.decodeIfPresent(String.self, forKey: .username)
    password = try c.decodeIfPresent(String.self, forKey: .password)
    passwordFile = try c.decodeIfPresent(String.self, forKey: .passwordFile)
    keepaliveSeconds = try c.decodeIfPresent(Int.self, forKey: .keepaliveSeconds) ?? keepaliveSeconds
    tls = try c.decodeIfPresent(TLSSection.self, forKey: .tls)
    topicPrefix = try c.decodeIfPresent(String.self, forKey: .topicPrefix)
    stateEverySeconds = try c.decodeIfPresent(Double.self, forKey: .stateEverySeconds) ?? stateEverySeconds
    commandUsers = try c.decodeIfPresent([String].self, forKey: .commandUsers) ?? []
    discovery = try c.decodeIfPresent(DiscoverySection.self, forKey: .discovery) ?? DiscoverySection()
  }

  /// `Lincoln High` → `lincoln-high`: for topics and ids.
  public static func slug(_ name: String) -> String {
    var out = ""
    for ch in name.lowercased() {
      if ch.isASCII && (ch.isLetter || ch.isNumber) {
        out.append(ch)
      } else if !out.hasSuffix("-") {
        out.append("-")
      }
    }
    while out.hasSuffix("-") { out.removeLast() }
    return out.isEmpty ? "site" : out
  }

  /// Checks the section; `base` resolves relative file paths (the configuration's folder).
  func validated(document: StructuredDocument, siteName: String, base: String) throws(InputError) -> MQTTSection {
    var m = self
    func fail(_ key: String, _ message: String) -> InputError { document.error(at: ["mqtt", key], message) }
    guard !host.isEmpty else { throw fail("host", "must name the broker, e.g. 127.0.0.1") }
    guard (1...65_535).contains(port) else { throw fail("port", "\(port) is not a TCP port (1-65535)") }
    guard MQTTClient.ProtocolVersion(rawValue: `protocol`) != nil else {
      throw fail("protocol", "'\(`protocol`)' is not \"5\" or \"3.1.1\"")
    }
    // libmosquitto refuses keepalives under 5 s (every connect would fail).
    guard (5...3600).contains(keepaliveSeconds) else { throw fail("keepalive_seconds", "must be 5 to 3600") }
    guard stateEverySeconds >= 0.5 && stateEverySeconds <= 3600 else {
      throw fail("state_every_seconds", "must be 0.5 to 3600 (the panel API promises at most 5)")
    }
    let prefix = topicPrefix ?? "microgrid-edge/\(Self.slug(siteName))"
    guard TopicFilter(prefix) != nil, !prefix.contains("+"), !prefix.contains("#"), !prefix.hasSuffix("/") else {
      throw fail("topic_prefix", "'\(prefix)' must be a topic without wildcards or a trailing /")
    }
    m.topicPrefix = prefix
    if m.clientID == nil { m.clientID = "microgrid-edge-\(Self.slug(siteName))" }
    // The password file is read at each connection (SecretFile), not here: an appliance
    // whose file is not in place yet comes up, says which file it waits for, and connects
    // once it is there.
    if let file = passwordFile {
      guard password == nil else { throw fail("password_file", "give password or password_file, not both") }
      m.passwordFile = Self.resolve(file, base: base)
    }
    if (m.password != nil || m.passwordFile != nil) && m.username == nil {
      throw fail("username", "a password needs a username")
    }
    if var tls = m.tls {
      for (key, file) in [("ca_file", tls.caFile), ("cert_file", tls.certFile), ("key_file", tls.keyFile)] {
        guard let file else { continue }
        let path = Self.resolve(file, base: base)
        guard FileManager.default.isReadableFile(atPath: path) else {
          throw document.error(at: ["mqtt", "tls", key], "cannot read \(path)")
        }
      }
      if (tls.certFile == nil) != (tls.keyFile == nil) {
        throw document.error(at: ["mqtt", "tls"], "cert_file and key_file go together")
      }
      tls.caFile = Self.resolve(tls.caFile, base: base)
      tls.certFile = tls.certFile.map { Self.resolve($0, base: base) }
      tls.keyFile = tls.keyFile.map { Self.resolve($0, base: base) }
      m.tls = tls
    }
    if discovery.enabled {
      guard TopicFilter(discovery.prefix) != nil, !discovery.prefix.contains("+"), !discovery.prefix.contains("#")
      else {
        throw document.error(at: ["mqtt", "discovery", "prefix"], "'\(discovery.prefix)' is not a topic")
      }
    }
    for (i, user) in commandUsers.enumerated() where user.isEmpty || user.contains(where: { "/+#".contains($0) }) {
      throw document.error(at: ["mqtt", "command_users", "\(i)"], "'\(user)' cannot be an MQTT user name here")
    }
    return m
  }

  static func resolve(_ path: String, base: String) -> String {
    path.hasPrefix("/") ? path : ((base.isEmpty ? "." : base) as NSString).appendingPathComponent(path)
  }

  /// Why the broker password cannot be had now (nil: it can, or none is needed), for
  /// check-config: a file not in place yet is a warning, since it is read at each connection.
  public func passwordProblem() -> String? {
    guard let passwordFile, case .failure(let problem) = SecretFile.firstLine(of: passwordFile) else { return nil }
    return "mqtt.password_file: \(problem); the appliance will not connect to the broker until it can be read"
  }

  /// The client's settings for this section (after `validated`).
  public func clientConfiguration() -> MQTTClient.Configuration {
    var c = MQTTClient.Configuration()
    c.host = host
    c.port = port
    c.clientID = clientID ?? "microgrid-edge"
    c.username = username
    c.password = password
    if let passwordFile {
      c.readPassword = { SecretFile.firstLine(of: passwordFile).mapError { $0 as any Error } }
    }
    c.protocolVersion = MQTTClient.ProtocolVersion(rawValue: `protocol`) ?? .v5
    c.keepAliveSeconds = keepaliveSeconds
    c.tls = tls.map {
      MQTTClient.TLS(caFile: $0.caFile, certFile: $0.certFile, keyFile: $0.keyFile, insecure: $0.insecure)
    }
    c.availability = MQTTClient.Availability(topic: "\(topicPrefix ?? "microgrid-edge")/status")
    return c
  }
}

/// One entry of `meters:`: where a reading comes from and what it means.
public struct MeterSpec: Codable, Sendable, Hashable {
  public enum Role: String, Codable, Sendable, CaseIterable {
    /// The service entrance: building and chargers together, export negative.
    case gridImport = "grid_import"
    /// The building without the chargers.
    case buildingLoad = "building_load"
    /// The utility's voltage at the service (one meter per phase), for detecting a loss and
    /// its return (`utility:` section).
    case utilityVoltage = "utility_voltage"
    /// The utility's frequency.
    case utilityFrequency = "utility_frequency"

    /// A power role: its readings add up to the building's load.
    public var isPower: Bool { self == .gridImport || self == .buildingLoad }
  }
  public enum Unit: String, Codable, Sendable, CaseIterable {
    case watt = "W"
    case kilowatt = "kW"
    /// An energy register: power is its rate of change.
    case kilowattHour = "kWh"
    case volt = "V"
    case hertz = "Hz"
  }

  public var id: String
  public var role: Role
  public var topic: String
  /// A JSON path (`$.power.total`); nil: the payload is a plain number.
  public var value: String?
  public var unit: Unit
  public var scale: Double = 1
  public var staleAfterSeconds: Double = 10

  enum CodingKeys: String, CodingKey {
    case id, role, topic, value, unit, scale
    case staleAfterSeconds = "stale_after_seconds"
  }

  public init(
    id: String, role: Role, topic: String, value: String? = nil, unit: Unit, scale: Double = 1,
    staleAfterSeconds: Double = 10
  ) {
    self.id = id
    self.role = role
    self.topic = topic
    self.value = value
    self.unit = unit
    self.scale = scale
    self.staleAfterSeconds = staleAfterSeconds
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    id = try c.decode(String.self, forKey: .id)
    role = try Self.decodeChoice(c, .role)
    topic = try c.decode(String.self, forKey: .topic)
    value = try c.decodeIfPresent(String.self, forKey: .value)
    unit = try Self.decodeChoice(c, .unit)
    scale = try c.decodeIfPresent(Double.self, forKey: .scale) ?? 1
    staleAfterSeconds = try c.decodeIfPresent(Double.self, forKey: .staleAfterSeconds) ?? 10
  }

  private static func decodeChoice<T: RawRepresentable & CaseIterable>(
    _ c: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys
  ) throws -> T where T.RawValue == String {
    let text = try c.decode(String.self, forKey: key)
    guard let value = T(rawValue: text) else {
      throw DecodingError.dataCorruptedError(
        forKey: key, in: c,
        debugDescription: "'\(text)' is not one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return value
  }

  static func validate(_ meters: [MeterSpec], document: StructuredDocument) throws(InputError) {
    var ids = Set<String>()
    for (i, m) in meters.enumerated() {
      func fail(_ key: String, _ message: String) -> InputError {
        document.error(at: ["meters", "\(i)", key], message)
      }
      guard !m.id.isEmpty, ids.insert(m.id).inserted else { throw fail("id", "'\(m.id)' is empty or used twice") }
      guard TopicFilter(m.topic) != nil, !m.topic.contains("+"), !m.topic.contains("#") else {
        throw fail("topic", "'\(m.topic)' must be one topic, without wildcards")
      }
      if let path = m.value, JSONPath(path) == nil {
        throw fail("value", "'\(path)' is not a JSON path like $.power or $.channels[0].w")
      }
      guard m.scale.isFinite, m.scale != 0 else { throw fail("scale", "must be a number other than 0") }
      let units: [Unit] =
        switch m.role {
        case .gridImport, .buildingLoad: [.watt, .kilowatt, .kilowattHour]
        case .utilityVoltage: [.volt]
        case .utilityFrequency: [.hertz]
        }
      guard units.contains(m.unit) else {
        throw fail("unit", "a \(m.role.rawValue) meter reads in \(units.map(\.rawValue).joined(separator: ", "))")
      }
      guard m.staleAfterSeconds >= 0.5 && m.staleAfterSeconds <= 3600 else {
        throw fail("stale_after_seconds", "must be 0.5 to 3600")
      }
    }
  }
}
