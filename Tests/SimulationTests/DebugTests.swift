import Control
import SiteModel
import Testing

@testable import Simulation

@Test func debugOutage() throws {
  let scenario = try Scenario.load(directory: "scenarios/school-buses-chicago")
  var plant = SitePlant(scenario: scenario, startMinute: 219780)
  var c = Controller(site: scenario.site)
  while plant.minute < 219870 {
    let s = plant.snapshot(periodSeconds: 60)
    let d = c.step(s)
    if plant.minute >= 219835 {
      print(plant.minute, s.utilityAvailable, s.transferSwitch, d.mode, d.transferSwitch, d.setpointsKW, d.gridFormingCharger as Any, d.safetyInterventions, s.chargers.map { $0.vehicle?.energyKWh ?? -1 })
    }
    _ = plant.advance(d, seconds: 60)
  }
}
