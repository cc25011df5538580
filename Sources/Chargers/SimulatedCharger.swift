import Foundation
import Synchronization

/// A charger and its vehicle in memory: follows setpoints within its limits at once and
/// moves the battery's energy with them. The test kit's charger (and the bench's baseline),
/// behind the same interface as the real drivers.
public final class SimulatedCharger: Charger {
  public let id: String
  private let state: Mutex<Model>

  struct Model {
    var online = true
    var maxChargeKW: Double
    var maxDischargeKW: Double
    var efficiency: Double
    var setpointKW = 0.0
    var appliedKW = 0.0
    var since: Date
    var vehicle: VehicleNeeds?
    var fault: String?
  }

  public init(
    id: String, maxChargeKW: Double, maxDischargeKW: Double, efficiency: Double = 0.93, vehicle: VehicleNeeds? = nil,
    now: Date = Date()
  ) {
    self.id = id
    state = Mutex(
      Model(
        maxChargeKW: maxChargeKW, maxDischargeKW: maxDischargeKW, efficiency: efficiency, since: now, vehicle: vehicle))
  }

  public func state(now: Date) -> ChargerState {
    state.withLock { m in
      m.advance(to: now)
      guard m.online else { return .offline(fault: m.fault) }
      return ChargerState(
        online: true, maxChargeKW: m.vehicle == nil ? 0 : m.maxChargeKW,
        maxDischargeKW: m.vehicle == nil ? 0 : m.maxDischargeKW, measuredKW: m.appliedKW, vehicle: m.vehicle,
        fault: m.fault)
    }
  }

  public func command(setpointKW: Double, now: Date) {
    state.withLock { m in
      m.advance(to: now)
      m.setpointKW = setpointKW
      m.appliedKW = m.clamped(setpointKW)
    }
  }

  /// Takes the charger off line (or back), as a disconnect would.
  public func setOnline(_ online: Bool, fault: String? = nil) {
    state.withLock {
      $0.online = online
      $0.fault = fault
    }
  }

  public func plug(_ vehicle: VehicleNeeds?) { state.withLock { $0.vehicle = vehicle } }
}

extension SimulatedCharger.Model {
  func clamped(_ kW: Double) -> Double {
    guard online, let v = vehicle else { return 0 }
    var p = min(max(kW, -maxDischargeKW), maxChargeKW)
    if v.energyKWh >= v.batteryKWh { p = min(p, 0) }
    if v.energyKWh <= v.reserveKWh { p = max(p, 0) }
    return p
  }

  mutating func advance(to now: Date) {
    let hours = max(0, now.timeIntervalSince(since)) / 3600
    since = max(since, now)
    guard var v = vehicle, hours > 0 else { return }
    let intoBattery = appliedKW >= 0 ? appliedKW * efficiency : appliedKW / efficiency
    v.energyKWh = min(v.batteryKWh, max(0, v.energyKWh + intoBattery * hours))
    vehicle = v
    appliedKW = clamped(setpointKW)
  }
}
