import Foundation
import MQTT
import OCPP
import Synchronization

/// The MQTT adapter driver: for chargers that have a gateway of their own (a vendor's
/// Modbus bridge, a Node-RED flow). The gateway publishes the charger's state as JSON on
/// `<topic>/state`; the appliance publishes each new setpoint on `<topic>/setpoint`:
///
///     <topic>/state     {"online": true, "max_charge_kw": 11, "max_discharge_kw": 11,
///                        "power_kw": -3.2,
///                        "vehicle": {"id": "BUS-7", "battery_kwh": 200, "energy_kwh": 120,
///                                    "reserve_kwh": 40, "need_kwh": 160,
///                                    "departure": "2026-11-28T06:30:00Z"}}
///     <topic>/setpoint  {"setpoint_kw": -5.0, "time": "2026-11-27T21:00:00.000Z"}
///
/// A state older than `staleAfterSeconds` takes the charger off line for the controller.
public final class MQTTCharger: Charger {
  public let id: String
  public let topic: String
  public let staleAfterSeconds: Double
  private let ratedChargeKW: Double
  private let ratedDischargeKW: Double
  private let shared = Mutex(Shared())
  private let publisher = Mutex<(@Sendable (MQTTClient.Message) -> Void)?>(nil)

  struct Shared {
    var state: ChargerState?
    var receivedAt: Date?
    var lastPublished: (kW: Double, at: Date)?
  }

  public init(
    id: String, topic: String, ratedChargeKW: Double, ratedDischargeKW: Double, staleAfterSeconds: Double = 10
  ) {
    self.id = id
    self.topic = topic
    self.ratedChargeKW = ratedChargeKW
    self.ratedDischargeKW = ratedDischargeKW
    self.staleAfterSeconds = staleAfterSeconds
  }

  public var stateTopic: String { "\(topic)/state" }
  public var setpointTopic: String { "\(topic)/setpoint" }

  /// Where setpoints go (the panel's MQTT client, once it exists).
  public func attach(publisher: @escaping @Sendable (MQTTClient.Message) -> Void) {
    self.publisher.withLock { $0 = publisher }
  }

  /// A message on `stateTopic`. Returns what was wrong with it, naming topic and field;
  /// a bad message changes nothing.
  public func ingest(payload: [UInt8], now: Date) -> [String] {
    let where_ = "\(stateTopic)"
    guard let json = try? JSONValue.parse(String(decoding: payload, as: UTF8.self)), json.objectValue != nil else {
      return ["\(where_): not a JSON object; ignored"]
    }
    var problems: [String] = []
    func number(_ value: JSONValue?, _ field: String, min: Double = 0, max: Double = .infinity) -> Double? {
      guard let value else { return nil }
      guard let n = value.doubleValue, n.isFinite, n >= min, n <= max else {
        problems.append("\(where_): \(field) must be a number in \(min)...\(max), not \(value.jsonText)")
        return nil
      }
      return n
    }
    let online = json["online"]?.boolValue ?? true
    let maxCharge = number(json["max_charge_kw"], "max_charge_kw", max: ratedChargeKW * 10) ?? ratedChargeKW
    let maxDischarge = number(json["max_discharge_kw"], "max_discharge_kw", max: ratedDischargeKW * 10) ?? 0
    let rated = Swift.max(ratedChargeKW, ratedDischargeKW)
    let power = number(json["power_kw"], "power_kw", min: -rated * 1.5 - 1, max: rated * 1.5 + 1) ?? 0
    var vehicle: VehicleNeeds?
    if let v = json["vehicle"], v != .null {
      let battery = number(v["battery_kwh"], "vehicle.battery_kwh", min: 1, max: 2000)
      let energy = number(v["energy_kwh"], "vehicle.energy_kwh", max: battery ?? 2000)
      let need = number(v["need_kwh"], "vehicle.need_kwh", max: battery ?? 2000)
      let reserve = number(v["reserve_kwh"], "vehicle.reserve_kwh", max: battery ?? 2000) ?? 0
      let departure = v["departure"]?.stringValue.flatMap(OCPPTime.parse)
      if departure == nil { problems.append("\(where_): vehicle.departure must be an ISO 8601 time") }
      if let battery, let energy, let need, let departure {
        vehicle = VehicleNeeds(
          vehicleID: v["id"]?.stringValue ?? "\(id)-vehicle", batteryKWh: battery, energyKWh: energy,
          reserveKWh: min(reserve, energy), arrivalEnergyKWh: energy, departureNeedKWh: need, departure: departure)
      } else if battery == nil || energy == nil || need == nil {
        problems.append("\(where_): vehicle needs battery_kwh, energy_kwh and need_kwh")
      }
    }
    guard problems.isEmpty else { return problems }
    let state = ChargerState(
      online: online, maxChargeKW: min(maxCharge, ratedChargeKW), maxDischargeKW: min(maxDischarge, ratedDischargeKW),
      measuredKW: power, vehicle: vehicle)
    shared.withLock { s in
      // Keep the arrival energy of a vehicle already known, so its reserve floor holds.
      var state = state
      if let old = s.state?.vehicle, var new = state.vehicle, old.vehicleID == new.vehicleID {
        new.arrivalEnergyKWh = old.arrivalEnergyKWh
        state.vehicle = new
      }
      s.state = state
      s.receivedAt = now
    }
    return []
  }

  public func state(now: Date) -> ChargerState {
    shared.withLock { s in
      guard let state = s.state, let at = s.receivedAt else { return .offline(fault: nil) }
      if now.timeIntervalSince(at) > staleAfterSeconds {
        return .offline(fault: "no state on \(stateTopic) for \(Int(now.timeIntervalSince(at))) s")
      }
      return state.online ? state : .offline(fault: nil)
    }
  }

  public func command(setpointKW: Double, now: Date) {
    // A new setpoint goes out when it changed (0.1 kW) or every 10 s, so a gateway that
    // restarted learns it again.
    let due = shared.withLock { s -> Bool in
      if let last = s.lastPublished, abs(last.kW - setpointKW) < 0.1, now.timeIntervalSince(last.at) < 10 {
        return false
      }
      s.lastPublished = (setpointKW, now)
      return true
    }
    guard due, let publish = publisher.withLock({ $0 }) else { return }
    let body: JSONValue = [
      "setpoint_kw": .number((setpointKW * 1000).rounded() / 1000), "time": .string(OCPPTime.format(now)),
    ]
    publish(MQTTClient.Message(topic: setpointTopic, payload: Array(body.jsonText.utf8), qos: 1))
  }
}
