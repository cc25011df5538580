import SiteModel

extension SiteDescription {
  /// The smallest site with V2X: one grid-forming 60 kW charger and one 150 kWh bus.
  static let oneBus = SiteDescription(
    name: "t", importLimitKW: 500, exportLimitKW: 0, eventExportLimitKW: 100, criticalLoadFraction: 0.3,
    chargers: [ChargerSpec(id: "C1", maxChargeKW: 60, maxDischargeKW: 60, efficiency: 0.95, gridForming: true)],
    vehicles: [VehicleSpec(id: "BUS-1", batteryKWh: 150, reserveKWh: 20)])
}
