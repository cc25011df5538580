/// What the site measured, second by second, for the reports the VTN asks for: kept for the
/// last hour at most (bounded: 3600 samples), read back as means over each report interval.
public struct TelemetryWindow: Sendable {
  /// One second of the site, UTC.
  public struct Sample: Sendable, Hashable {
    public var utc: Double
    /// What the site draws from the utility, kW (export negative): TELEMETRY_USAGE. NaN
    /// when it was not measured (a stale meter): left out of the means.
    public var gridImportKW: Double
    /// What the vehicles give back, kW (0 when they charge).
    public var deliveredKW: Double
    /// What the plugged vehicles could give back now, kW.
    public var availableDischargeKW: Double

    public init(utc: Double, gridImportKW: Double, deliveredKW: Double, availableDischargeKW: Double) {
      self.utc = utc
      self.gridImportKW = gridImportKW
      self.deliveredKW = deliveredKW
      self.availableDischargeKW = availableDischargeKW
    }
  }

  public static let keptSeconds = 3600.0
  private var samples: [Sample] = []

  public init() {}

  public mutating func add(_ sample: Sample) {
    guard sample.utc.isFinite else { return }
    // A clock stepped back: what was kept is on another timeline.
    if let last = samples.last, sample.utc < last.utc { samples.removeAll() }
    samples.append(sample)
    if let first = samples.first, sample.utc - first.utc > Self.keptSeconds {
      samples.removeFirst(samples.firstIndex { sample.utc - $0.utc <= Self.keptSeconds } ?? 0)
    }
  }

  public var latest: Sample? { samples.last }

  /// The means over [from, to), each of the values measured in it (nil: none was).
  public func mean(from: Double, to: Double) -> Means {
    var sums = [0.0, 0.0, 0.0]
    var counts = [0.0, 0.0, 0.0]
    for s in samples where s.utc >= from && s.utc < to {
      for (i, v) in [s.gridImportKW, s.deliveredKW, s.availableDischargeKW].enumerated() where v.isFinite {
        sums[i] += v
        counts[i] += 1
      }
    }
    func m(_ i: Int) -> Double? { counts[i] > 0 ? sums[i] / counts[i] : nil }
    return Means(gridImportKW: m(0), deliveredKW: m(1), availableDischargeKW: m(2))
  }

  public struct Means: Sendable, Hashable {
    public var gridImportKW: Double?
    public var deliveredKW: Double?
    public var availableDischargeKW: Double?
  }
}
