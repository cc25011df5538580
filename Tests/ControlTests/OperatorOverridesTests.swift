import Control
import SiteModel
import Testing

@Suite("Staff's instructions from panels: checked, applied, laid over snapshots")
struct OperatorOverridesTests {
  let site = Fixtures.site()

  func snapshot(time: Double = 3600, vehicles: [PluggedVehicle?]? = nil, fresh: Bool = true) -> Snapshot {
    var s = Fixtures.snapshot(
      time: time,
      chargers: (vehicles ?? [Fixtures.vehicle(energy: 100, departure: 20_000, need: 60), nil]).map {
        ChargerReading(vehicle: $0)
      })
    s.inputsFresh = fresh
    return s
  }

  func refused(_ o: OperatorOverrides.Outcome) -> String? {
    if case .refused(let why) = o { return why }
    return nil
  }

  @Test func demandTargetIsBoundedByTheService() {
    var o = OperatorOverrides()
    let s = snapshot()
    #expect(refused(o.apply(.setDemandTarget(kW: 0), by: "u", site: site, snapshot: s, mode: .gridConnected)) != nil)
    #expect(refused(o.apply(.setDemandTarget(kW: -5), by: "u", site: site, snapshot: s, mode: .gridConnected)) != nil)
    #expect(
      refused(o.apply(.setDemandTarget(kW: .nan), by: "u", site: site, snapshot: s, mode: .gridConnected)) != nil)
    let over = refused(o.apply(.setDemandTarget(kW: 501), by: "u", site: site, snapshot: s, mode: .gridConnected))
    #expect(over?.contains("500") == true, "the refusal should name the service limit: \(over ?? "applied")")
    #expect(o.demandTargetKW == nil)
    #expect(refused(o.apply(.setDemandTarget(kW: 300), by: "u", site: site, snapshot: s, mode: .gridConnected)) == nil)
    var laid = s
    o.overlay(&laid)
    #expect(laid.operatorDemandTargetKW == 300)
    _ = o.apply(.setDemandTarget(kW: nil), by: "u", site: site, snapshot: s, mode: .gridConnected)
    laid = s
    o.overlay(&laid)
    #expect(laid.operatorDemandTargetKW == nil)
  }

  @Test func holdsAreForConfiguredVehiclesAndShowOnTheSnapshot() {
    var o = OperatorOverrides()
    let s = snapshot()
    let unknown = refused(o.apply(.holdVehicle("TRUCK"), by: "u", site: site, snapshot: s, mode: .gridConnected))
    #expect(unknown?.contains("BUS, CAR") == true, "the refusal should list the known vehicles: \(unknown ?? "-")")
    #expect(refused(o.apply(.releaseVehicle("BUS"), by: "u", site: site, snapshot: s, mode: nil)) == "BUS is not held")
    // A hold may be given before the vehicle arrives.
    #expect(refused(o.apply(.holdVehicle("CAR"), by: "u", site: site, snapshot: nil, mode: nil)) == nil)
    #expect(refused(o.apply(.holdVehicle("BUS"), by: "u", site: site, snapshot: s, mode: nil)) == nil)
    var laid = s
    o.overlay(&laid)
    #expect(laid.chargers[0].vehicle?.dischargeHeld == true)
    _ = o.apply(.releaseVehicle("BUS"), by: "u", site: site, snapshot: s, mode: nil)
    laid = s
    o.overlay(&laid)
    #expect(laid.chargers[0].vehicle?.dischargeHeld == false)
  }

  @Test func departuresAreCheckedAndForgottenWhenTheVehicleLeaves() throws {
    var o = OperatorOverrides()
    let s = snapshot(time: 3600)  // 01:00 on 2023-07-12
    let later = try #require(CivilDate.parseLocalDateTime("2023-07-12T17:30"))
    let past = try #require(CivilDate.parseLocalDateTime("2023-07-12T00:30"))
    let farAway = try #require(CivilDate.parseLocalDateTime("2023-07-20T08:00"))
    #expect(
      refused(
        o.apply(
          .setDeparture(vehicle: "CAR", departure: later, needKWh: nil), by: "u", site: site, snapshot: s, mode: nil))?
        .contains("not plugged in") == true)
    #expect(
      refused(
        o.apply(
          .setDeparture(vehicle: "BUS", departure: past, needKWh: nil), by: "u", site: site, snapshot: s, mode: nil))?
        .contains("past") == true)
    #expect(
      refused(
        o.apply(
          .setDeparture(vehicle: "BUS", departure: farAway, needKWh: nil), by: "u", site: site, snapshot: s, mode: nil))?
        .contains("7 days") == true)
    #expect(
      refused(
        o.apply(
          .setDeparture(vehicle: "BUS", departure: nil, needKWh: 200), by: "u", site: site, snapshot: s, mode: nil))?
        .contains("155") == true)
    #expect(
      refused(
        o.apply(
          .setDeparture(vehicle: "BUS", departure: later, needKWh: 90), by: "ops", site: site, snapshot: s, mode: nil))
        == nil)
    var laid = s
    o.overlay(&laid)
    let v = try #require(laid.chargers[0].vehicle)
    #expect(v.departureTime == 3600 + 16.5 * 3600, "17:30 is 16.5 h after 01:00")
    #expect(v.departureNeedKWh == 90)
    #expect(o.departures["BUS"]?.setBy == "ops")
    // The bus leaves: the override ends with its stay.
    let gone = snapshot(time: 7200, vehicles: [nil, nil])
    let notes = o.observe(gone, Decisions.idle(chargers: 2))
    #expect(o.departures.isEmpty && notes.count == 1)
  }

  @Test func islandTestsStartOnlyFromAQuietConnectedSite() {
    var o = OperatorOverrides()
    let s = snapshot()
    #expect(refused(o.apply(.endIslandTest, by: "u", site: site, snapshot: s, mode: .gridConnected)) != nil)
    #expect(
      refused(o.apply(.startIslandTest, by: "u", site: site, snapshot: s, mode: .islanded))?.contains("islanded")
        == true)
    #expect(
      refused(o.apply(.startIslandTest, by: "u", site: site, snapshot: snapshot(fresh: false), mode: .gridConnected))
        != nil)
    let early = refused(
      o.apply(.startIslandTest, by: "u", site: site, snapshot: s, mode: .gridConnected, utilityStable: false))
    #expect(early?.contains("300 s enter-service delay") == true, "refused right after start-up: \(early ?? "applied")")
    var during = s
    during.events = [DemandResponseEvent(id: "E", notifyTime: 0, startTime: 3000, endTime: 4000)]
    #expect(
      refused(o.apply(.startIslandTest, by: "u", site: site, snapshot: during, mode: .gridConnected))?.contains("event")
        == true)
    // The only vehicle on a grid-forming charger is held: nothing can form the island.
    _ = o.apply(.holdVehicle("BUS"), by: "u", site: site, snapshot: s, mode: nil)
    #expect(
      refused(o.apply(.startIslandTest, by: "u", site: site, snapshot: s, mode: .gridConnected))?.contains(
        "grid-forming") == true)
    _ = o.apply(.releaseVehicle("BUS"), by: "u", site: site, snapshot: s, mode: nil)
    #expect(refused(o.apply(.startIslandTest, by: "u", site: site, snapshot: s, mode: .gridConnected)) == nil)
    #expect(o.islandTest == .requested)
    #expect(refused(o.apply(.startIslandTest, by: "u", site: site, snapshot: s, mode: .gridConnected)) != nil)
    var islanded = Decisions.idle(chargers: 2)
    islanded.mode = .islanded
    _ = o.observe(s, islanded)
    #expect(o.islandTest == .running)
    _ = o.observe(s, Decisions.idle(chargers: 2))  // back on the utility (the vehicles ran low)
    #expect(o.islandTest == .none)
  }
}

