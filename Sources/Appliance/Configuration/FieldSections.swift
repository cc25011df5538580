import Foundation
import SiteFiles
import SiteModel

/// `time:` in the site configuration: the site's time zone and how the appliance knows its
/// clock is right. See docs/configuration.md.
public struct TimeSection: Codable, Sendable, Hashable {
  /// An IANA time zone, e.g. America/New_York: the calendar the tariff, the billing
  /// periods and the timetables run on.
  public var zone: String
  /// `kernel` (ask the kernel, as chrony, ntpd and systemd-timesyncd set it), or the path
  /// of a file that exists while the clock is synchronized (systemd-timesyncd keeps
  /// /run/systemd/timesync/synchronized).
  public var synchronized: String = "kernel"

  enum CodingKeys: String, CodingKey { case zone, synchronized }

  public init(zone: String, synchronized: String = "kernel") {
    self.zone = zone
    self.synchronized = synchronized
  }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    zone = try c.decode(String.self, forKey: .zone)
    synchronized = try c.decodeIfPresent(String.self, forKey: .synchronized) ?? synchronized
  }

  func validated(document: StructuredDocument, base: String) throws(InputError) -> TimeSection {
    guard SiteTimeZone(identifier: zone) != nil else {
      throw document.error(
        at: ["time", "zone"], "'\(zone)' is not a time zone this system knows (an IANA name such as America/New_York)")
    }
    var s = self
    if synchronized != "kernel" {
      guard !synchronized.isEmpty else {
        throw document.error(at: ["time", "synchronized"], "'kernel' or the path of a file")
      }
      s.synchronized = MQTTSection.resolve(synchronized, base: base)
    }
    return s
  }

  public var siteTimeZone: SiteTimeZone { SiteTimeZone(identifier: zone)! }
  public var synchronization: SystemClock.Synchronization {
    synchronized == "kernel" ? .kernel : .file(synchronized)
  }
}

/// `billing:`: when the utility's billing periods start.
public struct BillingSection: Codable, Sendable, Hashable {
  /// The day of the month each billing period starts (1 to 28); the period's peak starts
  /// again at 00:00 that day, site time.
  public var cycleStartDay: Int = 1

  enum CodingKeys: String, CodingKey { case cycleStartDay = "cycle_start_day" }

  public init(cycleStartDay: Int = 1) { self.cycleStartDay = cycleStartDay }

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    cycleStartDay = try c.decodeIfPresent(Int.self, forKey: .cycleStartDay) ?? 1
  }

  func validated(document: StructuredDocument) throws(InputError) -> BillingSection {
    guard (1...28).contains(cycleStartDay) else {
      throw document.error(
        at: ["billing", "cycle_start_day"], "must be a day from 1 to 28 (every month has it), not \(cycleStartDay)")
    }
    return self
  }
}

/// `state:`: where the appliance keeps what must survive a restart (the period's peak, the
/// interval in progress, the histories, staff's instructions and events).
public struct StateSection: Codable, Sendable, Hashable {
  public var path: String

  public init(path: String) { self.path = path }

  public static let defaultPath = "/var/lib/microgrid-edge/state.db"

  func validated(document: StructuredDocument, base: String) throws(InputError) -> StateSection {
    guard !path.isEmpty else { throw document.error(at: ["state", "path"], "must name the database file") }
    return StateSection(path: MQTTSection.resolve(path, base: base))
  }
}
