import Foundation

// What a report says, as plain values: the engine fills them, the writers (JSON, CSV, HTML)
// only format them. Power is kW and energy kWh; vehicle power is signed from the
// building's side (+ charging, − discharging) and "delivered" is discharge, positive.

/// One site's figures over the report's range.
public struct SiteReport: Sendable, Encodable {
  public var site: String
  public var source: String
  public var name: String?
  public var timeZone: String
  /// Records read inside the range.
  public var records = 0
  public var seqFirst: Int64?
  public var seqLast: Int64?
  /// Seqs missing between records (lost data), inclusive ranges.
  public var seqGaps: [SeqGap] = []
  /// The site's figures cannot be trusted whole: records are missing.
  public var flagged: Bool { !seqGaps.isEmpty }
  /// What was wrong with the input, each with where.
  public var problems: [String] = []
  public var periods: [PeriodReport] = []

  public struct SeqGap: Sendable, Encodable, Hashable {
    public var from: Int64
    public var to: Int64
    public var count: Int64 { to - from + 1 }
  }

  enum CodingKeys: String, CodingKey {
    case site, source, name, records, problems, periods, flagged
    case timeZone = "time_zone"
    case seqFirst = "seq_first"
    case seqLast = "seq_last"
    case seqGaps = "seq_gaps"
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(site, forKey: .site)
    try c.encode(source, forKey: .source)
    try c.encode(name, forKey: .name)
    try c.encode(timeZone, forKey: .timeZone)
    try c.encode(records, forKey: .records)
    try c.encode(seqFirst, forKey: .seqFirst)
    try c.encode(seqLast, forKey: .seqLast)
    try c.encode(seqGaps, forKey: .seqGaps)
    try c.encode(flagged, forKey: .flagged)
    try c.encode(problems, forKey: .problems)
    try c.encode(periods, forKey: .periods)
  }
}

/// One billing period of one site (clipped to the report's range).
public struct PeriodReport: Sendable, Encodable {
  /// `2023-07`: the month the period starts in.
  public var period: String
  /// Local times, `2023-07-01T00:00`; `to` is exclusive.
  public var from: String
  public var to: String
  /// Demand intervals with telemetry, and how many the span holds.
  public var intervalsMeasured = 0
  public var intervalsInSpan = 0
  /// The billed peak with V2X: the highest demand interval's mean grid import.
  public var peakKW = 0.0
  public var peakAt: String?
  /// The peak the utility would have billed without V2X: the building's own load plus its
  /// vehicles charged on arrival at full rate (see ChargeOnArrival).
  public var peakWithoutV2XKW = 0.0
  public var peakWithoutV2XAt: String?
  /// The building's own peak, vehicles left out.
  public var buildingPeakKW = 0.0
  public var demandChargePerKWMonth = 0.0
  public var demandChargeSaved: Double { demandChargePerKWMonth * (peakWithoutV2XKW - peakKW) }
  public var importedKWh = 0.0
  public var events: [EventReport] = []
  public var outages: [OutageReport] = []
  public var vehicles: [VehicleReport] = []
  public var departuresMet = 0
  public var departuresMissed: [MissedDeparture] = []

