import CentralUpload
import Foundation
import SiteFiles
import SiteModel
import Store

/// `store:` in the site configuration: where records wait for the central program, and
/// how much disk they may take. See docs/store-and-forward.md.
public struct StoreSection: Codable, Sendable, Hashable {
  /// The SQLite file (relative to the configuration's folder); its seq ledger sits
  /// beside it as `<path>.seq`.
  public var path: String
  public var budgetMB: Double = 1024
  /// Uploaded records are kept this long (days).
  public var retentionDays: Double = 7
  /// A telemetry record this often (site seconds).
  public var telemetryEverySeconds: Double = 5
  /// Thinned telemetry keeps one summary per interval of this length.
  public var summaryIntervalMinutes: Double = 15

  enum CodingKeys: String, CodingKey {
    case path
    case budgetMB = "budget_mb"
    case retentionDays = "retention_days"
    case telemetryEverySeconds = "telemetry_every_seconds"
    case summaryIntervalMinutes = "summary_interval_minutes"
  }

  public init(path: String) { self.path = path }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    path = try c.decode(String.self, forKey: .path)
    budgetMB = try c.decodeIfPresent(Double.self, forKey: .budgetMB) ?? budgetMB
    retentionDays = try c.decodeIfPresent(Double.self, forKey: .retentionDays) ?? retentionDays
    telemetryEverySeconds = try c.decodeIfPresent(Double.self, forKey: .telemetryEverySeconds) ?? telemetryEverySeconds
    summaryIntervalMinutes =
      try c.decodeIfPresent(Double.self, forKey: .summaryIntervalMinutes) ?? summaryIntervalMinutes
  }

  func validated(document: StructuredDocument, base: String) throws(InputError) -> StoreSection {
    func fail(_ key: String, _ message: String) -> InputError { document.error(at: ["store", key], message) }
    guard !path.isEmpty else { throw fail("path", "must name the database file") }
    guard budgetMB >= 1 && budgetMB <= 1_000_000 else { throw fail("budget_mb", "must be 1 to 1000000 (MiB)") }
    guard retentionDays >= 0 && retentionDays <= 3650 else { throw fail("retention_days", "must be 0 to 3650") }
    guard telemetryEverySeconds >= 1 && telemetryEverySeconds <= 3600 else {
      throw fail("telemetry_every_seconds", "must be 1 to 3600")
    }
    guard summaryIntervalMinutes >= 1 && summaryIntervalMinutes <= 1440 else {
      throw fail("summary_interval_minutes", "must be 1 to 1440")
    }
    var s = self
    s.path = MQTTSection.resolve(path, base: base)
    return s
  }

  public func storeConfiguration(siteID: String) -> RecordStore.Configuration {
    var c = RecordStore.Configuration(path: path, siteID: siteID)
    c.budgetBytes = Int64(budgetMB * 1_048_576)
    c.retentionSeconds = retentionDays * 86_400
    c.summaryIntervalSeconds = summaryIntervalMinutes * 60
    return c
  }
}

/// `central:` in the site configuration: the program's ingest API (../shared/CENTRAL-API.md).
public struct CentralSection: Codable, Sendable, Hashable {
  /// `https://program.example/api`; records go to `{base_url}/v1/sites/{site_id}/records`.
  public var baseURL: String
  /// The site's id at the program (default: the site's name as a slug).
  public var siteID: String?
  /// A file whose first line is the site's bearer token.
  public var tokenFile: String
  public var timeoutSeconds: Double = 30
  public var batchMaxRecords: Int = 1000
  public var batchMaxKB: Int = 512
  public var gatherSeconds: Double = 10
  public var retryMaxSeconds: Double = 300
  public var unauthorizedRetrySeconds: Double = 600
  /// An alarm when records have waited this long for a program that cannot be reached.
  public var offlineAlarmMinutes: Double = 60

