// The site description: what is installed at the building. One source of truth for every
// limit; drivers and adapters read it from here.
//
// Units are carried in names: `KW` is kilowatts, `KWh` kilowatt-hours, `Seconds` seconds.
// Power on a charger is signed from the building's side: + charging, - discharging.
// The Codable keys are the snake_case names of the site files (scenario.json, site YAML).

/// A bidirectional charger as installed.
public struct ChargerSpec: Sendable, Hashable, Codable {
  public var id: String
  public var maxChargeKW: Double
  public var maxDischargeKW: Double
  /// One-way efficiency: charging x kWh from the building adds efficiency * x to the
  /// battery; discharging y kWh to the building takes y / efficiency out of it.
  public var efficiency: Double
  /// The charger can form an island (grid-forming inverter).
  public var gridForming: Bool

  public init(
    id: String, maxChargeKW: Double, maxDischargeKW: Double, efficiency: Double,
    gridForming: Bool
  ) {
    self.id = id
    self.maxChargeKW = maxChargeKW
    self.maxDischargeKW = maxDischargeKW
    self.efficiency = efficiency
    self.gridForming = gridForming
  }

  enum CodingKeys: String, CodingKey {
    case id
    case maxChargeKW = "max_charge_kw"
    case maxDischargeKW = "max_discharge_kw"
    case efficiency
    case gridForming = "grid_forming"
  }
}

/// A fleet vehicle the site knows.
public struct VehicleSpec: Sendable, Hashable, Codable {
  public var id: String
  public var batteryKWh: Double
  /// Discharging never takes the battery below this (or below its energy at arrival, if it
  /// arrived with less), except to carry critical load in an outage.
  public var reserveKWh: Double

  public init(id: String, batteryKWh: Double, reserveKWh: Double) {
    self.id = id
    self.batteryKWh = batteryKWh
    self.reserveKWh = reserveKWh
  }

  enum CodingKeys: String, CodingKey {
    case id
    case batteryKWh = "battery_kwh"
    case reserveKWh = "reserve_kwh"
  }
}

/// What the utility charges and pays. The controller plans with it; the simulator costs
/// with it.
public struct Tariff: Sendable, Hashable, Codable {
  public var demandChargePerKWMonth: Double
  public var energyPricePerKWh: Double
  public var exportCreditPerKWh: Double
  public var demandResponsePaymentPerKW: Double
  public var departureShortfallPenaltyPerKWh: Double
  public var unservedCriticalPenaltyPerKWh: Double

  public init(
    demandChargePerKWMonth: Double = 20, energyPricePerKWh: Double = 0.18,
    exportCreditPerKWh: Double = 0, demandResponsePaymentPerKW: Double = 225,
    departureShortfallPenaltyPerKWh: Double = 1000, unservedCriticalPenaltyPerKWh: Double = 20
  ) {
    self.demandChargePerKWMonth = demandChargePerKWMonth
    self.energyPricePerKWh = energyPricePerKWh
    self.exportCreditPerKWh = exportCreditPerKWh
    self.demandResponsePaymentPerKW = demandResponsePaymentPerKW
    self.departureShortfallPenaltyPerKWh = departureShortfallPenaltyPerKWh
    self.unservedCriticalPenaltyPerKWh = unservedCriticalPenaltyPerKWh
  }

  enum CodingKeys: String, CodingKey {
    case demandChargePerKWMonth = "demand_charge_per_kw_month"
    case energyPricePerKWh = "energy_price_per_kwh"
    case exportCreditPerKWh = "export_credit_per_kwh"
    case demandResponsePaymentPerKW = "dr_payment_per_kw"
    case departureShortfallPenaltyPerKWh = "departure_shortfall_penalty_per_kwh"
    case unservedCriticalPenaltyPerKWh = "unserved_critical_penalty_per_kwh"
  }
}

