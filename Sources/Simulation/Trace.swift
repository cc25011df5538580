import SiteModel

/// The trace of a run, as SCENARIO.md defines it: one row per interval, one row per plugged
/// vehicle per interval, kept in memory for the report and the chart and written as CSV.
public struct Trace: Sendable {
  public struct IntervalRow: Sendable, Hashable {
    public var minute: Int
    public var buildingKW: Double
    public var servedKW: Double
    public var evKW: Double
    public var gridKW: Double
  }

  public struct VehicleRow: Sendable, Hashable {
    public var minute: Int
    public var vehicle: Int
    public var chargeKWh: Double
    public var dischargeKWh: Double
    public var energyKWh: Double
  }

  public var intervals: [IntervalRow] = []
  public var vehicles: [VehicleRow] = []
  /// Sessions that ended within the run: session index and energy left with.
  public var departures: [(session: Int, energyKWh: Double)] = []
  public var violations: [String] = []

  public init() {}
}

/// Accumulates a plant's step flows into interval rows.
struct TraceRecorder {
  let scenario: Scenario
  var trace = Trace()
  private var sums = (building: 0.0, served: 0.0, ev: 0.0, grid: 0.0, seconds: 0.0)
  private var charge: [Double]
  private var discharge: [Double]
  private var intervalStartMinute = 0
  /// The session on each charger during the interval under way.
  private var sessionsInInterval: [Int?]
  private var energyAtEnd: [Double]

  init(scenario: Scenario) {
    self.scenario = scenario
    charge = Array(repeating: 0, count: scenario.site.chargers.count)
    discharge = charge
    sessionsInInterval = Array(repeating: nil, count: scenario.site.chargers.count)
    energyAtEnd = charge
    trace.intervals.reserveCapacity(scenario.intervalCount)
  }

  /// Records one step that started with `sessions` plugged in; closes the interval when the
  /// plant's time reaches its end.
  mutating func record(_ f: SitePlant.Flows, seconds: Double, sessions: [Int?], plant: SitePlant) {
    let h = seconds / 3600
    sums.building += f.buildingKW * seconds
    sums.served += f.servedKW * seconds
    sums.ev += f.evKW * seconds
    sums.grid += f.gridKW * seconds
    sums.seconds += seconds
    for i in f.chargerKW.indices {
      if let s = sessions[i] {
        sessionsInInterval[i] = s
        energyAtEnd[i] = f.vehicleEnergyKWh[i]
      }
      let p = f.chargerKW[i]
      if p > 0 { charge[i] += p * h } else { discharge[i] -= p * h }
    }
    if sums.seconds >= scenario.intervalSeconds - 1e-9 {
      let n = sums.seconds
      trace.intervals.append(
        Trace.IntervalRow(
          minute: intervalStartMinute, buildingKW: sums.building / n, servedKW: sums.served / n,
          evKW: sums.ev / n, gridKW: sums.grid / n))
      for i in sessionsInInterval.indices {
        guard let s = sessionsInInterval[i] else { continue }
        let v = scenario.sessions[s].vehicle
        trace.vehicles.append(
          Trace.VehicleRow(
            minute: intervalStartMinute, vehicle: v, chargeKWh: charge[i], dischargeKWh: discharge[i],
            energyKWh: energyAtEnd[i]))
      }
      sums = (0, 0, 0, 0, 0)
      for i in charge.indices {
        charge[i] = 0
        discharge[i] = 0
        sessionsInInterval[i] = nil
      }
      intervalStartMinute = plant.minute
    }
  }
}
