import Control
import SiteModel
import Testing

@Suite("Outage ride-through: island, shed, never export into a dead grid, reconnect late")
struct OutageTests {
  let site = Fixtures.site()

  /// Runs the controller against TinySite and returns the decisions per step.
  func drive(
    _ tiny: inout TinySite, seconds: Int, period: Double = 1, controller: inout Controller
  ) -> [(time: Double, snapshot: Snapshot, decisions: Decisions)] {
    var log: [(Double, Snapshot, Decisions)] = []
    for _ in 0..<(seconds / Int(period)) {
      let s = tiny.snapshot(period: period)
      let d = controller.step(s)
      log.append((tiny.time, s, d))
      tiny.apply(d, period: period)
    }
    return log
  }

  func wellChargedSite(outage: @escaping (Double) -> Bool) -> TinySite {
    TinySite(
      site: site,
      vehicles: [
        Fixtures.vehicle(energy: 150, departure: 3 * 86_400, need: 60),
        Fixtures.vehicle("CAR", battery: 62, reserve: 8, energy: 60, departure: 3 * 86_400, need: 20),
      ],
      building: { _ in 120 }, utility: { !outage($0) })
  }

  @Test("losing the utility islands the building on a grid-forming charger and sheds")
  func islands() {
    var tiny = wellChargedSite { $0 >= 600 && $0 < 4200 }
    var c = Controller(site: site)
    let log = drive(&tiny, seconds: 1800, controller: &c)
    let firstIndex = log.firstIndex { !$0.snapshot.utilityAvailable }!
    let first = log[firstIndex]
    // The step that sees the loss: export stops and the transfer is commanded; nothing
    // runs until the switch confirms it is open.
    #expect(first.decisions.transferSwitch == .toIsland)
    #expect(first.decisions.shedNonCriticalLoads)
    #expect(first.decisions.gridFormingCharger == nil)
    #expect(first.decisions.setpointsKW.allSatisfy { $0 == 0 })
    #expect(first.decisions.mode == .islanded)
    #expect(first.decisions.phase == .transferring)
    let next = log[firstIndex + 1]
    #expect(next.snapshot.transferSwitch == .island)
    #expect(next.decisions.gridFormingCharger == 0)
    #expect(next.decisions.phase == .islanded)
    // While islanded nobody charges, and discharge carries the critical load (42 kW).
    for step in log where !step.snapshot.utilityAvailable {
      #expect(step.decisions.setpointsKW.allSatisfy { $0 <= 0 })
    }
    #expect(tiny.deadGridExports == 0)
    #expect(tiny.position == .island)
  }

  @Test("reconnects only after the utility has been back for the enter-service delay")
  func reconnectsAfterDelay() {
    var tiny = wellChargedSite { $0 >= 600 && $0 < 2400 }
    var c = Controller(site: site)
    let log = drive(&tiny, seconds: 3600, controller: &c)
    let close = log.first { $0.decisions.transferSwitch == .toUtility }
    #expect(close != nil, "the building never went back to the utility")
    #expect(close!.time >= 2400 + 300, "closed at \(close!.time) s, utility back at 2400 s")
    #expect(close!.time <= 2400 + 302)
    #expect(tiny.position == .utility)
    #expect(log.last!.decisions.mode == .gridConnected)
    #expect(!log.last!.decisions.shedNonCriticalLoads)
  }

  @Test("the step that closes back onto the utility discharges nothing, so nothing is exported")
  func closingStepIsHandsOff() {
    // Critical load (42 kW) is less than the vehicles can give, so the island's
    // grid-forming setpoint is a ceiling well above the load: carried onto the grid as a
    // flow, it would export.
    var tiny = wellChargedSite { $0 >= 600 && $0 < 2400 }
    var c = Controller(site: site)
    let log = drive(&tiny, seconds: 3600, controller: &c)
    let close = log.first { $0.decisions.transferSwitch == .toUtility }!
    #expect(close.decisions.setpointsKW.allSatisfy { $0 == 0 }, "\(close.decisions.setpointsKW)")
    for step in log where step.snapshot.transferSwitch == .utility && step.snapshot.utilityAvailable {
      let grid = step.snapshot.buildingDemandKW + step.decisions.setpointsKW.reduce(0, +)
      #expect(grid >= -site.exportLimitKW - 1e-6, "exported \(-grid) kW at \(step.time) s")
    }
  }

  @Test("a utility that returns and fails again restarts the wait")
  func flickerRestartsWait() {
    // Back at 1200 s, gone again 1350-1400 s, back for good at 1400 s.
    var tiny = wellChargedSite { t in (t >= 600 && t < 1200) || (t >= 1350 && t < 1400) }
    var c = Controller(site: site)
    let log = drive(&tiny, seconds: 2400, controller: &c)
    let close = log.first { $0.decisions.transferSwitch == .toUtility }!
    #expect(close.time >= 1400 + 300, "closed at \(close.time) s; the utility last returned at 1400 s")
  }

  @Test("with no vehicle on a grid-forming charger the building goes dark, and nothing is exported")
  func blackoutWithoutGridForming() {
    let onlyFollower = Fixtures.site()
    var tiny = TinySite(
      site: onlyFollower,
      vehicles: [nil, Fixtures.vehicle("CAR", battery: 62, reserve: 8, energy: 60, departure: 86_400, need: 20)],
      building: { _ in 120 }, utility: { !($0 >= 300 && $0 < 900) })
    var c = Controller(site: onlyFollower)
    let log = drive(&tiny, seconds: 1200, controller: &c)
    for step in log where !step.snapshot.utilityAvailable {
      #expect(step.decisions.mode == .blackout)
      #expect(step.decisions.setpointsKW.allSatisfy { $0 == 0 })
    }
    #expect(tiny.deadGridExports == 0)
  }

  @Test("on the island a vehicle leaving soon keeps its departure need")
  func islandKeepsDepartureNeed() {
    var tiny = TinySite(
      site: site,
      vehicles: [Fixtures.vehicle(energy: 80, departure: 3 * 3600, need: 75), nil],
      building: { _ in 300 }, utility: { $0 < 60 })
    var c = Controller(site: site)
    _ = drive(&tiny, seconds: 2 * 3600, controller: &c)
    #expect(tiny.vehicles[0]!.energyKWh >= 75 - 1e-6, "left with \(tiny.vehicles[0]!.energyKWh) kWh of a 75 kWh need")
  }
}
