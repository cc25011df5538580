import Foundation
import SiteFiles
import SiteModel
import VEN

/// `openadr:` in the site configuration: the appliance as an OpenADR 2.0b VEN of the
/// utility's (or the program's aggregator's) VTN, so that demand-response events arrive
/// without anyone typing them in (docs/openadr.md). Without the section there is no VEN.
public struct OpenADRSection: Codable, Sendable, Hashable {
  /// The VTN's simpleHttp base, `https://vtn.example.org/OpenADR2/Simple/2.0b`; the VEN
  /// posts to `{vtn_url}/EiRegisterParty`, `/EiEvent`, `/EiReport` and `/OadrPoll`.
  public var vtnURL: String
  /// The name the VEN registers under (default: the site's name as a slug).
  public var venName: String?
  /// A venID the utility gave out of band (default: the one the VTN assigns).
  public var venID: String?
  /// How often to poll the VTN, seconds (10 to 60; never faster than the VTN asks).
  public var pollSeconds: Double = 10
  /// TLS with a client certificate, as OpenADR 2.0b requires: PEM files.
  public var certificateFile: String?
  public var keyFile: String?
  /// The CA(s) the VTN's certificate must chain to (default: the system's).
  public var caFile: String?
  public var timeoutSeconds: Double = 10
  /// An alarm after this long without an answer from the VTN.
  public var silenceAlarmMinutes: Double = 15
  /// Longest event followed, hours; a longer one is answered 454 and opted out.
  public var maximumEventHours: Double = 12

  /// Set in the environment by tests only: lets `vtn_url` be plain http://. A site may not.
  public static let plainHTTPForTestsVariable = "MICROGRID_EDGE_TEST_OPENADR_PLAIN_HTTP"
  /// Polls faster than 10 s, for tests (with the variable above set).
  static let testPollSeconds = 0.2...60.0

  enum CodingKeys: String, CodingKey {
    case vtnURL = "vtn_url"
    case venName = "ven_name"
    case venID = "ven_id"
    case pollSeconds = "poll_seconds"
    case certificateFile = "certificate_file"
    case keyFile = "key_file"
    case caFile = "ca_file"
    case timeoutSeconds = "timeout_seconds"
    case silenceAlarmMinutes = "silence_alarm_minutes"
    case maximumEventHours = "maximum_event_hours"
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    vtnURL = try c.decode(String.self, forKey: .vtnURL)
    venName = try c.decodeIfPresent(String.self, forKey: .venName)
    venID = try c.decodeIfPresent(String.self, forKey: .venID)
    pollSeconds = try c.decodeIfPresent(Double.self, forKey: .pollSeconds) ?? pollSeconds
    certificateFile = try c.decodeIfPresent(String.self, forKey: .certificateFile)
    keyFile = try c.decodeIfPresent(String.self, forKey: .keyFile)
    caFile = try c.decodeIfPresent(String.self, forKey: .caFile)
    timeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .timeoutSeconds) ?? timeoutSeconds
    silenceAlarmMinutes = try c.decodeIfPresent(Double.self, forKey: .silenceAlarmMinutes) ?? silenceAlarmMinutes
    maximumEventHours = try c.decodeIfPresent(Double.self, forKey: .maximumEventHours) ?? maximumEventHours
  }

  func validated(
    document: StructuredDocument, siteName: String, base: String, environment: [String: String]
  ) throws(InputError) -> OpenADRSection {
    func fail(_ key: String, _ message: String) -> InputError { document.error(at: ["openadr", key], message) }
    var c = self
    let testing = environment[Self.plainHTTPForTestsVariable] == "1"
    guard let url = URL(string: vtnURL), let scheme = url.scheme?.lowercased(), url.host != nil,
      ["http", "https"].contains(scheme)
    else {
      throw fail("vtn_url", "'\(vtnURL)' is not an https:// URL")
    }
    if scheme == "http" && !testing {
      throw fail(
        "vtn_url",
        "OpenADR 2.0b needs TLS with a client certificate: use https:// (plain http:// is for tests only)")
    }
    if scheme == "https" {
      guard let cert = certificateFile, !cert.isEmpty, let key = keyFile, !key.isEmpty else {
        throw fail(
          certificateFile == nil ? "certificate_file" : "key_file",
          "missing: OpenADR 2.0b identifies the VEN by its TLS client certificate (certificate_file and key_file, PEM)"
        )
      }
      c.certificateFile = MQTTSection.resolve(cert, base: base)
      c.keyFile = MQTTSection.resolve(key, base: base)
      c.caFile = caFile.map { MQTTSection.resolve($0, base: base) }
    }
    let name = venName ?? MQTTSection.slug(siteName)
    guard !name.isEmpty, name.count <= 128 else { throw fail("ven_name", "must be 1 to 128 characters") }
    c.venName = name
    if let venID, venID.isEmpty || venID.count > 128 { throw fail("ven_id", "must be 1 to 128 characters") }
    let range = testing ? Self.testPollSeconds : 10...60
    guard range.contains(pollSeconds) else {
      throw fail("poll_seconds", "must be 10 to 60 seconds, not \(pollSeconds)")
    }
    guard timeoutSeconds >= 1 && timeoutSeconds <= 120 else { throw fail("timeout_seconds", "must be 1 to 120") }
    guard silenceAlarmMinutes > 0 else { throw fail("silence_alarm_minutes", "must be above 0") }
    guard maximumEventHours > 0 && maximumEventHours <= 24 else {
      throw fail("maximum_event_hours", "must be above 0 and at most 24")
    }
    return c
  }

  /// Why a TLS file cannot be read now (nil: they can), for check-config and the log.
  public func fileProblems() -> [String] {
    [("certificate_file", certificateFile), ("key_file", keyFile), ("ca_file", caFile)].compactMap { key, path in
      guard let path else { return nil }
      return FileManager.default.isReadableFile(atPath: path) ? nil : "openadr.\(key): \(path) cannot be read"
    }
  }

  public var transportConfiguration: HTTPVTNTransport.Configuration {
    var t = HTTPVTNTransport.Configuration(baseURL: vtnURL)
    t.certificateFile = certificateFile
    t.keyFile = keyFile
    t.caFile = caFile
    t.timeoutSeconds = timeoutSeconds
    return t
  }

  public var venConfiguration: VEN.Configuration {
    var v = VEN.Configuration(venName: venName ?? "microgrid-edge")
    v.venID = venID
    v.pollSeconds = pollSeconds
    v.silenceAlarmSeconds = silenceAlarmMinutes * 60
    v.limits.maximumDurationSeconds = maximumEventHours * 3600
    return v
  }
}
