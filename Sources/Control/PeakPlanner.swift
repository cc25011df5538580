/// The rolling-horizon plan: the lowest demand peak the vehicles plugged in now can hold
/// over the next hours of forecast building load, and how much energy each of them must
/// keep for the shaving that plan asks of it.
///
/// The question "what is the lowest import peak T such that every vehicle still leaves
/// with its need?" is monotone in T, so it is answered by bisection over a feasibility
/// check. The check plays the horizon forward one demand interval at a time: below T the
/// headroom charges vehicles, earliest departure first (charging as early as possible
/// never makes a later interval harder); above T the vehicles with the most energy to
/// spare discharge the excess. T is infeasible as soon as an excess cannot be covered or a
/// vehicle would leave below its need. No linear-programming solver is needed for this
/// single-resource problem, and a plan costs well under a millisecond.
public struct PeakPlanner: Sendable {
  /// One vehicle as the planner sees it.
  public struct Vehicle: Sendable, Hashable {
    public var energyKWh: Double
    public var needKWh: Double
    /// Ordinary discharging never goes below this (reserve, or energy at arrival).
    public var floorKWh: Double
    /// Planned charging stops here.
    public var capacityKWh: Double
    /// Intervals from the start of the horizon until it must hold its need (may lie
    /// beyond the horizon).
    public var departureInterval: Int
    /// The interval it is expected to arrive in (0: plugged in now).
    public var arrivalInterval: Int = 0
    public var maxChargeKW: Double
    public var maxDischargeKW: Double
    public var efficiency: Double

    public init(
      energyKWh: Double, needKWh: Double, floorKWh: Double, capacityKWh: Double, departureInterval: Int,
      arrivalInterval: Int = 0, maxChargeKW: Double, maxDischargeKW: Double, efficiency: Double
    ) {
      self.arrivalInterval = arrivalInterval
      self.energyKWh = energyKWh
      self.needKWh = needKWh
      self.floorKWh = floorKWh
      self.capacityKWh = capacityKWh
      self.departureInterval = departureInterval
      self.maxChargeKW = maxChargeKW
      self.maxDischargeKW = maxDischargeKW
      self.efficiency = efficiency
    }
  }

  public struct Plan: Sendable, Hashable {
    /// The lowest peak the plan holds, kW (the import limit when even that fails).
    public var peakKW: Double
    /// Energy each vehicle must hold above its need for the shaving the plan asks of it
    /// before it leaves (within the horizon), kWh, in the order the vehicles were given.
    public var shavingKWh: [Double]
    public var feasible: Bool
  }

  public var intervalHours: Double
  /// Bisection stops when the bracket is this narrow, kW.
  public var resolutionKW: Double = 0.5

  public init(intervalHours: Double) {
    self.intervalHours = intervalHours
  }

  /// - Parameters:
  ///   - loadKW: forecast building demand per interval of the horizon, kW.
  ///   - ceilingKW: the import limit; the plan never asks more.
  public func plan(loadKW: [Double], vehicles given: [Vehicle], ceilingKW: Double) -> Plan {
    let vehicles = reachable(given)
    var scratch = Scratch(count: vehicles.count)
    var hi = ceilingKW
    guard check(peak: hi, loadKW: loadKW, vehicles: vehicles, scratch: &scratch) else {
      return Plan(peakKW: ceilingKW, shavingKWh: Array(repeating: 0, count: vehicles.count), feasible: false)
    }
    var lo = 0.0
    while hi - lo > resolutionKW {
      let mid = (lo + hi) / 2
      if check(peak: mid, loadKW: loadKW, vehicles: vehicles, scratch: &scratch) {
        hi = mid
      } else {
        lo = mid
      }
    }
    _ = check(peak: hi, loadKW: loadKW, vehicles: vehicles, scratch: &scratch)
    return Plan(peakKW: hi, shavingKWh: scratch.discharged, feasible: true)
  }

  /// Whether the vehicles can hold the import at `peakKW` over the horizon.
  public func holds(peakKW: Double, loadKW: [Double], vehicles: [Vehicle]) -> Bool {
    var scratch = Scratch(count: vehicles.count)
    return check(peak: peakKW, loadKW: loadKW, vehicles: reachable(vehicles), scratch: &scratch)
  }

  /// A need no charging could meet (a vehicle that arrived too empty for its stay) is
  /// planned as the most it can reach: otherwise no peak at all would be feasible, and one
  /// such vehicle would leave the whole site without a plan.
  func reachable(_ vehicles: [Vehicle]) -> [Vehicle] {
    vehicles.map { v in
      var v = v
      let hours = Double(max(0, v.departureInterval - v.arrivalInterval)) * intervalHours
      v.needKWh = min(v.needKWh, v.capacityKWh, v.energyKWh + v.maxChargeKW * v.efficiency * hours)
      return v
    }
  }

  struct Scratch {
    var energy: [Double]
    var discharged: [Double]
    var order: [Int]
    init(count: Int) {
      energy = Array(repeating: 0, count: count)
      discharged = Array(repeating: 0, count: count)
      order = Array(0..<count)
    }
  }

  /// Plays the horizon forward holding the import at `peak`; false when it cannot.
  func check(peak: Double, loadKW: [Double], vehicles: [Vehicle], scratch: inout Scratch) -> Bool {
    let h = intervalHours
    for i in vehicles.indices {
      scratch.energy[i] = vehicles[i].energyKWh
      scratch.discharged[i] = 0
    }
    // Earliest departure first, for charging.
    scratch.order.sort { vehicles[$0].departureInterval < vehicles[$1].departureInterval }
    for (k, load) in loadKW.enumerated() {
      if load > peak {
        var excess = (load - peak) * h  // kWh at the building side
        // Most spare energy first: whoever can give the most without endangering its need.
        var givers: [(index: Int, kwh: Double)] = []
        for (i, v) in vehicles.enumerated() where v.arrivalInterval <= k && v.departureInterval > k {
          let later = Double(v.departureInterval - k - 1) * h * v.maxChargeKW * v.efficiency
          let keep = max(v.floorKWh, v.needKWh - later)
          let spare = min(v.maxDischargeKW * h, (scratch.energy[i] - keep) * v.efficiency)
          if spare > 1e-9 { givers.append((i, spare)) }
        }
        givers.sort { $0.kwh > $1.kwh }
        for g in givers where excess > 1e-9 {
          let e = min(g.kwh, excess)
          scratch.energy[g.index] -= e / vehicles[g.index].efficiency
          scratch.discharged[g.index] += e / vehicles[g.index].efficiency
          excess -= e
        }
        if excess > 1e-6 { return false }
      } else {
        var headroom = (peak - load) * h
        for i in scratch.order where headroom > 1e-9 {
          let v = vehicles[i]
          guard v.arrivalInterval <= k, v.departureInterval > k else { continue }
          let room = (v.capacityKWh - scratch.energy[i]) / v.efficiency
          let e = min(v.maxChargeKW * h, room, headroom)
          guard e > 1e-9 else { continue }
          scratch.energy[i] += e * v.efficiency
          headroom -= e
        }
      }
      // Whoever leaves at the end of this interval must hold its need.
      for (i, v) in vehicles.enumerated() where v.departureInterval == k + 1 {
        if scratch.energy[i] < v.needKWh - 1e-6 { return false }
      }
    }
    return true
  }
}
