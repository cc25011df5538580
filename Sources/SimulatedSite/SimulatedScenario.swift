import Appliance
import SiteModel
import Simulation

// The simulated plant (`plant: simulated`) lives with the simulator, not in the appliance:
// the appliance runs the building it is wired to, and demos and tests put a simulated
// building behind the same `SiteIO`.

extension SiteConfiguration {
  /// The scenario a simulated plant follows, checked against this site: every charger and
  /// vehicle it names must be configured here (by id), and its sessions must fit the
  /// configured batteries. Ratings, reserves and limits come from this configuration.
  public func simulatedScenario() throws(InputError) -> Scenario {
    guard let plant, let directory = plant.scenario else {
      throw InputError(
        source: source, field: "plant.scenario",
        message: "missing: no simulated plant is configured (the field site reads no scenario)")
    }
    var scenario = try Scenario.load(directory: directory)
    for c in scenario.site.chargers where site.chargerIndex(id: c.id) == nil {
      throw InputError(
        source: source, field: "chargers",
        message: "the scenario \(directory) has charger \(c.id), which is not configured here")
    }
    for v in scenario.site.vehicles where site.vehicleIndex(id: v.id) == nil {
      throw InputError(
        source: source, field: "vehicles",
        message: "the scenario \(directory) has vehicle \(v.id), which is not configured here")
    }
    if let start = plant.startMinute, start >= scenario.durationMinutes {
      throw InputError(
        source: source, field: "plant.start_minute",
        message: "\(start) is past the scenario's end (\(scenario.durationMinutes) minutes)")
    }
    // The configuration is the one source of truth for the site; the scenario supplies
    // only what happens there. Re-index its sessions onto the configured chargers.
    var remapped: [Session] = []
    remapped.reserveCapacity(scenario.sessions.count)
    for var session in scenario.sessions {
      session.charger = site.chargerIndex(id: scenario.site.chargers[session.charger].id)!
      session.vehicle = site.vehicleIndex(id: scenario.site.vehicles[session.vehicle].id)!
      let vehicle = site.vehicles[session.vehicle]
      if max(session.arriveKWh, session.departMinKWh) > vehicle.batteryKWh {
        throw InputError(
          source: source, field: "vehicles",
          message:
            "\(vehicle.id)'s \(vehicle.batteryKWh) kWh battery is smaller than its session on line \(session.line) of the scenario's sessions.csv needs"
        )
      }
      remapped.append(session)
    }
    scenario.sessions = remapped
    scenario.site = site
    return scenario
  }
}