@Suite("The controller follows staff's instructions")
struct OperatorControlTests {
  let site = Fixtures.site()

  @Test("an island test opens the switch hands-off, islands, and recloses when it ends; nothing is exported")
  func islandTest() {
    var tiny = TinySite(
      site: site,
      vehicles: [Fixtures.vehicle(energy: 150, departure: 3 * 86_400, need: 60), nil],
      building: { _ in 120 })
    var controller = Controller(site: site)
    var requested = false
    var modes: [OperatingMode] = []
    for second in 0..<900 {
      if second == 400 { requested = true }
      if second == 700 { requested = false }
      var s = tiny.snapshot(period: 1)
      s.islandTestRequested = requested
      let d = controller.step(s)
      if d.transferSwitch == .toIsland && s.transferSwitch == .utility {
        #expect(d.setpointsKW.allSatisfy { $0 == 0 }, "the opening step must be hands-off, got \(d.setpointsKW)")
      }
      if s.transferSwitch == .utility {
        let grid = s.buildingDemandKW + d.setpointsKW.reduce(0, +)
        #expect(grid >= -1e-9, "exported \(-grid) kW at t=\(second)")
      }
      modes.append(d.mode)
      tiny.apply(d, period: 1)
    }
    #expect(modes[399] == .gridConnected)
    #expect(modes[410] == .islanded, "the test should island within a few seconds")
    #expect(tiny.position == .utility, "the switch should be back on the utility after the test")
    #expect(modes[899] == .gridConnected)
    let islandedSeconds = modes.filter { $0 == .islanded }.count
    #expect((295...301).contains(islandedSeconds), "islanded for the test's 300 s, got \(islandedSeconds)")
  }

