import SiteModel
import Simulation

/// The appliance's view of its site: read a snapshot, carry out decisions. The control loop
/// does not know whether a simulator, GPIO pins, a broker or OCPP chargers are behind it;
/// later drivers (MQTT meters, GPIO transfer switch, OCPP chargers) implement this too.
public protocol SiteIO: Sendable {
  /// What the site looks like now. `periodSeconds` is how long the coming decisions hold.
  func snapshot(periodSeconds: Double) async throws -> Snapshot
  /// Carries out the decisions for `periodSeconds`.
  func apply(_ decisions: Decisions, periodSeconds: Double) async throws -> AppliedStep
}

/// What happened when decisions were carried out, for logs and records.
public struct AppliedStep: Sendable {
  public var gridKW: Double
  public var servedKW: Double
  public var chargerKW: [Double]
}

/// A building, its chargers, vehicles, utility and transfer switch, simulated by the same
/// plant model as `microgrid-edge simulate`, following a scenario from a start minute.
///
/// With `meteredBuilding`, the building is the one the meters measure (a real building, or
/// a test's meter gateway) and the plant simulates the rest around it, so that its
/// physics agree with what the controller sees.
public actor SimulatedSiteIO: SiteIO {
  private var plant: SitePlant
  private let meteredBuilding: MeterInputs?
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
    scenario: Scenario, startMinute: Int, meteredBuilding: MeterInputs? = nil, externalChargers: ExternalChargers? = nil
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
    if let kW = meteredBuilding?.building(chargers: s.chargers).kW {
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
