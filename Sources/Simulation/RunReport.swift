import Control
import Foundation
import SiteModel

/// `report.json`: the run's own summary. Checkers recompute everything from the CSV files;
/// this is for people and for the bench.
public struct RunReport: Encodable, Sendable {
  public var format = "microgrid-edge-report/1"
  public var scenario: String
  public var controller: String
  /// The control settings the run used (every key of a site file's `control:` section), so
  /// a trace can be told apart from one made with other settings, and the bench can score
  /// it against the optimum under the same ride-through rule.
  public var control: ControlSettings
  public var stepSeconds: Double
  public var simulatedDays: Double
  public var wallClockSeconds: Double
  public var cost: CostBreakdown
  public var unmanagedCost: CostBreakdown
  /// Unmanaged total minus this run's total.
  public var savings: Double
  public var violations: [String]
  public var decisionTimeMicros: DecisionTime?
  /// The steps on which the controller made a new plan (a subset of all steps).
  public var replanTimeMicros: DecisionTime?

  public struct DecisionTime: Encodable, Sendable {
    public var samples: Int
    public var median: Double
    public var p99: Double
    public var max: Double

    public init?(nanos: [UInt64]) {
      guard !nanos.isEmpty else { return nil }
      let sorted = nanos.sorted()
      func at(_ q: Double) -> Double { Double(sorted[min(sorted.count - 1, Int(q * Double(sorted.count)))]) / 1000 }
      samples = sorted.count
      median = at(0.5)
      p99 = at(0.99)
      max = Double(sorted.last!) / 1000
    }
  }

  enum CodingKeys: String, CodingKey {
    case format, scenario, controller, control, cost, savings, violations
    case stepSeconds = "step_seconds"
    case simulatedDays = "simulated_days"
    case wallClockSeconds = "wall_clock_seconds"
    case unmanagedCost = "unmanaged_cost"
    case decisionTimeMicros = "decision_time_us"
    case replanTimeMicros = "replan_time_us"
  }

  public func write(to directory: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = try encoder.encode(self)
    try TraceFiles.writeFile(
      String(decoding: data, as: UTF8.self) + "\n", to: (directory as NSString).appendingPathComponent("report.json"))
  }
}