  @Test("no island test before the utility has been stable for the enter-service delay")
  func islandTestWaitsForAStableUtility() {
    var controller = Controller(site: site)
    var s = Fixtures.snapshot(
      time: 0,
      chargers: [ChargerReading(vehicle: Fixtures.vehicle(energy: 150, departure: 86_400, need: 60)), ChargerReading()])
    s.islandTestRequested = true
    let d = controller.step(s)
    #expect(d.transferSwitch != .toIsland && d.mode == .gridConnected)
  }

  @Test("an operator's demand target is the one the controller holds")
  func operatorTarget() {
    var controller = Controller(site: site)
    var s = Fixtures.snapshot(
      time: 400, building: 300,
      chargers: [ChargerReading(vehicle: Fixtures.vehicle(energy: 150, departure: 86_400, need: 40)), ChargerReading()])
    s.operatorDemandTargetKW = 260
    _ = controller.step(Fixtures.snapshot(time: 0, building: 300, chargers: s.chargers))
    let d = controller.step(s)
    #expect(d.demandTargetKW == 260)
  }

  @Test("a held vehicle is not discharged to shave, though others are")
  func heldVehicleDoesNotShave() {
    var controller = Controller(site: site)
    let bus = Fixtures.vehicle(energy: 150, departure: 86_400, need: 40)
    var held = bus
    held.dischargeHeld = true
    var s = Fixtures.snapshot(time: 400, building: 300, chargers: [ChargerReading(vehicle: bus), ChargerReading()])
    s.operatorDemandTargetKW = 250
    _ = controller.step(Fixtures.snapshot(time: 0, building: 300, chargers: s.chargers))
    var c2 = controller
    let free = controller.step(s)
    #expect(free.setpointsKW[0] < -1, "the free bus should shave, got \(free.setpointsKW[0])")
    s.chargers[0].vehicle = held
    let d = c2.step(s)
    #expect(d.setpointsKW[0] >= 0, "the held bus must not discharge, got \(d.setpointsKW[0])")
  }
}
