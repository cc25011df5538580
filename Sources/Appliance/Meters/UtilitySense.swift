import SiteModel
import Synchronization

/// The `utility:` section: how the appliance knows the utility is there. The transfer
/// switch's "utility available" contact (the switch's own voltage sensing), the utility's
/// voltage and frequency from meters, or both (lost when either says so, back only when
/// both agree).
public struct UtilitySection: Codable, Sendable, Hashable {
  public enum Detect: String, Codable, Sendable, CaseIterable {
    /// The `gpio.inputs.utility_available` contact (or, without one, the simulated plant).
    case contact
    /// `utility_voltage` and `utility_frequency` meters.
    case voltage
    case both
  }

  public var detect: Detect
  /// Nominal voltage of the voltage meters' readings (line-to-neutral or line-to-line, as
  /// they report), V.
  public var nominalVolts: Double?
  public var nominalHz: Double?
  /// Lost when a reading leaves these (per unit of nominal, and Hz). IEEE 1547-2018
  /// category II defaults: 0.88–1.10 pu, 58.5–61.2 Hz.
  public var tripVoltagePU: [Double]?
  public var tripHz: [Double]?
  /// Back only when every reading is within these (IEEE 1547-2018 enter-service
  /// defaults): 0.917–1.05 pu, 59.5–60.1 Hz.
  public var enterServiceVoltagePU: [Double]?
  public var enterServiceHz: [Double]?

  public init(detect: Detect, nominalVolts: Double? = nil) {
    self.detect = detect
    self.nominalVolts = nominalVolts
  }

  enum CodingKeys: String, CodingKey {
    case detect
    case nominalVolts = "nominal_volts"
    case nominalHz = "nominal_hz"
    case tripVoltagePU = "trip_voltage_pu"
    case tripHz = "trip_hz"
    case enterServiceVoltagePU = "enter_service_voltage_pu"
    case enterServiceHz = "enter_service_hz"
  }

  /// The ranges in force, defaults filled in.
  public var limits: UtilitySense.Limits {
    func range(_ r: [Double]?, _ fallback: ClosedRange<Double>) -> ClosedRange<Double> {
      guard let r, r.count == 2, r[0] <= r[1] else { return fallback }
      return r[0]...r[1]
    }
    let hz = nominalHz ?? 60
    let scale = hz / 60
    return UtilitySense.Limits(
      nominalVolts: nominalVolts ?? 0,
      tripPU: range(tripVoltagePU, 0.88...1.10), tripHz: range(tripHz, (58.5 * scale)...(61.2 * scale)),
      enterPU: range(enterServiceVoltagePU, 0.917...1.05),
      enterHz: range(enterServiceHz, (59.5 * scale)...(60.1 * scale)))
  }
}

/// Whether the utility is there, from its voltage and frequency, with the hysteresis IEEE
/// 1547 implies: lost when a reading leaves the trip range, back only when every reading is
/// inside the (narrower) enter-service range. The enter-service delay itself is counted by
/// the controller from the moment this says "back". Readings that are stale or missing
/// leave the last verdict standing (the stale meter alarm and safe state cover them).
public final class UtilitySense: SnapshotOverlay {
  public struct Limits: Sendable, Hashable {
    public var nominalVolts: Double
    public var tripPU: ClosedRange<Double>
    public var tripHz: ClosedRange<Double>
    public var enterPU: ClosedRange<Double>
    public var enterHz: ClosedRange<Double>
  }

  public let section: UtilitySection
  private let meters: MeterInputs
  private let available = Mutex(true)

  public init(section: UtilitySection, meters: MeterInputs) {
    self.section = section
    self.meters = meters
  }

  /// The verdict on these readings (volts per phase, hertz), given the last one.
  public static func judge(volts: [Double], hz: [Double], limits: Limits, wasAvailable: Bool) -> Bool {
    let pu = volts.map { $0 / limits.nominalVolts }
    if wasAvailable {
      return pu.allSatisfy { limits.tripPU.contains($0) } && hz.allSatisfy { limits.tripHz.contains($0) }
    }
    return !pu.isEmpty && pu.allSatisfy { limits.enterPU.contains($0) } && hz.allSatisfy { limits.enterHz.contains($0) }
  }

  public func overlay(_ s: inout Snapshot) {
    guard section.detect != .contact else { return }
    let fresh = meters.statuses().filter { !$0.stale }
    let volts = fresh.filter { $0.role == .utilityVoltage }.compactMap(\.value)
    let hz = fresh.filter { $0.role == .utilityFrequency }.compactMap(\.value)
    let limits = section.limits
    let verdict = available.withLock { a -> Bool in
      if !volts.isEmpty || !hz.isEmpty {
        a = Self.judge(volts: volts, hz: hz, limits: limits, wasAvailable: a)
      }
      return a
    }
    switch section.detect {
    case .contact: break
    case .voltage: s.utilityAvailable = verdict
    case .both: s.utilityAvailable = s.utilityAvailable && verdict
    }
  }
}
