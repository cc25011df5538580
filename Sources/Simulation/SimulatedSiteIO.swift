import SiteModel

/// A building, its chargers, vehicles, utility and transfer switch, simulated by the same
/// plant model as `microgrid-edge simulate`, following a scenario from a start minute.
///
/// With `meteredBuilding`, the building is the one the meters measure (a test's meter
/// gateway): given the chargers' readings, it returns the building's load, or nil before
/// any meter has read. The plant then simulates the rest around it, so that its physics
/// agree with what the controller sees.
public actor SimulatedSiteIO: SiteIO {
  public typealias MeteredBuilding = @Sendable (_ chargers: [ChargerReading]) -> Double?
  private var plant: SitePlant
  private let meteredBuilding: MeteredBuilding?
  private let external: ExternalChargers?

  /// Chargers driven from outside the simulation (OCPP, MQTT adapters): the plant gives
  /// them no sessions of its own and counts what they measure at its grid meter.
  public struct ExternalChargers: Sendable {
    public var indices: Set<Int>
    public var measuredKW: @Sendable () -> Double
    public init(indices: Set<Int>, measuredKW: @escaping @Sendable () -> Double) {
      self.indices = indices
      self.measuredKW = measuredKW
    }
  }

  public init(
    scenario: Scenario, startMinute: Int, meteredBuilding: MeteredBuilding? = nil,
    externalChargers: ExternalChargers? = nil
  ) {
    var scenario = scenario
    if let external = externalChargers {
      scenario.sessions.removeAll { external.indices.contains($0.charger) }
    }
    plant = SitePlant(scenario: scenario, startMinute: startMinute)
    self.meteredBuilding = meteredBuilding
    self.external = externalChargers
  }

  public func snapshot(periodSeconds: Double) -> Snapshot {
    var s = plant.snapshot(periodSeconds: periodSeconds)
    if let kW = meteredBuilding?(s.chargers) {
      plant.buildingOverrideKW = kW
      s.buildingDemandKW = kW
    }
    return s
  }

  public func apply(_ decisions: Decisions, periodSeconds: Double) -> AppliedStep {
    // A step that follows the one before within a millisecond moves nothing on; the
    // chargers simply take the new setpoints.
    guard periodSeconds >= 0.001 else { return last ?? AppliedStep(gridKW: 0, servedKW: 0, chargerKW: []) }
    if let external { plant.externalChargerKW = external.measuredKW() }
    let flows = plant.advance(decisions, seconds: periodSeconds)
    let applied = AppliedStep(gridKW: flows.gridKW, servedKW: flows.servedKW, chargerKW: flows.chargerKW)
    last = applied
    return applied
  }
  private var last: AppliedStep?

  /// Safety breaches the simulated plant saw (should stay empty).
  public var violations: [String] { plant.violations }
  public var finished: Bool { plant.finished }
}
