import Foundation
import Logging
import Synchronization

/// Log lines about input the appliance refuses, bounded per topic so that a broken
/// gateway or a hostile client cannot fill the SD card: in each interval the first
/// `linesPerInterval` refusals on a topic are logged in full, the rest only counted, and
/// when the interval ends one summary line gives their count and the last of them. The
/// counting is for the log alone: every refusal is still counted where it is reported
/// (the state's `mqtt.input_errors`).
public final class RateLimitedLog: Sendable {
  public struct Configuration: Sendable {
    public var intervalSeconds: Double = 60
    public var linesPerInterval = 5
    /// Topics tracked at once; past this, refusals on further topics share one entry (a
    /// client inventing topic names must not grow the table without end).
    public var maximumTopics = 256
    public init() {}
  }

  private struct Window {
    var start: ContinuousClock.Instant
    var logged = 0
    var suppressed = 0
    var level = Logger.Level.error
    var last = ""
  }

  /// The key refusals on untracked topics share once `maximumTopics` are tracked.
  static let otherTopics = "(other topics)"

  private let configuration: Configuration
  private let logger: Logger
  private let windows = Mutex<[String: Window]>([:])

  public init(logger: Logger, configuration: Configuration = Configuration()) {
    self.logger = logger
    self.configuration = configuration
  }

  /// One refusal on `topic`: logged now, or counted for the interval's summary.
  public func refused(
    on topic: String, _ message: String, level: Logger.Level = .error, metadata: Logger.Metadata? = nil,
    at now: ContinuousClock.Instant = .now
  ) {
    let (logNow, ended) = windows.withLock { windows -> (Bool, (String, Window)?) in
      var key = topic
      if windows[key] == nil && windows.count >= configuration.maximumTopics { key = Self.otherTopics }
      var ended: (String, Window)?
      var window = windows[key] ?? Window(start: now)
      if seconds(now - window.start) >= configuration.intervalSeconds {
        if window.suppressed > 0 { ended = (key, window) }
        window = Window(start: now)
      }
      let logNow = window.logged < configuration.linesPerInterval
      if logNow {
        window.logged += 1
      } else {
        window.suppressed += 1
        window.level = max(window.level, level)
        window.last = message
      }
      windows[key] = window
      return (logNow, ended)
    }
    if let (key, window) = ended { summarize(key, window, until: now) }
    if logNow { logger.log(level: level, "\(message)", metadata: metadata) }
  }

  /// Writes the summaries of intervals that have ended (all of them when `everything`,
  /// at shutdown), and forgets topics that have gone quiet.
  public func flush(at now: ContinuousClock.Instant = .now, everything: Bool = false) {
    let ended = windows.withLock { windows -> [(String, Window)] in
      var ended: [(String, Window)] = []
      for (key, window) in windows where everything || seconds(now - window.start) >= configuration.intervalSeconds {
        if window.suppressed > 0 { ended.append((key, window)) }
        windows[key] = nil
      }
      return ended.sorted { $0.0 < $1.0 }
    }
    for (key, window) in ended { summarize(key, window, until: now) }
  }

  private func summarize(_ key: String, _ window: Window, until now: ContinuousClock.Instant) {
    let span = Int(seconds(now - window.start).rounded(.up))
    logger.log(
      level: window.level,
      "\(key): \(window.suppressed) more refused in \(span) s, not logged one by one; the last: \(window.last)",
      metadata: ["topic": "\(key)", "suppressed": "\(window.suppressed)"])
  }

  private func seconds(_ d: Duration) -> Double { MeterInputs.seconds(d) }
}
