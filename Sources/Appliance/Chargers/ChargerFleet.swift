import Chargers
import Foundation
import SiteModel
import Synchronization

/// The site's chargers that have a driver of their own (OCPP, an MQTT gateway): each step
/// their state goes into the snapshot in place of the plant's, and the controller's
/// setpoints go out to them. A charger the controller stops relying on raises an alarm
/// that names it and why; its draw then counts as building load, so the site's limits hold.
public final class ChargerFleet: SnapshotOverlay, DecisionActuator {
  /// Driver and its index in `SiteDescription.chargers`.
  public let drivers: [(index: Int, charger: any Charger)]
  private let status: SiteStatus?
  private let faults = Mutex<[String: String]>([:])
  /// What the drivers measured last, kW by charger, including ones not relied on.
  private let measured = Mutex<Double>(0)

  public init(drivers: [(index: Int, charger: any Charger)], status: SiteStatus?) {
    self.drivers = drivers
    self.status = status
  }

  public var indices: Set<Int> { Set(drivers.map(\.index)) }

  public func overlay(_ snapshot: inout Snapshot) {
    let now = Date()
    var total = 0.0
    for (i, charger) in drivers where snapshot.chargers.indices.contains(i) {
      let state = charger.state(now: now)
      snapshot.chargers[i] = state.reading(snapshotTime: snapshot.time, now: now)
      total += state.measuredKW
      if let ocpp = charger as? OCPPCharger, let kW = ocpp.upstreamSetpointKW(now: now) {
        if snapshot.platformSetpointsKW.count < snapshot.chargers.count {
          snapshot.platformSetpointsKW += Array(
            repeating: nil, count: snapshot.chargers.count - snapshot.platformSetpointsKW.count)
        }
        snapshot.platformSetpointsKW[i] = kW
      }
      report(charger.id, fault: state.fault)
    }
    measured.withLock { $0 = total }
  }

  public func actuate(_ decisions: Decisions, _ snapshot: Snapshot) {
    let now = Date()
    for (i, charger) in drivers {
      charger.command(setpointKW: decisions.setpointsKW.indices.contains(i) ? decisions.setpointsKW[i] : 0, now: now)
    }
  }

  /// The drivers' measured power, kW (+ charging), for a simulated plant's grid meter.
  public var measuredKW: Double { measured.withLock { $0 } }

  private func report(_ id: String, fault: String?) {
    let changed = faults.withLock { f -> Bool in
      guard f[id] != fault else { return false }
      f[id] = fault
      return true
    }
    guard changed, let status else { return }
    status.setAlarm(
      "charger-\(id)", .warning, "charger \(id) is not relied on: \(fault ?? "")", active: fault != nil)
  }
}