  enum CodingKeys: String, CodingKey {
    case period, from, to, events, outages, vehicles, departures
    case intervalsMeasured = "intervals_measured"
    case intervalsInSpan = "intervals_in_span"
    case peakKW = "peak_kw"
    case peakAt = "peak_at"
    case peakWithoutV2XKW = "peak_without_v2x_kw"
    case peakWithoutV2XAt = "peak_without_v2x_at"
    case buildingPeakKW = "building_peak_kw"
    case demandChargePerKWMonth = "demand_charge_per_kw_month"
    case demandChargeSaved = "demand_charge_saved"
    case importedKWh = "imported_kwh"
  }
  enum DepartureKeys: String, CodingKey { case met, missed }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(period, forKey: .period)
    try c.encode(from, forKey: .from)
    try c.encode(to, forKey: .to)
    try c.encode(intervalsMeasured, forKey: .intervalsMeasured)
    try c.encode(intervalsInSpan, forKey: .intervalsInSpan)
    try c.encode(Rounded.kW(peakKW), forKey: .peakKW)
    try c.encode(peakAt, forKey: .peakAt)
    try c.encode(Rounded.kW(peakWithoutV2XKW), forKey: .peakWithoutV2XKW)
    try c.encode(peakWithoutV2XAt, forKey: .peakWithoutV2XAt)
    try c.encode(Rounded.kW(buildingPeakKW), forKey: .buildingPeakKW)
    try c.encode(demandChargePerKWMonth, forKey: .demandChargePerKWMonth)
    try c.encode(Rounded.money(demandChargeSaved), forKey: .demandChargeSaved)
    try c.encode(Rounded.kW(importedKWh), forKey: .importedKWh)
    try c.encode(events, forKey: .events)
    try c.encode(outages, forKey: .outages)
    try c.encode(vehicles, forKey: .vehicles)
    var d = c.nestedContainer(keyedBy: DepartureKeys.self, forKey: .departures)
    try d.encode(departuresMet, forKey: .met)
    try d.encode(departuresMissed, forKey: .missed)
  }
}

/// A demand-response event: what the site delivered over its window.
public struct EventReport: Sendable, Encodable {
  public var id: String
  /// UTC, ISO 8601.
  public var start: String
  public var end: String
  /// Mean net vehicle discharge over the window, kW: the program's payment basis.
  public var meanDeliveredKW = 0.0
  /// The share of the season's payment this event earns: rate × kW ÷ events in the range.
  public var expectedPayment = 0.0
  /// Share of the window that had telemetry, 0...1.
  public var measuredShare = 0.0
  public var optedOut = false
  public var optReason: String?
  /// Where the event came from: `utility` (OpenADR), `staff` or `scenario`.
  public var source: String

  enum CodingKeys: String, CodingKey {
    case id, start, end, source
    case meanDeliveredKW = "mean_delivered_kw"
    case expectedPayment = "expected_payment"
    case measuredShare = "measured_share"
    case optedOut = "opted_out"
    case optReason = "opt_reason"
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(id, forKey: .id)
    try c.encode(start, forKey: .start)
    try c.encode(end, forKey: .end)
    try c.encode(Rounded.kW(meanDeliveredKW), forKey: .meanDeliveredKW)
    try c.encode(Rounded.money(expectedPayment), forKey: .expectedPayment)
    try c.encode(Rounded.share(measuredShare), forKey: .measuredShare)
    try c.encode(optedOut, forKey: .optedOut)
    try c.encode(optReason, forKey: .optReason)
    try c.encode(source, forKey: .source)
  }
}

/// A utility outage and how the vehicles carried the building through it.
public struct OutageReport: Sendable, Encodable {
  public var start: String
  /// Nil while it lasts (the records end inside it).
  public var end: String?
  public var hours = 0.0
  /// Critical load the island served, kWh.
  public var criticalLoadKWh = 0.0
  /// Critical load that went unserved (the building dark), kWh.
  public var criticalUnservedKWh = 0.0
  /// Energy the vehicles gave the building, kWh (building side).
  public var vehicleEnergyKWh = 0.0
  /// How much longer the plugged vehicles' energy above their reserves could have carried
  /// the outage's mean load, hours (nil: nothing was carried).
  public var couldHaveCarriedHours: Double?

  enum CodingKeys: String, CodingKey {
    case start, end, hours
    case criticalLoadKWh = "critical_load_kwh"
    case criticalUnservedKWh = "critical_unserved_kwh"
    case vehicleEnergyKWh = "vehicle_energy_kwh"
    case couldHaveCarriedHours = "could_have_carried_hours"
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(start, forKey: .start)
    try c.encode(end, forKey: .end)
    try c.encode(Rounded.share(hours), forKey: .hours)
    try c.encode(Rounded.kW(criticalLoadKWh), forKey: .criticalLoadKWh)
    try c.encode(Rounded.kW(criticalUnservedKWh), forKey: .criticalUnservedKWh)
    try c.encode(Rounded.kW(vehicleEnergyKWh), forKey: .vehicleEnergyKWh)
    try c.encode(couldHaveCarriedHours.map(Rounded.share), forKey: .couldHaveCarriedHours)
  }
}

