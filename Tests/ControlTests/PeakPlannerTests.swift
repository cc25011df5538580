import Control
import Testing

@Suite("Rolling plan: the lowest peak the plugged vehicles can hold over the forecast")
struct PeakPlannerTests {
  /// Hour-long intervals keep the arithmetic readable: kW and kWh per interval coincide.
  let planner = PeakPlanner(intervalHours: 1)

  func vehicle(
    energy: Double, need: Double, floor: Double = 10, capacity: Double = 150, departs: Int,
    charge: Double = 60, discharge: Double = 60, efficiency: Double = 1
  ) -> PeakPlanner.Vehicle {
    PeakPlanner.Vehicle(
      energyKWh: energy, needKWh: need, floorKWh: floor, capacityKWh: capacity, departureInterval: departs,
      maxChargeKW: charge, maxDischargeKW: discharge, efficiency: efficiency)
  }

  @Test("with no vehicles the plan's peak is the forecast's own peak")
  func noVehicles() {
    let plan = planner.plan(loadKW: [100, 300, 200], vehicles: [], ceilingKW: 1000)
    #expect(plan.feasible)
    #expect(abs(plan.peakKW - 300) <= planner.resolutionKW)
  }

  @Test("a vehicle with energy to spare shaves the forecast peak as far as its charger allows")
  func shavesWithinRating() {
    // 300 kW for an hour; 60 kW of discharge brings it to 240 kW, energy is no limit.
    let v = vehicle(energy: 100, need: 20, departs: 10)
    let plan = planner.plan(loadKW: [100, 100, 300, 100], vehicles: [v], ceilingKW: 1000)
    #expect(abs(plan.peakKW - 240) <= planner.resolutionKW)
    // It must keep what that shaving takes above its need.
    #expect(abs(plan.shavingKWh[0] - 60) <= 1)
  }

  @Test("shaving is limited by the energy above what the departure needs")
  func shavingLimitedByEnergy() {
    // Two peak hours of 300 kW and no valley before them; the vehicle can give 50 kWh
    // (energy 70, floor 20, and it leaves right after the peak holding its need of 20).
    let v = vehicle(energy: 70, need: 20, floor: 20, departs: 2)
    let plan = planner.plan(loadKW: [300, 300], vehicles: [v], ceilingKW: 1000)
    #expect(abs(plan.peakKW - 275) <= planner.resolutionKW)
    // With a valley hour first it charges there (ASAP, 60 kW) and has 110 kWh to give.
    let later = vehicle(energy: 70, need: 20, floor: 20, departs: 3)
    let withValley = planner.plan(loadKW: [100, 300, 300], vehicles: [later], ceilingKW: 1000)
    #expect(abs(withValley.peakKW - 245) <= planner.resolutionKW)
  }

  @Test("a departure need is charged in the valleys before it, raising the peak only as far as it must")
  func needFillsValleys() {
    // 100 kWh needed by the end of interval 1 (2 hours), at most 60 kW: 50 kW each hour.
    let v = vehicle(energy: 0, need: 100, floor: 0, departs: 2)
    let plan = planner.plan(loadKW: [100, 100, 400, 100], vehicles: [v], ceilingKW: 1000)
    #expect(abs(plan.peakKW - 400) <= planner.resolutionKW, "the 400 kW hour sets the peak")
    let flat = planner.plan(loadKW: [100, 100, 100, 100], vehicles: [v], ceilingKW: 1000)
    #expect(abs(flat.peakKW - 150) <= planner.resolutionKW)
  }

  @Test("charging efficiency is counted: more from the grid than lands in the battery")
  func efficiencyCounted() {
    let v = vehicle(energy: 0, need: 90, floor: 0, departs: 2, efficiency: 0.9)
    let plan = planner.plan(loadKW: [100, 100], vehicles: [v], ceilingKW: 1000)
    #expect(abs(plan.peakKW - 150) <= planner.resolutionKW)
  }

  @Test("a vehicle expected later takes no part before it arrives")
  func expectedVehicleWaits() {
    var v = vehicle(energy: 100, need: 20, departs: 6)
    v.arrivalInterval = 2
    let early = planner.plan(loadKW: [300, 300, 300, 100], vehicles: [v], ceilingKW: 1000)
    #expect(abs(early.peakKW - 300) <= planner.resolutionKW, "it cannot shave before it is here")
    let late = planner.plan(loadKW: [100, 100, 300, 100], vehicles: [v], ceilingKW: 1000)
    #expect(abs(late.peakKW - 240) <= planner.resolutionKW)
  }

  @Test("a need no charging can meet is planned as the most it can reach, not left without a plan")
  func unreachableNeed() {
    let v = vehicle(energy: 0, need: 140, floor: 0, departs: 2)  // 2 h at 60 kW is 120 kWh
    let plan = planner.plan(loadKW: [100, 100], vehicles: [v], ceilingKW: 1000)
    #expect(plan.feasible)
    #expect(abs(plan.peakKW - 160) <= planner.resolutionKW, "full power both hours")
  }

  @Test("a building above the service limit has no feasible plan, and says so")
  func infeasible() {
    let plan = planner.plan(loadKW: [100, 1200], vehicles: [], ceilingKW: 1000)
    #expect(!plan.feasible)
    #expect(plan.peakKW == 1000)
  }

  @Test("random plans: the peak found can be held, and a peak one step lower cannot")
  func randomPlansAreTight() {
    var rng = SeededGenerator(seed: 7)
    for _ in 0..<300 {
      let load = (0..<Int.random(in: 4...48, using: &rng)).map { _ in Double.random(in: 50...400, using: &rng) }
      let vehicles = (0..<Int.random(in: 0...5, using: &rng)).map { _ in
        let floor = Double.random(in: 0...20, using: &rng)
        return vehicle(
          energy: Double.random(in: floor...140, using: &rng), need: Double.random(in: 0...140, using: &rng),
          floor: floor, departs: Int.random(in: 1...60, using: &rng),
          charge: Double.random(in: 7...60, using: &rng), discharge: Double.random(in: 0...60, using: &rng),
          efficiency: Double.random(in: 0.85...1, using: &rng))
      }
      let plan = planner.plan(loadKW: load, vehicles: vehicles, ceilingKW: 2000)
      guard plan.feasible else { continue }
      #expect(planner.holds(peakKW: plan.peakKW, loadKW: load, vehicles: vehicles))
      #expect(!planner.holds(peakKW: plan.peakKW - 2 * planner.resolutionKW, loadKW: load, vehicles: vehicles))
      #expect(plan.peakKW <= (load.max() ?? 0) + 60 * Double(vehicles.count) + planner.resolutionKW)
    }
  }
}
