import SiteModel

/// The `site:` section shared by scenario.json and the site configuration.
public struct SiteLimitsSection: Codable, Sendable {
  public var name: String?
  public var importLimitKW: Double
  public var exportLimitKW: Double
  public var eventExportLimitKW: Double
  public var criticalLoadFraction: Double

  enum CodingKeys: String, CodingKey {
    case name
    case importLimitKW = "import_limit_kw"
    case exportLimitKW = "export_limit_kw"
    case eventExportLimitKW = "event_export_limit_kw"
    case criticalLoadFraction = "critical_load_fraction"
  }
}

extension StructuredDocument {
  /// Builds a site description from the `site`, `tariff`, `chargers` and `vehicles`
  /// sections, checking what a decoder cannot: ranges and unique ids.
  public func siteDescription(name fallbackName: String, demandIntervalSeconds: Double) throws(InputError)
    -> SiteDescription
  {
    let limits = try decode(SiteLimitsSection.self, key: "site")
    let tariff = try decode(Tariff.self, key: "tariff")
    let chargers = try decode([ChargerSpec].self, key: "chargers")
    let vehicles = try decode([VehicleSpec].self, key: "vehicles")

    func check(_ ok: Bool, _ path: [String], _ message: String) throws(InputError) {
      if !ok { throw error(at: path, message) }
    }
    try check(limits.importLimitKW > 0, ["site", "import_limit_kw"], "must be above 0 kW")
    try check(limits.exportLimitKW >= 0, ["site", "export_limit_kw"], "must be 0 kW or more")
    try check(limits.eventExportLimitKW >= 0, ["site", "event_export_limit_kw"], "must be 0 kW or more")
    try check(
      (0...1).contains(limits.criticalLoadFraction), ["site", "critical_load_fraction"],
      "must be between 0 and 1")
    let money: [(String, Double)] = [
      ("demand_charge_per_kw_month", tariff.demandChargePerKWMonth),
      ("energy_price_per_kwh", tariff.energyPricePerKWh),
      ("export_credit_per_kwh", tariff.exportCreditPerKWh),
      ("dr_payment_per_kw", tariff.demandResponsePaymentPerKW),
      ("departure_shortfall_penalty_per_kwh", tariff.departureShortfallPenaltyPerKWh),
      ("unserved_critical_penalty_per_kwh", tariff.unservedCriticalPenaltyPerKWh),
    ]
    for (key, value) in money {
      try check(value.isFinite && value >= 0, ["tariff", key], "must be a price of 0 or more")
    }
    try check(!chargers.isEmpty, ["chargers"], "lists no charger")
    var seen: Set<String> = []
    for (i, c) in chargers.enumerated() {
      let at = ["chargers", String(i)]
      try check(!c.id.isEmpty, at + ["id"], "must not be empty")
      try check(seen.insert(c.id).inserted, at + ["id"], "'\(c.id)' is listed twice")
      try check(c.maxChargeKW >= 0 && c.maxChargeKW.isFinite, at + ["max_charge_kw"], "must be 0 kW or more")
      try check(
        c.maxDischargeKW >= 0 && c.maxDischargeKW.isFinite, at + ["max_discharge_kw"], "must be 0 kW or more")
      try check(c.efficiency > 0 && c.efficiency <= 1, at + ["efficiency"], "must be above 0 and at most 1")
    }
    seen = []
    for (i, v) in vehicles.enumerated() {
      let at = ["vehicles", String(i)]
      try check(!v.id.isEmpty, at + ["id"], "must not be empty")
      try check(seen.insert(v.id).inserted, at + ["id"], "'\(v.id)' is listed twice")
      try check(v.batteryKWh > 0 && v.batteryKWh.isFinite, at + ["battery_kwh"], "must be above 0 kWh")
      try check(
        v.reserveKWh >= 0 && v.reserveKWh <= v.batteryKWh, at + ["reserve_kwh"],
        "must be between 0 and the battery's \(v.batteryKWh) kWh")
    }
    return SiteDescription(
      name: limits.name ?? fallbackName, importLimitKW: limits.importLimitKW,
      exportLimitKW: limits.exportLimitKW, eventExportLimitKW: limits.eventExportLimitKW,
      criticalLoadFraction: limits.criticalLoadFraction, demandIntervalSeconds: demandIntervalSeconds,
      tariff: tariff, chargers: chargers, vehicles: vehicles)
  }
}
