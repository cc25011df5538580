import CClockStatus
import Foundation
import SiteModel
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// One reading of the clocks a site keeps time by.
public struct ClockReading: Sendable, Hashable {
  /// Seconds on a monotonic clock (never steps; durations are differences of these).
  public var monotonic: Double
  /// The wall clock, seconds since 1970 UTC (steps when NTP corrects it).
  public var utc: Double
  /// Whether the wall clock is known to be right (NTP has synchronized it).
  public var synchronized: Bool

  public init(monotonic: Double, utc: Double, synchronized: Bool) {
    self.monotonic = monotonic
    self.utc = utc
    self.synchronized = synchronized
  }
}

/// Where the field site's time comes from. Injected, so tests drive the real control cycle
/// through a 23-hour day, an NTP step or an unsynchronized boot without waiting.
public protocol SiteClock: Sendable {
  func read() -> ClockReading
}

/// The machine's clocks: CLOCK_MONOTONIC, CLOCK_REALTIME, and the synchronization state.
public struct SystemClock: SiteClock {
  /// How the appliance knows the wall clock is right.
  public enum Synchronization: Sendable, Hashable {
    /// Ask the kernel (adjtimex): chrony, ntpd and systemd-timesyncd clear its
    /// "unsynchronized" flag once they have set the clock.
    case kernel
    /// Synchronized while this file exists (systemd-timesyncd keeps
    /// /run/systemd/timesync/synchronized).
    case file(String)
  }

  public let synchronization: Synchronization

  public init(synchronization: Synchronization = .kernel) {
    self.synchronization = synchronization
  }

  public func read() -> ClockReading {
    var mono = timespec()
    clock_gettime(CLOCK_MONOTONIC, &mono)
    var wall = timespec()
    clock_gettime(CLOCK_REALTIME, &wall)
    return ClockReading(
      monotonic: Double(mono.tv_sec) + Double(mono.tv_nsec) * 1e-9,
      utc: Double(wall.tv_sec) + Double(wall.tv_nsec) * 1e-9, synchronized: synchronized)
  }

  private var synchronized: Bool {
    switch synchronization {
    case .kernel: mge_clock_synchronized() == 1
    case .file(let path): FileManager.default.fileExists(atPath: path)
    }
  }
}

/// A clock a test sets by hand: monotonic time advances with `advance`, the wall clock
/// with it unless `stepWall` moves it alone (an NTP correction).
public final class ManualClock: SiteClock {
  private let state: Mutex<ClockReading>

  public init(utc: Double, synchronized: Bool = true, monotonic: Double = 1000) {
    state = Mutex(ClockReading(monotonic: monotonic, utc: utc, synchronized: synchronized))
  }

  public func read() -> ClockReading { state.withLock { $0 } }

  public func advance(_ seconds: Double) {
    state.withLock {
      $0.monotonic += seconds
      $0.utc += seconds
    }
  }

  /// The wall clock steps (NTP), the monotonic clock does not.
  public func stepWall(_ seconds: Double) { state.withLock { $0.utc += seconds } }

  public func setSynchronized(_ synchronized: Bool) { state.withLock { $0.synchronized = synchronized } }
}

/// The site's time zone: UTC to the local wall clock the calendar runs on (the controller's
/// weekdays, times of day, billing periods and timetables), through both daylight-saving
/// changes. Foundation reads the IANA database (Debian's tzdata).
public struct SiteTimeZone: Sendable, Hashable {
  public let identifier: String
  private let zone: TimeZone

  /// Nil when the identifier is not a zone the system knows.
  public init?(identifier: String) {
    guard let zone = TimeZone(identifier: identifier) else { return nil }
    self.identifier = identifier
    self.zone = zone
  }

  /// Seconds the local wall clock is ahead of UTC at `utc`.
  public func offsetSeconds(atUTC utc: Double) -> Double {
    Double(zone.secondsFromGMT(for: Date(timeIntervalSince1970: utc)))
  }

  public func localTime(atUTC utc: Double) -> LocalTime {
    LocalTime(seconds: utc + offsetSeconds(atUTC: utc))
  }

  /// The UTC instant a local wall-clock time stands for. In the hour that repeats in
  /// autumn the earlier instant is taken; a time skipped in spring is read on the offset
  /// before the change (02:30 on a 23-hour day is 03:30).
  public func utc(of local: LocalTime) -> Double {
    // Try the offsets in force a day either side: one of them maps back to `local`.
    let guess = local.seconds - offsetSeconds(atUTC: local.seconds)
    let candidates = [offsetSeconds(atUTC: guess - 86_400), offsetSeconds(atUTC: guess + 86_400)]
      .map { local.seconds - $0 }
      .sorted()
    for utc in candidates where localTime(atUTC: utc) == local { return utc }
    return local.seconds - offsetSeconds(atUTC: guess - 86_400)
  }

  /// `2026-03-08T03:15:00-04:00`: local time with its offset, as panels and records show it.
  public func isoText(atUTC utc: Double) -> String {
    let offset = Int(offsetSeconds(atUTC: utc))
    let sign = offset < 0 ? "-" : "+"
    let minutes = abs(offset) / 60
    func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(localTime(atUTC: utc))\(sign)\(two(minutes / 60)):\(two(minutes % 60))"
  }
}
