import Chargers
import Foundation
import SiteFiles
import SiteModel

/// `ocpp:` in the site configuration: the chargers that connect to this appliance over OCPP
/// 2.1 / 2.0.1, and optionally the program's charging platform upstream. See docs/ocpp.md.
public struct OCPPSection: Codable, Sendable, Hashable {
  public var host: String = "0.0.0.0"
  public var port: Int = 8887
  public var path: String = "/ocpp"
  /// PEM files; both set: wss:// (security profile 2), else ws:// (profile 1).
  public var tlsCertificate: String?
  public var tlsKey: String?
  public var heartbeatSeconds: Int = 30
  public var offlineAfterSeconds: Double = 75
  public var setpointDeadbandKW: Double = 0.5
  public var setpointRefreshSeconds: Double = 60
  public var chargers: [Charger] = []
  public var upstream: Upstream?

  public struct Charger: Codable, Sendable, Hashable {
    /// One of the site's `chargers:` ids; the charge point connects as `<path>/<id>`.
    public var id: String
    /// Its Basic-auth password (OCPP's BasicAuthPassword on the charger), or
    /// `password_file`: a file whose first line is the password (mode 640, kept out of
    /// the configuration, as on the appliance). Exactly one of the two.
    public var password: String
    public var passwordFile: String?
    /// The password the upstream platform expects for this charger, if any.
    public var upstreamPassword: String?

    enum CodingKeys: String, CodingKey {
      case id, password
      case passwordFile = "password_file"
      case upstreamPassword = "upstream_password"
    }

    /// Where the endpoint finds the password (read at every connection).
    public var passwordSource: ChargerPassword { passwordFile.map { .file($0) } ?? .inline(password) }

    public init(id: String, password: String, passwordFile: String? = nil, upstreamPassword: String? = nil) {
      self.id = id
      self.password = password
      self.passwordFile = passwordFile
      self.upstreamPassword = upstreamPassword
    }

    public init(from decoder: any Decoder) throws {
      let c = try decoder.container(keyedBy: CodingKeys.self)
      id = try c.decode(String.self, forKey: .id)
      password = try c.decodeIfPresent(String.self, forKey: .password) ?? ""
      passwordFile = try c.decodeIfPresent(String.self, forKey: .passwordFile)
      upstreamPassword = try c.decodeIfPresent(String.self, forKey: .upstreamPassword)
    }

    public func encode(to encoder: any Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      try c.encode(id, forKey: .id)
      if passwordFile == nil { try c.encode(password, forKey: .password) }
      try c.encodeIfPresent(passwordFile, forKey: .passwordFile)
      try c.encodeIfPresent(upstreamPassword, forKey: .upstreamPassword)
    }
  }

  public struct Upstream: Codable, Sendable, Hashable {
    /// ws(s)://… of the charging platform; each charger appears at `<url>/<id>`.
    public var url: String
    public var reconnectSeconds: Double?

    enum CodingKeys: String, CodingKey {
      case url
      case reconnectSeconds = "reconnect_seconds"
    }
  }

  enum CodingKeys: String, CodingKey {
    case host, port, path, chargers, upstream
    case tlsCertificate = "tls_certificate"
    case tlsKey = "tls_key"
    case heartbeatSeconds = "heartbeat_seconds"
    case offlineAfterSeconds = "offline_after_seconds"
    case setpointDeadbandKW = "setpoint_deadband_kw"
    case setpointRefreshSeconds = "setpoint_refresh_seconds"
  }

