import Foundation
import SiteModel

/// One charger, whatever drives it (OCPP, an MQTT adapter, a simulation): all the
/// controller learns from it and all it can tell it. In the words of the people who run
/// the site: "charger X can charge up to A and discharge up to B; its vehicle holds E and
/// needs N by time D", and back: "charge at P" (negative: give P to the building).
///
/// Drivers keep their state current from their own traffic and answer `state` from
/// memory: the control loop reads every charger every step and must never wait on one.
public protocol Charger: AnyObject, Sendable {
  var id: String { get }
  /// What the charger and its vehicle report now. `now` is the wall clock (departures are
  /// wall-clock times on the wire).
  func state(now: Date) -> ChargerState
  /// The power to follow from now on, kW at the building side (+ charging, − discharging).
  /// Returns at once; the driver delivers it (and repeats or drops it) on its own.
  func command(setpointKW: Double, now: Date)
}

/// A charger that an upstream charging platform may also steer (OCPP's Local Controller
/// mode): the platform's setpoint, while it holds. A capability, as in evcc's api.go: the
/// fleet asks for it, never for a driver type.
public protocol PlatformSteered: Charger {
  func upstreamSetpointKW(now: Date) -> Double?
}

/// What the site assumes of a vehicle whose charger does not say what it needs (no
/// NotifyEVChargingNeeds: a vehicle without ISO 15118, or one that plugged in before the
/// appliance started): its departure and need from the site's timetable or defaults, its
/// battery from the configured vehicle. Such a vehicle only charges: whether it could
/// discharge, and how far, is unknown.
public struct AssumedNeeds: Sendable, Hashable {
  public var vehicleID: String
  public var batteryKWh: Double
  public var reserveKWh: Double
  public var departureNeedKWh: Double
  public var departure: Date
  /// `timetable` or `default`, for logs and panels.
  public var source: String

  public init(
    vehicleID: String, batteryKWh: Double, reserveKWh: Double, departureNeedKWh: Double, departure: Date,
    source: String
  ) {
    self.vehicleID = vehicleID
    self.batteryKWh = batteryKWh
    self.reserveKWh = reserveKWh
    self.departureNeedKWh = departureNeedKWh
    self.departure = departure
    self.source = source
  }
}

/// A charger that lets the site supply what its vehicle needs when the vehicle does not say
/// (`ChargerState.needsUnknown`). A capability: the fleet asks for it, never for a driver.
public protocol SiteSuppliedNeeds: Charger {
  /// From now on (until the vehicle leaves) manage it with these needs; nil: stop.
  func assumeNeeds(_ needs: AssumedNeeds?)
}

/// A charger's state as the controller sees it.
public struct ChargerState: Sendable, Hashable {
  /// The charger answers and follows setpoints. When false the controller gives it
  /// nothing and does not count on it.
  public var online: Bool
  /// What the charger and vehicle accept now, kW (both ≥ 0; 0 discharge: charge only).
  public var maxChargeKW: Double
  public var maxDischargeKW: Double
  /// Measured power, kW, + charging.
  public var measuredKW: Double
  public var vehicle: VehicleNeeds?
  /// Why the controller stopped relying on this charger (shown as an alarm), if it did.
  public var fault: String?
  /// A vehicle is plugged in (a transaction runs) but nobody said what it needs: the site
  /// may supply assumed needs (`SiteSuppliedNeeds`).
  public var needsUnknown = false

  public init(
    online: Bool, maxChargeKW: Double, maxDischargeKW: Double, measuredKW: Double = 0,
    vehicle: VehicleNeeds? = nil, fault: String? = nil
  ) {
    self.online = online
    self.maxChargeKW = maxChargeKW
    self.maxDischargeKW = maxDischargeKW
    self.measuredKW = measuredKW
    self.vehicle = vehicle
    self.fault = fault
  }

  public static func offline(fault: String?) -> ChargerState {
    ChargerState(online: false, maxChargeKW: 0, maxDischargeKW: 0, fault: fault)
  }
}

/// What the plugged-in vehicle holds and needs, in absolute battery energy.
public struct VehicleNeeds: Sendable, Hashable {
  public var vehicleID: String
  public var batteryKWh: Double
  public var energyKWh: Double
  /// Energy discharging never goes below (the vehicle's own minimum for V2X).
  public var reserveKWh: Double
  /// What it held when it plugged in.
  public var arrivalEnergyKWh: Double
  /// Energy the driver needs in the battery at `departure`.
  public var departureNeedKWh: Double
  public var departure: Date

  public init(
    vehicleID: String, batteryKWh: Double, energyKWh: Double, reserveKWh: Double, arrivalEnergyKWh: Double,
    departureNeedKWh: Double, departure: Date
  ) {
    self.vehicleID = vehicleID
    self.batteryKWh = batteryKWh
    self.energyKWh = energyKWh
    self.reserveKWh = reserveKWh
    self.arrivalEnergyKWh = arrivalEnergyKWh
    self.departureNeedKWh = departureNeedKWh
    self.departure = departure
  }

  /// The vehicle on the snapshot's timeline (`time` is the snapshot's, at `now`).
  public func plugged(snapshotTime time: Double, now: Date) -> PluggedVehicle {
    PluggedVehicle(
      vehicleID: vehicleID, batteryKWh: batteryKWh, reserveKWh: reserveKWh, energyKWh: energyKWh,
      arrivalEnergyKWh: arrivalEnergyKWh, departureTime: time + departure.timeIntervalSince(now),
      departureNeedKWh: departureNeedKWh)
  }
}

extension ChargerState {
  /// The reading the controller gets: limits, measured power, the vehicle on its timeline.
  public func reading(snapshotTime time: Double, now: Date) -> ChargerReading {
    guard online else { return ChargerReading(online: false, maxChargeKW: 0, maxDischargeKW: 0) }
    return ChargerReading(
      online: true, vehicle: vehicle?.plugged(snapshotTime: time, now: now), measuredKW: measuredKW,
      maxChargeKW: maxChargeKW, maxDischargeKW: maxDischargeKW)
  }
}
