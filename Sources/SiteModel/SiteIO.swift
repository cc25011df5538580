/// The control loop's view of its site: read a snapshot, carry out decisions. The loop does
/// not know what is behind it: the field site (meters, GPIO, chargers on OCPP or MQTT) or
/// the simulated plant that the demos and tests run.
public protocol SiteIO: Sendable {
  /// What the site looks like now. `periodSeconds` is how long the coming decisions hold.
  func snapshot(periodSeconds: Double) async throws -> Snapshot
  /// Carries out the decisions for `periodSeconds`.
  func apply(_ decisions: Decisions, periodSeconds: Double) async throws -> AppliedStep
}

/// What happened when decisions were carried out, for logs and records.
public struct AppliedStep: Sendable {
  /// Grid import, kW (+ importing): the demand meter's figure at a real site.
  public var gridKW: Double
  /// The building load that was served, kW.
  public var servedKW: Double
  /// Each charger's power at the building side, kW (+ charging).
  public var chargerKW: [Double]

  public init(gridKW: Double, servedKW: Double, chargerKW: [Double]) {
    self.gridKW = gridKW
    self.servedKW = servedKW
    self.chargerKW = chargerKW
  }
}
