/// A utility meter's KYZ pulse output turned into power and energy. Each pulse is a fixed
/// energy (`kWhPerPulse`, from the meter's nameplate or the utility); power comes from the
/// time between pulses. Pure: edges and time come in, so recorded sequences replay.
///
/// - Form A (two wires) gives one pulse per closure: only edges to active count.
/// - Form C (three wires, K-Y-Z) toggles: every change counts as a pulse.
///
/// Sanity limits: a pulse closer to the one before than the meter's highest believable
/// power allows is a bounce and is dropped (counted in `rejected`); a meter that stays
/// silent longer than `staleAfterSeconds` while the building should be drawing power is
/// stale.
public struct PulseMeter: Sendable, Hashable {
  public enum Form: String, Sendable, Hashable, Codable, CaseIterable {
    case a = "A"
    case c = "C"
  }

  public struct Configuration: Sendable, Hashable {
    public var kWhPerPulse: Double
    public var form: Form
    /// Power above this cannot be real at this service (a bounce); usually 1.5× the
    /// service rating.
    public var maxKW: Double
    public var staleAfterSeconds: Double

    public init(kWhPerPulse: Double, form: Form = .a, maxKW: Double, staleAfterSeconds: Double = 300) {
      self.kWhPerPulse = kWhPerPulse
      self.form = form
      self.maxKW = maxKW
      self.staleAfterSeconds = staleAfterSeconds
    }

    /// The shortest believable time between pulses.
    public var minimumGapNanoseconds: UInt64 { UInt64(kWhPerPulse * 3600 / maxKW * 1e9) }
  }

  public let configuration: Configuration
  /// Pulses counted since start, and the energy they stand for.
  public private(set) var pulses = 0
  public private(set) var rejected = 0
  public var energyKWh: Double { Double(pulses) * configuration.kWhPerPulse }
  private var lastPulse: UInt64?
  private var lastInterval: UInt64?
  private let startedAt: UInt64

  public init(_ configuration: Configuration, startedAt: UInt64) {
    self.configuration = configuration
    self.startedAt = startedAt
  }

  public enum Outcome: Sendable, Hashable {
    case counted
    /// Not a pulse for this form (Form A's release edge).
    case ignored
    /// Too soon after the last pulse to be real.
    case bounce
  }

  @discardableResult
  public mutating func take(_ edge: LineEdge) -> Outcome {
    if configuration.form == .a && !edge.active { return .ignored }
    let t = edge.timestampNanoseconds
    if let last = lastPulse {
      guard t >= last else { return .ignored }  // out of order: the kernel stamps in order
      let gap = t - last
      if gap < configuration.minimumGapNanoseconds {
        rejected += 1
        return .bounce
      }
      lastInterval = gap
    }
    lastPulse = t
    pulses += 1
    return .counted
  }

  /// Power now, kW: the energy of one pulse over the last interval between pulses, or
  /// less if it has been longer than that since the last pulse (the load has dropped; the
  /// next pulse will tell by how much). Nil until two pulses have come.
  public func kW(at now: UInt64) -> Double? {
    guard let last = lastPulse, let interval = lastInterval, interval > 0 else { return nil }
    let sinceLast = now > last ? now - last : 0
    let seconds = Double(max(interval, sinceLast)) / 1e9
    return configuration.kWhPerPulse * 3600 / seconds
  }

  /// Seconds since the last pulse (or since start, before any).
  public func silentSeconds(at now: UInt64) -> Double {
    let from = lastPulse ?? startedAt
    return now > from ? Double(now - from) / 1e9 : 0
  }

  public func isStale(at now: UInt64) -> Bool { silentSeconds(at: now) > configuration.staleAfterSeconds }
}