/// A group of building loads behind one load-shed relay (a panel, a kitchen, an air
/// handler). In an outage every group is shed at the transfer, then restored in priority
/// order as the vehicles' energy allows.
public struct SheddableLoad: Sendable, Hashable, Codable {
  public var id: String
  /// 1 is restored first.
  public var priority: Int
  /// What the group draws when on, kW (the electrician's estimate is enough).
  public var kW: Double

  public init(id: String, priority: Int, kW: Double) {
    self.id = id
    self.priority = priority
    self.kW = kW
  }
}

/// The building, its service and what is installed there.
public struct SiteDescription: Sendable, Hashable {
  public var name: String
  /// Service capacity: grid import never exceeds it.
  public var importLimitKW: Double
  /// The most the site may export outside demand-response events (0: non-export).
  public var exportLimitKW: Double
  /// The most the site may export during a demand-response event.
  public var eventExportLimitKW: Double
  /// In an outage the building sheds all but this share of its load.
  public var criticalLoadFraction: Double
  /// The utility's demand interval (15 minutes in the U.S. programs).
  public var demandIntervalSeconds: Double
  public var tariff: Tariff
  public var chargers: [ChargerSpec]
  public var vehicles: [VehicleSpec]
  /// Load groups behind shed relays, in restore order (priority, then as listed). The
  /// critical load (`criticalLoadFraction`) is never shed.
  public var sheddableLoads: [SheddableLoad]

  public init(
    name: String, importLimitKW: Double, exportLimitKW: Double = 0,
    eventExportLimitKW: Double = 0, criticalLoadFraction: Double = 0.35,
    demandIntervalSeconds: Double = 900, tariff: Tariff = Tariff(),
    chargers: [ChargerSpec], vehicles: [VehicleSpec], sheddableLoads: [SheddableLoad] = []
  ) {
    self.name = name
    self.importLimitKW = importLimitKW
    self.exportLimitKW = exportLimitKW
    self.eventExportLimitKW = eventExportLimitKW
    self.criticalLoadFraction = criticalLoadFraction
    self.demandIntervalSeconds = demandIntervalSeconds
    self.tariff = tariff
    self.chargers = chargers
    self.vehicles = vehicles
    self.sheddableLoads = sheddableLoads.enumerated().sorted {
      ($0.element.priority, $0.offset) < ($1.element.priority, $1.offset)
    }
    .map(\.element)
  }

  /// The same site with other shed groups.
  public init(copying site: SiteDescription, sheddableLoads: [SheddableLoad]) {
    self.init(
      name: site.name, importLimitKW: site.importLimitKW, exportLimitKW: site.exportLimitKW,
      eventExportLimitKW: site.eventExportLimitKW, criticalLoadFraction: site.criticalLoadFraction,
      demandIntervalSeconds: site.demandIntervalSeconds, tariff: site.tariff, chargers: site.chargers,
      vehicles: site.vehicles, sheddableLoads: sheddableLoads)
  }

  /// The load the first `groups` shed groups add back on the island, kW.
  public func restoredLoadKW(groups: Int) -> Double {
    sheddableLoads.prefix(max(0, groups)).reduce(0) { $0 + $1.kW }
  }

  /// The site as it can act now: each charger's ratings lowered to what it reports it can
  /// do this step (never raised above what is installed). Returns self when no charger
  /// reports lower limits, so the usual step copies nothing.
  public func limited(by readings: [ChargerReading]) -> SiteDescription {
    guard readings.contains(where: { $0.maxChargeKW != nil || $0.maxDischargeKW != nil }) else { return self }
    var site = self
    for (i, r) in readings.enumerated() where site.chargers.indices.contains(i) {
      if let kW = r.maxChargeKW { site.chargers[i].maxChargeKW = max(0, min(site.chargers[i].maxChargeKW, kW)) }
      if let kW = r.maxDischargeKW {
        site.chargers[i].maxDischargeKW = max(0, min(site.chargers[i].maxDischargeKW, kW))
      }
    }
    return site
  }

  public func chargerIndex(id: String) -> Int? { chargers.firstIndex { $0.id == id } }
  public func vehicleIndex(id: String) -> Int? { vehicles.firstIndex { $0.id == id } }
}
