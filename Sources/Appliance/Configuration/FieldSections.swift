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

/// `vehicle_defaults:`: what a vehicle needs when its charger does not say (no
/// NotifyEVChargingNeeds). A departure on the charger's weekly timetable, else the default
/// stay; the need given, else a share of the battery. Staff's `set_departure` still wins.
public struct VehicleDefaultsSection: Codable, Sendable, Hashable {
  /// A vehicle with no known departure is managed as leaving this long after it plugged in.
  public var defaultStayHours: Double = 10
  /// Its need, as a share of its battery, when no timetable gives one.
  public var defaultNeedFraction: Double = 0.8
  /// Days with no service: no timetable departure on them (`2026-12-24`).
  public var noServiceDates: [String] = []
  public var timetables: [Timetable] = []

  public struct Timetable: Codable, Sendable, Hashable {
    /// The charger the vehicle parks at.
    public var charger: String
    /// The vehicle that parks there (its battery and reserve); nil: the charger's own.
    public var vehicle: String?
    /// Energy it needs in the battery at each departure, kWh.
    public var needKWh: Double?
    public var departures: [Departure]

    enum CodingKeys: String, CodingKey {
      case charger, vehicle, departures
      case needKWh = "need_kwh"
    }
  }

  public struct Departure: Codable, Sendable, Hashable {
    /// `[mon, tue, wed, thu, fri]`
    public var days: [String]
    /// `06:45`, site time.
    public var at: String
  }

  enum CodingKeys: String, CodingKey {
    case timetables
    case defaultStayHours = "default_stay_hours"
    case defaultNeedFraction = "default_need_fraction"
    case noServiceDates = "no_service_dates"
  }

  public init() {}

  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    defaultStayHours = try c.decodeIfPresent(Double.self, forKey: .defaultStayHours) ?? defaultStayHours
    defaultNeedFraction = try c.decodeIfPresent(Double.self, forKey: .defaultNeedFraction) ?? defaultNeedFraction
    noServiceDates = try c.decodeIfPresent([String].self, forKey: .noServiceDates) ?? []
    timetables = try c.decodeIfPresent([Timetable].self, forKey: .timetables) ?? []
  }

  /// Checked against the site; the timetables by charger index.
  func validated(document: StructuredDocument, site: SiteDescription) throws(InputError) -> VehicleDefaults {
    func fail(_ path: [String], _ message: String) -> InputError {
      document.error(at: ["vehicle_defaults"] + path, message)
    }
    guard defaultStayHours > 0 && defaultStayHours <= 168 else {
      throw fail(["default_stay_hours"], "must be above 0 and at most 168 (a week)")
    }
    guard defaultNeedFraction >= 0 && defaultNeedFraction <= 1 else {
      throw fail(["default_need_fraction"], "must be from 0 to 1 (a share of the battery)")
    }
    var dates: Set<CivilDate> = []
    for (i, text) in noServiceDates.enumerated() {
      guard let t = CivilDate.parseLocalDateTime(text + "T00:00") else {
        throw fail(["no_service_dates", String(i)], "'\(text)' is not a date like 2026-12-24")
      }
      dates.insert(t.date)
    }
    var byCharger: [Int: VehicleDefaults.ChargerTimetable] = [:]
    for (i, t) in timetables.enumerated() {
      guard let index = site.chargerIndex(id: t.charger) else {
        throw fail(["timetables", String(i), "charger"], "'\(t.charger)' is not one of the site's chargers")
      }
      guard byCharger[index] == nil else {
        throw fail(["timetables", String(i), "charger"], "'\(t.charger)' has a timetable already")
      }
      var vehicle: VehicleSpec?
      if let id = t.vehicle {
        guard let v = site.vehicleIndex(id: id) else {
          throw fail(["timetables", String(i), "vehicle"], "'\(id)' is not one of the site's vehicles")
        }
        vehicle = site.vehicles[v]
      }
      if let need = t.needKWh {
        guard need >= 0, need <= (vehicle?.batteryKWh ?? .infinity) else {
          throw fail(["timetables", String(i), "need_kwh"], "must be from 0 to the vehicle's battery")
        }
      }
      var departures: [DepartureTimetable.Departure] = []
      for (j, d) in t.departures.enumerated() {
        var days: Set<Int> = []
        for name in d.days {
          guard let day = DepartureTimetable.dayNames.firstIndex(of: name.lowercased().prefix(3).description) else {
            throw fail(
              ["timetables", String(i), "departures", String(j), "days"], "'\(name)' is not a day (mon, tue, ...)")
          }
          days.insert(day)
        }
        let hm = d.at.split(separator: ":").compactMap { Int($0) }
        guard hm.count == 2, (0..<24).contains(hm[0]), (0..<60).contains(hm[1]), !days.isEmpty else {
          throw fail(
            ["timetables", String(i), "departures", String(j), "at"], "'\(d.at)' is not a time like 06:45 (with days)")
        }
        departures.append(.init(weekdays: days, minuteOfDay: hm[0] * 60 + hm[1]))
      }
      guard !departures.isEmpty else { throw fail(["timetables", String(i), "departures"], "lists no departure") }
      byCharger[index] = .init(
        vehicle: vehicle, needKWh: t.needKWh,
        timetable: DepartureTimetable(departures: departures, noServiceDates: dates))
    }
    return VehicleDefaults(
      defaultStaySeconds: defaultStayHours * 3600, defaultNeedFraction: defaultNeedFraction, byCharger: byCharger)
  }
}

/// The checked `vehicle_defaults:`.
public struct VehicleDefaults: Sendable, Hashable {
  public struct ChargerTimetable: Sendable, Hashable {
    public var vehicle: VehicleSpec?
    public var needKWh: Double?
    public var timetable: DepartureTimetable
  }
  public var defaultStaySeconds: Double
  public var defaultNeedFraction: Double
  public var byCharger: [Int: ChargerTimetable]

  public init(
    defaultStaySeconds: Double = 36_000, defaultNeedFraction: Double = 0.8, byCharger: [Int: ChargerTimetable] = [:]
  ) {
    self.defaultStaySeconds = defaultStaySeconds
    self.defaultNeedFraction = defaultNeedFraction
    self.byCharger = byCharger
  }
}