  enum CodingKeys: String, CodingKey {
    case baseURL = "base_url"
    case siteID = "site_id"
    case tokenFile = "token_file"
    case timeoutSeconds = "timeout_seconds"
    case batchMaxRecords = "batch_max_records"
    case batchMaxKB = "batch_max_kb"
    case gatherSeconds = "gather_seconds"
    case retryMaxSeconds = "retry_max_seconds"
    case unauthorizedRetrySeconds = "unauthorized_retry_seconds"
    case offlineAlarmMinutes = "offline_alarm_minutes"
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    baseURL = try c.decode(String.self, forKey: .baseURL)
    siteID = try c.decodeIfPresent(String.self, forKey: .siteID)
    tokenFile = try c.decode(String.self, forKey: .tokenFile)
    timeoutSeconds = try c.decodeIfPresent(Double.self, forKey: .timeoutSeconds) ?? timeoutSeconds
    batchMaxRecords = try c.decodeIfPresent(Int.self, forKey: .batchMaxRecords) ?? batchMaxRecords
    batchMaxKB = try c.decodeIfPresent(Int.self, forKey: .batchMaxKB) ?? batchMaxKB
    gatherSeconds = try c.decodeIfPresent(Double.self, forKey: .gatherSeconds) ?? gatherSeconds
    retryMaxSeconds = try c.decodeIfPresent(Double.self, forKey: .retryMaxSeconds) ?? retryMaxSeconds
    unauthorizedRetrySeconds =
      try c.decodeIfPresent(Double.self, forKey: .unauthorizedRetrySeconds) ?? unauthorizedRetrySeconds
    offlineAlarmMinutes = try c.decodeIfPresent(Double.self, forKey: .offlineAlarmMinutes) ?? offlineAlarmMinutes
  }

  func validated(document: StructuredDocument, siteName: String, base: String) throws(InputError) -> CentralSection {
    func fail(_ key: String, _ message: String) -> InputError { document.error(at: ["central", key], message) }
    var c = self
    guard let url = URL(string: baseURL), let scheme = url.scheme?.lowercased(), ["http", "https"].contains(scheme),
      url.host != nil
    else {
      throw fail("base_url", "'\(baseURL)' is not an http:// or https:// URL")
    }
    let id = siteID ?? MQTTSection.slug(siteName)
    guard let first = id.first, first.isASCII && (first.isLetter || first.isNumber),
      id.count <= 128, id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) })
    else {
      throw fail("site_id", "'\(id)' must be letters, digits, '.', '_' or '-' (starting with a letter or digit)")
    }
    c.siteID = id
    guard !tokenFile.isEmpty else { throw fail("token_file", "must name the file holding the site's token") }
    c.tokenFile = MQTTSection.resolve(tokenFile, base: base)
    guard timeoutSeconds >= 1 && timeoutSeconds <= 600 else { throw fail("timeout_seconds", "must be 1 to 600") }
    guard (1...100_000).contains(batchMaxRecords) else { throw fail("batch_max_records", "must be 1 to 100000") }
    guard (1...65_536).contains(batchMaxKB) else { throw fail("batch_max_kb", "must be 1 to 65536") }
    guard gatherSeconds >= 0 && gatherSeconds <= 3600 else { throw fail("gather_seconds", "must be 0 to 3600") }
    guard retryMaxSeconds >= 1 && retryMaxSeconds <= 86_400 else {
      throw fail("retry_max_seconds", "must be 1 to 86400")
    }
    guard unauthorizedRetrySeconds >= 1 && unauthorizedRetrySeconds <= 86_400 else {
      throw fail("unauthorized_retry_seconds", "must be 1 to 86400")
    }
    guard offlineAlarmMinutes > 0 else { throw fail("offline_alarm_minutes", "must be above 0") }
    return c
  }

  /// The token, or why there is none. Read when the appliance starts and again while it
  /// is missing, so that a token installed later is picked up without a restart.
  public func readToken() -> Result<String, StoreError> {
    let token: String
    switch SecretFile.firstLine(of: tokenFile) {
    case .success(let line): token = line
    case .failure(let problem) where problem.kind == .unreadable:
      return .failure(StoreError(path: tokenFile, problem: "cannot read the central program's token"))
    case .failure:
      return .failure(StoreError(path: tokenFile, problem: "the first line must be the token, one word"))
    }
    guard !token.contains(where: { $0.isWhitespace }) else {
      return .failure(StoreError(path: tokenFile, problem: "the first line must be the token, one word"))
    }
    return .success(token)
  }

  public func uploaderConfiguration() -> CentralUploader.Configuration {
    var c = CentralUploader.Configuration()
    c.policy.maxRecords = batchMaxRecords
    c.policy.maxBackoff = retryMaxSeconds
    c.policy.unauthorizedRetry = unauthorizedRetrySeconds
    c.maxBytes = batchMaxKB * 1024
    c.gatherSeconds = gatherSeconds
    return c
  }
}
