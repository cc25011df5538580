import Foundation
import SiteModel

/// The building's own demand over the past eight days, one mean per demand interval: the
/// controller's load forecast (same time last week, corrected by how the last hours ran
/// against their own forecast) and its sense of the week's peak.
public struct LoadHistory: Sendable, Hashable, Codable {
  public let intervalSeconds: Double
  /// Intervals kept (eight days: a week plus the day that shows how this week compares).
  public let capacity: Int
  /// Intervals in a week: the forecast reaches at most this far ahead.
  public let weekIntervals: Int
  private var means: [Double] = []
  private var next = 0
  private var currentIndex: Int?
  private var currentSumKWs = 0.0
  private var currentSeconds = 0.0

  public init(intervalSeconds: Double) {
    self.intervalSeconds = intervalSeconds
    self.weekIntervals = max(2, Int(7 * 86_400 / intervalSeconds))
    self.capacity = weekIntervals + max(1, Int(86_400 / intervalSeconds))
    means.reserveCapacity(capacity)
  }

  /// Adds one step's building demand.
  public mutating func record(time: Double, demandKW: Double, periodSeconds: Double) {
    let index = Int((time / intervalSeconds).rounded(.down))
    if let current = currentIndex, current != index {
      let mean = currentSeconds > 0 ? currentSumKWs / currentSeconds : demandKW
      closeInterval()
      // A clock that jumps ahead (or a daemon that was down) leaves intervals nobody saw.
      // They are filled with the last mean so that "a week ago" stays a week ago; a clock
      // that jumps back simply starts a new interval.
      if index > current + 1 {
        for _ in 0..<min(index - current - 1, capacity) { append(mean) }
      }
    }
    currentIndex = index
    currentSumKWs += demandKW * periodSeconds
    currentSeconds += periodSeconds
  }

  private mutating func closeInterval() {
    guard currentSeconds > 0 else { return }
    append(currentSumKWs / currentSeconds)
    currentSumKWs = 0
    currentSeconds = 0
  }

  private mutating func append(_ mean: Double) {
    if means.count < capacity {
      means.append(mean)
    } else {
      means[next] = mean
      next = (next + 1) % capacity
    }
  }

  /// The mean of the closed interval `ago` intervals before the one under way (1: the
  /// last closed one); nil when not seen.
  public func value(intervalsAgo ago: Int) -> Double? {
    guard ago >= 1, ago <= means.count else { return nil }
    // `next` is where the newest mean will go once the buffer is full.
    let newest = means.count < capacity ? means.count - 1 : (next + capacity - 1) % capacity
    return means[(newest - (ago - 1) + capacity) % capacity]
  }

  /// The building's demand `ahead` intervals after the one under way, as the same interval
  /// a week earlier; nil until a full week has been seen.
  public func forecast(intervalsAhead ahead: Int) -> Double? {
    guard ahead >= 1, ahead < weekIntervals else { return nil }
    return value(intervalsAgo: weekIntervals - ahead)
  }

  /// How the last `window` closed intervals ran against a week earlier: their ratio,
  /// clamped to [0.5, 2]; 1 when the history is too short.
  public func recentRatio(window: Int) -> Double {
    var actual = 0.0
    var lastWeek = 0.0
    for ago in 1...max(1, window) {
      guard let a = value(intervalsAgo: ago), let w = value(intervalsAgo: ago + weekIntervals) else { return 1 }
      actual += a
      lastWeek += w
    }
    guard lastWeek > 0 else { return 1 }
    return min(2, max(0.5, actual / lastWeek))
  }

  /// The forecast for the next `count` intervals (1 ahead first; shorter when the history
  /// is): same time last week, scaled by how the last hour ran against its own week-ago
  /// values, the scaling fading with `correctionHours`. A hot day shows in the morning;
  /// last week's afternoon alone would promise headroom that is not there.
  public func forecastSeries(count: Int, correctionHours: Double) -> [Double] {
    let ratio = recentRatio(window: max(1, Int(3600 / intervalSeconds)))
    var series: [Double] = []
    series.reserveCapacity(max(0, count))
    for k in 1...max(1, count) {
      guard let f = forecast(intervalsAhead: k) else { break }
      let fade = exp(-Double(k) * intervalSeconds / (correctionHours * 3600))
      series.append(f * (1 + (ratio - 1) * fade))
    }
    return series
  }

  /// Index of the interval under way (nil before the first record).
  public var currentInterval: Int? { currentIndex }
  /// Closed intervals held (at most `capacity`).
  public var intervalsSeen: Int { means.count }

  /// The highest interval mean over the past week, including the interval under way.
  public var peakKW: Double {
    let running = currentSeconds > 0 ? currentSumKWs / currentSeconds : 0
    var peak = running
    for ago in 1..<weekIntervals {
      guard let v = value(intervalsAgo: ago) else { break }
      peak = max(peak, v)
    }
    return peak
  }
}