/// A vehicle's energy in and out over the period (sessions that ended in it).
public struct VehicleReport: Sendable, Encodable {
  public var vehicle: String
  public var sessions = 0
  /// Building side, kWh.
  public var chargedKWh = 0.0
  public var dischargedKWh = 0.0
  /// Energy through the battery, in plus out (battery side), kWh.
  public var throughputKWh = 0.0
  /// Throughput ÷ twice the battery's capacity (nil: capacity unknown).
  public var equivalentFullCycles: Double?

  enum CodingKeys: String, CodingKey {
    case vehicle, sessions
    case chargedKWh = "charged_kwh"
    case dischargedKWh = "discharged_kwh"
    case throughputKWh = "throughput_kwh"
    case equivalentFullCycles = "equivalent_full_cycles"
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(vehicle, forKey: .vehicle)
    try c.encode(sessions, forKey: .sessions)
    try c.encode(Rounded.kW(chargedKWh), forKey: .chargedKWh)
    try c.encode(Rounded.kW(dischargedKWh), forKey: .dischargedKWh)
    try c.encode(Rounded.kW(throughputKWh), forKey: .throughputKWh)
    try c.encode(equivalentFullCycles.map(Rounded.share), forKey: .equivalentFullCycles)
  }
}

public struct MissedDeparture: Sendable, Encodable {
  public var vehicle: String
  /// When it left, UTC.
  public var time: String
  public var needKWh: Double
  public var energyKWh: Double
  public var shortKWh: Double { needKWh - energyKWh }
  public var cause: String

  enum CodingKeys: String, CodingKey {
    case vehicle, time, cause
    case needKWh = "need_kwh"
    case energyKWh = "energy_kwh"
    case shortKWh = "short_kwh"
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(vehicle, forKey: .vehicle)
    try c.encode(time, forKey: .time)
    try c.encode(Rounded.kW(needKWh), forKey: .needKWh)
    try c.encode(Rounded.kW(energyKWh), forKey: .energyKWh)
    try c.encode(Rounded.kW(shortKWh), forKey: .shortKWh)
    try c.encode(cause, forKey: .cause)
  }
}

/// The program's view across sites.
public struct ProgramRollup: Sendable, Encodable {
  public var goalKW: Double
  public var events: [ProgramEvent] = []
  public var optedOut: [OptOut] = []
  public var flaggedSites: [String] = []

  public struct ProgramEvent: Sendable, Encodable {
    public var id: String
    public var start: String
    public var end: String
    /// The sum of the sites' mean deliveries, kW.
    public var totalKW: Double
    public var sites: [String: Double]
    public var goalMet: Bool
    /// Sites whose records are incomplete: their figure may be low.
    public var flaggedSites: [String]

    enum CodingKeys: String, CodingKey {
      case id, start, end, sites
      case totalKW = "total_kw"
      case goalMet = "goal_met"
      case flaggedSites = "flagged_sites"
    }
  }
  public struct OptOut: Sendable, Encodable {
    public var site: String
    public var event: String
    public var reason: String
  }

  enum CodingKeys: String, CodingKey {
    case events
    case goalKW = "goal_kw"
    case optedOut = "opted_out"
    case flaggedSites = "flagged_sites"
  }
}

/// Figures as written: kW and kWh to 0.001, money to the cent.
enum Rounded {
  static func kW(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }
  static func money(_ v: Double) -> Double { (v * 100).rounded() / 100 }
  static func share(_ v: Double) -> Double { (v * 10000).rounded() / 10000 }
}
