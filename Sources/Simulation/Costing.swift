import SiteModel

/// The cost of a trace, exactly as SCENARIO.md defines it, computed from the trace rows
/// alone (so it means the same as an outside checker's).
public struct CostBreakdown: Sendable, Hashable, Encodable {
  public var demandCharge = 0.0
  public var energyCost = 0.0
  public var exportCredit = 0.0
  public var demandResponsePayment = 0.0
  public var shortfallPenalty = 0.0
  public var unservedCriticalPenalty = 0.0
  public var total: Double {
    demandCharge + energyCost - exportCredit - demandResponsePayment + shortfallPenalty
      + unservedCriticalPenalty
  }

  public var monthlyPeaksKW: [MonthPeak] = []
  public var importedKWh = 0.0
  public var exportedKWh = 0.0
  /// Mean over events of each event's mean net vehicle discharge, kW.
  public var meanEventDischargeKW = 0.0
  public var events: [EventResult] = []
  public var shortfallKWh = 0.0
  public var shortfalls: [Shortfall] = []
  public var unservedCriticalKWh = 0.0

  public struct MonthPeak: Sendable, Hashable, Codable {
    public var month: String
    public var peakKW: Double
    public var buildingPeakKW: Double
  }
  public struct EventResult: Sendable, Hashable, Codable {
    public var id: String
    public var meanDischargeKW: Double
  }
  public struct Shortfall: Sendable, Hashable, Codable {
    public var vehicle: String
    public var departMinute: Int
    public var missingKWh: Double
  }

  enum CodingKeys: String, CodingKey {
    case demandCharge = "demand_charge"
    case energyCost = "energy_cost"
    case exportCredit = "export_credit"
    case demandResponsePayment = "dr_payment"
    case shortfallPenalty = "shortfall_penalty"
    case unservedCriticalPenalty = "unserved_critical_penalty"
    case monthlyPeaksKW = "monthly_peaks"
    case importedKWh = "imported_kwh"
    case exportedKWh = "exported_kwh"
    case meanEventDischargeKW = "mean_event_discharge_kw"
    case events
    case shortfallKWh = "shortfall_kwh"
    case shortfalls
    case unservedCriticalKWh = "unserved_critical_kwh"
    case total
  }

  public func encode(to encoder: any Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(total, forKey: .total)
    try c.encode(demandCharge, forKey: .demandCharge)
    try c.encode(energyCost, forKey: .energyCost)
    try c.encode(exportCredit, forKey: .exportCredit)
    try c.encode(demandResponsePayment, forKey: .demandResponsePayment)
    try c.encode(shortfallPenalty, forKey: .shortfallPenalty)
    try c.encode(unservedCriticalPenalty, forKey: .unservedCriticalPenalty)
    try c.encode(monthlyPeaksKW, forKey: .monthlyPeaksKW)
    try c.encode(importedKWh, forKey: .importedKWh)
    try c.encode(exportedKWh, forKey: .exportedKWh)
    try c.encode(meanEventDischargeKW, forKey: .meanEventDischargeKW)
    try c.encode(events, forKey: .events)
    try c.encode(shortfallKWh, forKey: .shortfallKWh)
    try c.encode(shortfalls, forKey: .shortfalls)
    try c.encode(unservedCriticalKWh, forKey: .unservedCriticalKWh)
  }

  /// Costs `trace` on `scenario`'s tariff.
  public init(trace: Trace, scenario: Scenario) {
    let tariff = scenario.site.tariff
    let hours = scenario.intervalSeconds / 3600
    var peaks: [(key: Int, name: String, peak: Double, building: Double)] = []
    var outageIndex = 0
    for row in trace.intervals {
      let local = scenario.start + Double(row.minute) * 60
      let key = local.monthKey
      if peaks.last?.key != key {
        let date = local.date
        let name = "\(date.year)-\(date.month < 10 ? "0" : "")\(date.month)"
        peaks.append((key, name, 0, 0))
      }
      peaks[peaks.count - 1].peak = max(peaks[peaks.count - 1].peak, row.gridKW)
      peaks[peaks.count - 1].building = max(peaks[peaks.count - 1].building, row.buildingKW)
      importedKWh += max(0, row.gridKW) * hours
      exportedKWh += max(0, -row.gridKW) * hours
      while outageIndex < scenario.outages.count && scenario.outages[outageIndex].endMinute <= row.minute {
        outageIndex += 1
      }
      if outageIndex < scenario.outages.count && scenario.outages[outageIndex].contains(minute: row.minute) {
        let critical = row.buildingKW * scenario.site.criticalLoadFraction
        unservedCriticalKWh += max(0, critical - row.servedKW) * hours
      }
    }
    monthlyPeaksKW = peaks.map { MonthPeak(month: $0.name, peakKW: $0.peak, buildingPeakKW: $0.building) }
    demandCharge = peaks.reduce(0) { $0 + tariff.demandChargePerKWMonth * max(0, $1.peak) }
    energyCost = tariff.energyPricePerKWh * importedKWh
    exportCredit = tariff.exportCreditPerKWh * exportedKWh

    let step = scenario.intervalMinutes
    for e in scenario.events {
      let first = Int(e.startTime / 60) / step
      let last = Int(e.endTime / 60) / step
      guard first < trace.intervals.count, last <= trace.intervals.count, last > first else { continue }
      let mean = trace.intervals[first..<last].reduce(0) { $0 - $1.evKW } / Double(last - first)
      events.append(EventResult(id: e.id, meanDischargeKW: mean))
    }
    meanEventDischargeKW = events.isEmpty ? 0 : events.reduce(0) { $0 + $1.meanDischargeKW } / Double(events.count)
    demandResponsePayment = tariff.demandResponsePaymentPerKW * meanEventDischargeKW

    for d in trace.departures {
      let s = scenario.sessions[d.session]
      let missing = s.departMinKWh - d.energyKWh
      if missing > 1e-6 {
        shortfalls.append(
          Shortfall(vehicle: scenario.site.vehicles[s.vehicle].id, departMinute: s.departMinute, missingKWh: missing))
        shortfallKWh += missing
      }
    }
    shortfallPenalty = tariff.departureShortfallPenaltyPerKWh * shortfallKWh
    unservedCriticalPenalty = tariff.unservedCriticalPenaltyPerKWh * unservedCriticalKWh
  }
}
