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
  /// For vehicles whose chargers do not say what they need: timetables and defaults.
  private let defaults: VehicleDefaults?
  private let site: SiteDescription?
  private let timeZone: SiteTimeZone?
  /// When each charger's vehicle with unknown needs was first seen.
  private let unknownSince = Mutex<[Int: Date]>([:])

  public init(
    drivers: [(index: Int, charger: any Charger)], status: SiteStatus?, site: SiteDescription? = nil,
    vehicleDefaults: VehicleDefaults? = nil, timeZone: SiteTimeZone? = nil
  ) {
    self.drivers = drivers
    self.status = status
    self.site = site
    self.defaults = vehicleDefaults
    self.timeZone = timeZone
  }

  public var indices: Set<Int> { Set(drivers.map(\.index)) }

  public func overlay(_ snapshot: inout Snapshot) {
    // The snapshot's own wall clock, where the site has one: wall-clock departures then
    // land on the timeline exactly where the clock put them.
    let now = snapshot.utcSeconds.map { Date(timeIntervalSince1970: $0) } ?? Date()
    var total = 0.0
    for (i, charger) in drivers where snapshot.chargers.indices.contains(i) {
      var state = charger.state(now: now)
      if state.needsUnknown, let supplied = charger as? any SiteSuppliedNeeds,
        let assumed = assumedNeeds(charger: i, local: snapshot.localTime, now: now)
      {
        supplied.assumeNeeds(assumed)
        state = charger.state(now: now)
      } else if !state.needsUnknown && state.vehicle == nil {
        unknownSince.withLock { $0[i] = nil }
      }
      snapshot.chargers[i] = state.reading(snapshotTime: snapshot.time, now: now)
      total += state.measuredKW
      if let steered = charger as? any PlatformSteered, let kW = steered.upstreamSetpointKW(now: now) {
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

  /// What a vehicle that sent no needs is assumed to need: the next departure on its
  /// charger's timetable (site time), else the default stay from when it was first seen;
  /// the timetable's need, else a share of its battery. Nil without a site to say it.
  func assumedNeeds(charger i: Int, local: LocalTime, now: Date) -> AssumedNeeds? {
    guard let site, let defaults else { return nil }
    let since = unknownSince.withLock { seen -> Date in
      if let t = seen[i] { return t }
      seen[i] = now
      return now
    }
    let entry = defaults.byCharger[i]
    let fallback = site.vehicles.max { $0.batteryKWh < $1.batteryKWh }
    let battery = entry?.vehicle?.batteryKWh ?? fallback?.batteryKWh ?? 60
    let reserve = entry?.vehicle?.reserveKWh ?? site.vehicles.map(\.reserveKWh).min() ?? 0
    let id = entry?.vehicle?.id ?? "\(site.chargers[i].id)-vehicle"
    if let entry, let next = entry.timetable.next(after: local) {
      let utc = timeZone?.utc(of: next) ?? (now.timeIntervalSince1970 + next.seconds - local.seconds)
      return AssumedNeeds(
        vehicleID: id, batteryKWh: battery, reserveKWh: reserve,
        departureNeedKWh: entry.needKWh ?? battery * defaults.defaultNeedFraction,
        departure: Date(timeIntervalSince1970: utc), source: "timetable")
    }
    // The default stay from when the vehicle was first seen; once past, another one.
    var departure = since.addingTimeInterval(defaults.defaultStaySeconds)
    while departure <= now { departure = departure.addingTimeInterval(defaults.defaultStaySeconds) }
    return AssumedNeeds(
      vehicleID: id, batteryKWh: battery, reserveKWh: reserve,
      departureNeedKWh: entry?.needKWh ?? battery * defaults.defaultNeedFraction, departure: departure,
      source: "default stay")
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
