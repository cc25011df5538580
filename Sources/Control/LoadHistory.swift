import SiteModel

/// The building's own demand over the past week, one mean per demand interval, kept so the
/// controller can set a sensible demand target before the month has shown its peak.
public struct LoadHistory: Sendable, Hashable {
  public let intervalSeconds: Double
  public let capacity: Int
  private var means: [Double] = []
  private var next = 0
  private var currentIndex: Int?
  private var currentSumKWs = 0.0
  private var currentSeconds = 0.0

  public init(intervalSeconds: Double, days: Int = 7) {
    self.intervalSeconds = intervalSeconds
    self.capacity = max(1, Int(Double(days) * 86_400 / intervalSeconds))
    means.reserveCapacity(capacity)
  }

  /// Adds one step's building demand.
  public mutating func record(time: Double, demandKW: Double, periodSeconds: Double) {
    let index = Int((time / intervalSeconds).rounded(.down))
    if let current = currentIndex, current != index { closeInterval() }
    currentIndex = index
    currentSumKWs += demandKW * periodSeconds
    currentSeconds += periodSeconds
  }

  private mutating func closeInterval() {
    guard currentSeconds > 0 else { return }
    let mean = currentSumKWs / currentSeconds
    if means.count < capacity {
      means.append(mean)
    } else {
      means[next] = mean
      next = (next + 1) % capacity
    }
    currentSumKWs = 0
    currentSeconds = 0
  }

  /// The building's demand `ahead` intervals after the one under way, forecast as the
  /// same interval a week earlier; nil until a full week has been seen.
  public func forecast(intervalsAhead ahead: Int) -> Double? {
    guard means.count == capacity, ahead >= 1, ahead <= capacity else { return nil }
    // `next` is the oldest slot: the interval one week before the one under way, plus one.
    return means[(next + ahead - 1) % capacity]
  }

  /// Index of the interval under way (nil before the first record).
  public var currentInterval: Int? { currentIndex }

  /// The highest interval mean over the window, including the interval under way.
  public var peakKW: Double {
    let running = currentSeconds > 0 ? currentSumKWs / currentSeconds : 0
    return max(means.max() ?? 0, running)
  }
}