  public init() {}

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    host = try c.decodeIfPresent(String.self, forKey: .host) ?? host
    port = try c.decodeIfPresent(Int.self, forKey: .port) ?? port
    path = try c.decodeIfPresent(String.self, forKey: .path) ?? path
    tlsCertificate = try c.decodeIfPresent(String.self, forKey: .tlsCertificate)
    tlsKey = try c.decodeIfPresent(String.self, forKey: .tlsKey)
    heartbeatSeconds = try c.decodeIfPresent(Int.self, forKey: .heartbeatSeconds) ?? heartbeatSeconds
    offlineAfterSeconds = try c.decodeIfPresent(Double.self, forKey: .offlineAfterSeconds) ?? offlineAfterSeconds
    setpointDeadbandKW = try c.decodeIfPresent(Double.self, forKey: .setpointDeadbandKW) ?? setpointDeadbandKW
    setpointRefreshSeconds =
      try c.decodeIfPresent(Double.self, forKey: .setpointRefreshSeconds) ?? setpointRefreshSeconds
    chargers = try c.decodeIfPresent([Charger].self, forKey: .chargers) ?? []
    upstream = try c.decodeIfPresent(Upstream.self, forKey: .upstream)
  }

  func validated(document: StructuredDocument, site: SiteDescription, base: String) throws(InputError) -> OCPPSection {
    func fail(_ key: [String], _ message: String) -> InputError { document.error(at: ["ocpp"] + key, message) }
    guard (0...65535).contains(port) else { throw fail(["port"], "must be 0 to 65535") }
    guard path.hasPrefix("/") else { throw fail(["path"], "must start with /, e.g. /ocpp") }
    guard (tlsCertificate == nil) == (tlsKey == nil) else {
      throw fail([tlsCertificate == nil ? "tls_certificate" : "tls_key"], "TLS needs both tls_certificate and tls_key")
    }
    guard (1...86400).contains(heartbeatSeconds) else { throw fail(["heartbeat_seconds"], "must be 1 to 86400") }
    guard offlineAfterSeconds > Double(heartbeatSeconds) else {
      throw fail(["offline_after_seconds"], "must be longer than heartbeat_seconds (\(heartbeatSeconds))")
    }
    guard setpointDeadbandKW >= 0 else { throw fail(["setpoint_deadband_kw"], "must be 0 or more") }
    guard setpointRefreshSeconds >= 1 else { throw fail(["setpoint_refresh_seconds"], "must be 1 or more") }
    guard !chargers.isEmpty else { throw fail(["chargers"], "lists no charger: name the site's OCPP chargers") }
    var seen: Set<String> = []
    var resolved = chargers
    for (i, var c) in chargers.enumerated() {
      if let file = c.passwordFile {
        guard c.password.isEmpty else {
          throw fail(["chargers", String(i), "password_file"], "give password or password_file, not both")
        }
        // Read at each connection, not here: a file that is not there yet refuses that
        // charger only (check-config warns), and a new password needs no restart.
        c.passwordFile = MQTTSection.resolve(file, base: base)
        resolved[i] = c
      }
      guard site.chargerIndex(id: c.id) != nil else {
        throw fail(
          ["chargers", String(i), "id"], "'\(c.id)' is not one of the site's chargers \(site.chargers.map(\.id))")
      }
      guard seen.insert(c.id).inserted else { throw fail(["chargers", String(i), "id"], "'\(c.id)' is listed twice") }
      guard !c.password.isEmpty || c.passwordFile != nil else {
        throw fail(
          ["chargers", String(i), "password"],
          "must be set (or password_file): chargers authenticate with HTTP Basic auth")
      }
    }
    if let upstream {
      guard upstream.url.hasPrefix("ws://") || upstream.url.hasPrefix("wss://") else {
        throw fail(["upstream", "url"], "must be a ws:// or wss:// address")
      }
    }
    var s = self
    s.chargers = resolved
    s.tlsCertificate = tlsCertificate.map { MQTTSection.resolve($0, base: base) }
    s.tlsKey = tlsKey.map { MQTTSection.resolve($0, base: base) }
    return s
  }

  /// The chargers whose password cannot be read now (its file is missing or empty): each
  /// is refused until it can be, the rest of the site runs. For check-config and the log.
  public func passwordProblems() -> [String] {
    chargers.enumerated().compactMap { i, c in
      guard case .failure(let why) = c.passwordSource.read() else { return nil }
      return "ocpp.chargers[\(i)].password_file: charger \(c.id): \(why); it is refused until it can be read"
    }
  }

  /// The endpoint's settings.
  public var endpointConfiguration: OCPPEndpoint.Configuration {
    var c = OCPPEndpoint.Configuration()
    c.host = host
    c.port = port
    c.path = path
    c.passwords = Dictionary(
      chargers.map { ($0.id, $0.passwordSource) }, uniquingKeysWith: { a, _ in a })
    c.tlsCertificatePath = tlsCertificate
    c.tlsKeyPath = tlsKey
    return c
  }

  /// Each session's settings, from the charger's ratings.
  public func sessionConfiguration(for spec: ChargerSpec) -> ChargePointSession.Configuration {
    var c = ChargePointSession.Configuration(ratedChargeKW: spec.maxChargeKW, ratedDischargeKW: spec.maxDischargeKW)
    c.heartbeatSeconds = heartbeatSeconds
    c.offlineAfterSeconds = offlineAfterSeconds
    c.setpointDeadbandKW = setpointDeadbandKW
    c.setpointRefreshSeconds = setpointRefreshSeconds
    return c
  }

  public var upstreamConfiguration: UpstreamLinks.Configuration? {
    guard let upstream else { return nil }
    var c = UpstreamLinks.Configuration(url: upstream.url)
    c.passwords = Dictionary(
      chargers.compactMap { c in c.upstreamPassword.map { (c.id, $0) } }, uniquingKeysWith: { a, _ in a })
    if let seconds = upstream.reconnectSeconds { c.reconnectSeconds = seconds }
    return c
  }
}

/// `mqtt_chargers:` in the site configuration: chargers behind an MQTT gateway of their own.
public struct MQTTChargerSpec: Codable, Sendable, Hashable {
  public var id: String
  /// The gateway publishes `<topic>/state`, the appliance `<topic>/setpoint`.
  public var topic: String
  public var staleAfterSeconds: Double?

  enum CodingKeys: String, CodingKey {
    case id, topic
    case staleAfterSeconds = "stale_after_seconds"
  }

  static func validate(
    _ specs: [MQTTChargerSpec], ocpp: OCPPSection?, site: SiteDescription, document: StructuredDocument
  ) throws(InputError) {
    var seen: Set<String> = []
    for (i, s) in specs.enumerated() {
      func fail(_ key: String, _ message: String) -> InputError {
        document.error(at: ["mqtt_chargers", String(i), key], message)
      }
      guard site.chargerIndex(id: s.id) != nil else {
        throw fail("id", "'\(s.id)' is not one of the site's chargers \(site.chargers.map(\.id))")
      }
      guard seen.insert(s.id).inserted else { throw fail("id", "'\(s.id)' is listed twice") }
      if ocpp?.chargers.contains(where: { $0.id == s.id }) == true {
        throw fail("id", "'\(s.id)' is already an OCPP charger: one driver per charger")
      }
      guard !s.topic.isEmpty, !s.topic.contains("+"), !s.topic.contains("#") else {
        throw fail("topic", "must be a plain topic (no wildcards)")
      }
      if let stale = s.staleAfterSeconds, !(stale > 0) { throw fail("stale_after_seconds", "must be above 0") }
    }
  }
}
