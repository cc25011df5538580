import Control
import SiteModel
import Testing

/// The safety rules, checked on thousands of random situations. Every check here is
/// independent of the filter's code: it restates the rule from the site description.
@Suite("Safety invariants under random inputs")
struct SafetyInvariantTests {
  static let delay = 300.0
  static let ramp = 300.0

  struct Checker {
    let site: SiteDescription
    var utilitySince: Double?
    var stopReleasedAt: Double?
    var stopped = false

    /// Updates the checker's own view of the utility, then checks `d` against `s`.
    mutating func check(_ s: Snapshot, _ d: Decisions, seed: UInt64) {
      if s.utilityAvailable { utilitySince = utilitySince ?? s.time } else { utilitySince = nil }
      if stopped && !s.emergencyStop { stopReleasedAt = s.time }
      stopped = s.emergencyStop
      let stable = utilitySince.map { s.time - $0 >= SafetyInvariantTests.delay } ?? false
      let context = "seed \(seed), t=\(s.time)"
      let eps = 1e-6
      #expect(d.setpointsKW.count == site.chargers.count, "\(context)")
      if s.emergencyStop {
        #expect(d.setpointsKW.allSatisfy { $0 == 0 }, "a charger runs under emergency stop, \(context)")
        #expect(d.transferSwitch == .hold && d.gridFormingCharger == nil, "switched under emergency stop, \(context)")
        return
      }
      if d.transferSwitch == .toUtility {
        #expect(s.utilityAvailable && stable && !s.utilityLossPending, "closed to an unstable utility, \(context)")
      }
      if d.gridFormingCharger != nil {
        #expect(s.transferSwitch == .island, "an island formed before the switch confirmed open, \(context)")
      }
      // Only a switch confirmed open is an island; a switch being moved either way means
      // every charger idle.
      let closing = d.transferSwitch == .toUtility && s.transferSwitch != .utility
      let opening = d.transferSwitch == .toIsland && s.transferSwitch != .island
      let onIsland = !closing && s.transferSwitch == .island
      let onGrid = !closing && !opening && s.transferSwitch == .utility && s.utilityAvailable
      // Entering service: no discharge for the delay, then a linear ramp of each rating.
      var rampShare = 0.0
      if let since = utilitySince {
        let start = max(since, stopReleasedAt ?? since) + SafetyInvariantTests.delay
        rampShare = s.time < start ? 0 : min(1, (s.time - start) / SafetyInvariantTests.ramp)
      }
      let h = s.periodSeconds / 3600
      var total = 0.0
      // What each charger can do this step: its rating, lowered to what it reports (an
      // OCPP 2.0.1 charger reports no discharge at all).
      let limited = site.limited(by: s.chargers)
      for (i, p) in d.setpointsKW.enumerated() {
        let spec = limited.chargers[i]
        let reading = s.chargers[i]
        #expect(p.isFinite, "\(context)")
        total += p
        guard reading.online, let v = reading.vehicle else {
          #expect(p == 0, "setpoint \(p) for an empty or offline charger \(spec.id), \(context)")
          continue
        }
        #expect(
          p <= spec.maxChargeKW + eps && -p <= spec.maxDischargeKW + eps, "\(spec.id) beyond rating: \(p), \(context)")
        #expect(
          v.energyKWh + max(0, p) * h * spec.efficiency <= v.batteryKWh + eps, "overfilled \(spec.id), \(context)")
        if !onGrid && !onIsland { #expect(p == 0, "\(spec.id) at \(p) kW with a dead or unknown grid, \(context)") }
        if onGrid {
          #expect(
            -p <= spec.maxDischargeKW * rampShare + eps, "\(spec.id) discharged \(-p) kW ahead of the ramp, \(context)")
        }
        if onIsland { #expect(p <= eps, "\(spec.id) charging on the island, \(context)") }
        if p < -eps {
          #expect(
            onIsland || (onGrid && stable && s.inputsFresh && !s.dischargePaused && !s.utilityLossPending),
            "discharge not allowed now, \(context)")
          #expect(!v.dischargeHeld, "\(v.vehicleID) is held by staff but discharged \(p) kW, \(context)")
          let after = v.energyKWh + p * h / spec.efficiency
          if !onIsland {
            #expect(after >= v.reserveFloorKWh - eps, "\(spec.id) below its reserve, \(context)")
            // Still reachable: full power from the end of this step to departure.
            let reachable =
              after + spec.maxChargeKW * spec.efficiency * max(0, v.departureTime - s.time - s.periodSeconds) / 3600
            #expect(
              reachable >= min(v.departureNeedKWh, v.batteryKWh) - eps,
              "\(spec.id) departure made impossible, \(context)")
          }
        }
      }
      if onGrid {
        let grid = max(0, s.buildingDemandKW) + total
        // Chargers never add to an import above the service limit (the building alone
        // may exceed it; then nothing charges).
        #expect(
          grid <= max(site.importLimitKW, max(0, s.buildingDemandKW)) + eps, "import \(grid) over the limit, \(context)"
        )
        if s.buildingDemandKW > site.importLimitKW { #expect(total <= eps, "charging over the limit, \(context)") }
        let event = s.events.contains { $0.isActive(at: s.time) }
        let limit = event ? site.eventExportLimitKW : site.exportLimitKW
        #expect(grid >= -limit - eps, "export \(-grid) over the \(limit) kW limit, \(context)")
      }
      if onIsland {
        #expect(d.shedNonCriticalLoads, "island without shedding, \(context)")
        // Followers never push more than the island draws: critical load and restored groups.
        let building = max(0, s.buildingDemandKW)
        let islandLoad = min(
          building,
          building * site.criticalLoadFraction
            + site.sheddableLoads.prefix(max(0, d.restoredLoadGroups)).reduce(0) { $0 + $1.kW })
        let followers = d.setpointsKW.indices.filter { $0 != d.gridFormingCharger }.reduce(0.0) {
          $0 - min(0, d.setpointsKW[$1])
        }
        #expect(
          followers <= islandLoad + 1e-6, "followers give \(followers) kW to a \(islandLoad) kW island, \(context)")
      }
    }
  }

  static func randomSite(_ rng: inout SeededGenerator) -> SiteDescription {
    let n = Int.random(in: 1...6, using: &rng)
    let chargers = (0..<n).map { i in
      ChargerSpec(
        id: "C\(i)", maxChargeKW: Double.random(in: 5...120, using: &rng),
        maxDischargeKW: Double.random(in: 0...120, using: &rng),
        efficiency: Double.random(in: 0.85...0.97, using: &rng),
        gridForming: Bool.random(using: &rng))
    }
    return SiteDescription(
      name: "random", importLimitKW: Double.random(in: 50...1000, using: &rng),
      exportLimitKW: Bool.random(using: &rng) ? 0 : Double.random(in: 0...100, using: &rng),
      eventExportLimitKW: Double.random(in: 0...300, using: &rng),
      criticalLoadFraction: Double.random(in: 0...1, using: &rng),
      chargers: chargers, vehicles: [],
      sheddableLoads: (0..<Int.random(in: 0...4, using: &rng)).map {
        SheddableLoad(
          id: "L\($0)", priority: Int.random(in: 1...3, using: &rng), kW: Double.random(in: 5...200, using: &rng))
      })
  }

  static func randomVehicle(_ rng: inout SeededGenerator, time: Double) -> PluggedVehicle {
    let battery = Double.random(in: 20...300, using: &rng)
    let energy = Double.random(in: 0...battery, using: &rng)
    return PluggedVehicle(
      vehicleID: "V", batteryKWh: battery, reserveKWh: Double.random(in: 0...battery / 3, using: &rng),
      energyKWh: energy,
      arrivalEnergyKWh: Double.random(in: 0...battery, using: &rng),
      departureTime: time + Double.random(in: -600...(30 * 3600), using: &rng),
      departureNeedKWh: Double.random(in: 0...battery, using: &rng))
  }

  @Test("the filter turns any proposal into a safe decision", arguments: 0..<20)
  func filterMakesAnyProposalSafe(batch: Int) {
    for trial in 0..<250 {
      let seed = UInt64(batch * 1000 + trial)
      var rng = SeededGenerator(seed: seed)
      let site = Self.randomSite(&rng)
      let filter = SafetyFilter(
        site: site, enterServiceDelaySeconds: Self.delay, outageAssumedRemainingSeconds: 86_400,
        enterServiceRampSeconds: Self.ramp)
      var memory = SafetyFilter.Memory()
      var checker = Checker(site: site)
      var time = 0.0
      var utility = true
      var position = TransferSwitchPosition.utility
      for _ in 0..<40 {
        time += [1.0, 60, 200][Int.random(in: 0..<3, using: &rng)]
        if Double.random(in: 0..<1, using: &rng) < 0.15 { utility.toggle() }
        if Double.random(in: 0..<1, using: &rng) < 0.1 {
          position = [.utility, .island, .unknown].randomElement(using: &rng)!
        }
        let chargers = site.chargers.map { _ in
          ChargerReading(
            online: Double.random(in: 0..<1, using: &rng) < 0.9,
            vehicle: Double.random(in: 0..<1, using: &rng) < 0.8 ? Self.randomVehicle(&rng, time: time) : nil)
        }
        var s = Fixtures.snapshot(
          time: time, building: Double.random(in: -20...1200, using: &rng), utility: utility, switch: position,
          chargers: chargers,
          events: Bool.random(using: &rng)
            ? [DemandResponseEvent(id: "E", notifyTime: 0, startTime: time - 60, endTime: time + 600)] : [],
          period: [1.0, 60][Int.random(in: 0..<2, using: &rng)])
        s.inputsFresh = Double.random(in: 0..<1, using: &rng) < 0.9
        s.dischargePaused = Double.random(in: 0..<1, using: &rng) < 0.1
        s.emergencyStop = Double.random(in: 0..<1, using: &rng) < 0.05
        s.utilityLossPending = Double.random(in: 0..<1, using: &rng) < 0.05
        for i in s.chargers.indices where Double.random(in: 0..<1, using: &rng) < 0.2 {
          s.chargers[i].vehicle?.dischargeHeld = true
        }
        let proposal = Decisions(
          setpointsKW: (0..<(site.chargers.count + Int.random(in: -1...1, using: &rng))).map { _ in
            [Double.random(in: -500...500, using: &rng), .nan, .infinity, 0][
              Int.random(in: 0..<4, using: &rng) == 0 ? Int.random(in: 1..<4, using: &rng) : 0]
          },
          transferSwitch: [.hold, .toIsland, .toUtility].randomElement(using: &rng)!,
          shedNonCriticalLoads: Bool.random(using: &rng),
          restoredLoadGroups: Int.random(in: 0...4, using: &rng),
          gridFormingCharger: Bool.random(using: &rng) ? Int.random(in: -1...site.chargers.count, using: &rng) : nil)
        let d = filter.filter(proposal, s, memory: &memory)
        checker.check(s, d, seed: seed)
      }
    }
  }

  @Test("the whole controller stays safe over random input sequences", arguments: 0..<10)
  func controllerIsSafe(batch: Int) {
    for trial in 0..<40 {
      let seed = UInt64(100_000 + batch * 1000 + trial)
      var rng = SeededGenerator(seed: seed)
      let site = Self.randomSite(&rng)
      var controller = Controller(site: site)
      var checker = Checker(site: site)
      var time = 0.0
      var utility = true
      var position = TransferSwitchPosition.utility
      var vehicles: [PluggedVehicle?] = site.chargers.map { _ in Self.randomVehicle(&rng, time: 0) }
      var islandTest = false
      var held = site.chargers.map { _ in false }
      var target: Double?
      var emergencyStop = false
      for _ in 0..<300 {
        time += 60
        if Double.random(in: 0..<1, using: &rng) < 0.05 { utility.toggle() }
        for i in vehicles.indices where Double.random(in: 0..<1, using: &rng) < 0.02 {
          vehicles[i] = Bool.random(using: &rng) ? Self.randomVehicle(&rng, time: time) : nil
        }
        var s = Fixtures.snapshot(
          time: time, building: Double.random(in: 0...1000, using: &rng), utility: utility, switch: position,
          chargers: vehicles.map { ChargerReading(vehicle: $0) },
          events: [DemandResponseEvent(id: "E", notifyTime: 0, startTime: 6000, endTime: 9000)])
        s.inputsFresh = Double.random(in: 0..<1, using: &rng) < 0.95
        // Staff at the panel: island tests, held vehicles and demand targets, at random.
        s.islandTestRequested = islandTest
        if Double.random(in: 0..<1, using: &rng) < 0.03 { islandTest.toggle() }
        for i in s.chargers.indices where held[i] { s.chargers[i].vehicle?.dischargeHeld = true }
        if Double.random(in: 0..<1, using: &rng) < 0.02 { held[Int.random(in: 0..<held.count, using: &rng)].toggle() }
        if Double.random(in: 0..<1, using: &rng) < 0.02 {
          target = Bool.random(using: &rng) ? Double.random(in: 0...800, using: &rng) : nil
        }
        s.operatorDemandTargetKW = target
        // Chargers that report lower limits than their ratings, and an upstream charging
        // platform asking for anything at all (Local Controller mode).
        for i in s.chargers.indices where Double.random(in: 0..<1, using: &rng) < 0.3 {
          s.chargers[i].maxChargeKW = Double.random(in: 0...150, using: &rng)
          s.chargers[i].maxDischargeKW = Bool.random(using: &rng) ? 0 : Double.random(in: 0...150, using: &rng)
        }
        s.platformSetpointsKW = s.chargers.map { _ in
          Double.random(in: 0..<1, using: &rng) < 0.3 ? Double.random(in: -400...400, using: &rng) : nil
        }
        if Double.random(in: 0..<1, using: &rng) < 0.02 { emergencyStop.toggle() }
        s.emergencyStop = emergencyStop
        let d = controller.step(s)
        checker.check(s, d, seed: seed)
        // The switch follows its commands, except now and then when it sticks.
        if Double.random(in: 0..<1, using: &rng) < 0.9 {
          if d.transferSwitch == .toIsland { position = .island }
          if d.transferSwitch == .toUtility { position = .utility }
        }
        // Batteries follow the setpoints.
        for i in vehicles.indices {
          guard var v = vehicles[i] else { continue }
          let p = d.setpointsKW[i]
          let eta = site.chargers[i].efficiency
          v.energyKWh = min(v.batteryKWh, max(0, v.energyKWh + (p >= 0 ? p * eta : p / eta) / 60))
          vehicles[i] = v
        }
      }
    }
  }
}
