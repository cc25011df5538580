import Foundation
import Logging
import MQTT
import OCPP
import SiteModel
import XCTest

@testable import Chargers

/// The drivers behind the one `Charger` interface: OCPP's frame handling, the MQTT
/// adapter's input checks, the simulated charger's physics.
final class DriverTests: XCTestCase {
  let t0 = Date(timeIntervalSince1970: 1_795_000_000)

  func ocppCharger() -> OCPPCharger {
    OCPPCharger(
      id: "C1", configuration: .init(ratedChargeKW: 15, ratedDischargeKW: 15), logger: Logger(label: "test"))
  }

  /// Collects what the driver sends on its connection.
  func drain(_ stream: AsyncStream<String>, count: Int) async -> [OCPPFrame] {
    var frames: [OCPPFrame] = []
    for await text in stream {
      frames.append(try! OCPPFrame.parse(text))
      if frames.count == count { break }
    }
    return frames
  }

  func testAnInvalidCallGetsACallErrorNamingTheFieldAndTheChargerCarriesOn() async throws {
    let charger = ocppCharger()
    let (_, outgoing) = charger.attach(version: .v21, now: t0)
    charger.receive(#"[2,"a1","NotifyEVChargingNeeds",{"evseId":1}]"#, now: t0)
    charger.receive(
      #"[2,"a2","BootNotification",{"reason":"PowerUp","chargingStation":{"model":"m","vendorName":"v"}}]"#, now: t0)
    charger.receive(#"[2,"a3","Heartbeat",{"extra":true}]"#, now: t0)
    charger.receive("this is not json", now: t0)
    charger.receive(#"[2,"a4","MadeUpAction",{}]"#, now: t0)
    let frames = await drain(outgoing, count: 4)
    guard case .error("a1", .occurrenceConstraintViolation, let why, _) = frames[0] else {
      return XCTFail("expected a CALLERROR for a1, got \(frames[0])")
    }
    XCTAssertTrue(why.contains("chargingNeeds"), why)
    guard case .result("a2", let boot) = frames[1] else { return XCTFail("\(frames[1])") }
    XCTAssertEqual(boot["status"], "Accepted")
    guard case .error("a3", .propertyConstraintViolation, let extra, _) = frames[2] else {
      return XCTFail("\(frames[2])")
    }
    XCTAssertTrue(extra.contains("extra"), extra)
    // Unreadable text has no message id to answer; a made-up action is not implemented.
    guard case .error("a4", .notImplemented, _, _) = frames[3] else { return XCTFail("\(frames[3])") }
    XCTAssertTrue(charger.state(now: t0).online, "a charger is not dropped for one bad message")
  }

  func testASetpointGoesOutOnTheConnectionAndItsAnswerIsTaken() async throws {
    let charger = ocppCharger()
    let (_, outgoing) = charger.attach(version: .v21, now: t0)
    charger.receive(
      #"[2,"b","BootNotification",{"reason":"PowerUp","chargingStation":{"model":"m","vendorName":"v"}}]"#, now: t0)
    // The controller's setpoint goes out as soon as there is a transaction to carry it.
    charger.command(setpointKW: -4, now: t0)
    charger.receive(
      #"[2,"t","TransactionEvent",{"eventType":"Started","timestamp":"2026-11-27T10:00:00Z","triggerReason":"CablePluggedIn","seqNo":0,"transactionInfo":{"transactionId":"X"}}]"#,
      now: t0)
    charger.receive(
      #"[2,"n","NotifyEVChargingNeeds",{"evseId":1,"chargingNeeds":{"requestedEnergyTransfer":"DC_BPT","dcChargingParameters":{"evMaxCurrent":40,"evMaxVoltage":400,"evEnergyCapacity":60000,"stateOfCharge":50},"v2xChargingParameters":{"maxChargePower":11000,"maxDischargePower":11000}}}]"#,
      now: t0)
    let frames = await drain(outgoing, count: 4)
    guard case .call(let id, "SetChargingProfile", let payload) = frames[3] else { return XCTFail("\(frames[3])") }
    XCTAssertEqual(
      payload["chargingProfile"]?["chargingSchedule"]?[0]?["chargingSchedulePeriod"]?[0]?["setpoint"], -4000)
    charger.receive(OCPPFrame.result(id: id, payload: ["status": "Accepted"]).text, now: t0)
    XCTAssertEqual(charger.session?.acceptedKW, -4)
    // An answer that breaks its schema counts as a refusal.
    charger.command(setpointKW: -8, now: t0)
    charger.receive(OCPPFrame.result(id: "mge-2", payload: ["status": "Maybe"]).text, now: t0)
    XCTAssertNil(charger.session?.acceptedKW)
  }

  func testTheSocketClosingTakesTheChargerOfflineAtOnce() {
    let charger = ocppCharger()
    let (number, _) = charger.attach(version: .v201, now: t0)
    charger.receive(#"[2,"h","Heartbeat",{}]"#, now: t0)
    XCTAssertTrue(charger.state(now: t0).online)
    charger.detach(number: number)
    XCTAssertFalse(charger.state(now: t0).online)
  }

  func testAPlatformsProfileBecomesARequestInKilowatts() {
    let profile: JSONValue = [
      "evseId": 1,
      "chargingProfile": [
        "id": 1, "stackLevel": 0, "chargingProfilePurpose": "TxProfile", "chargingProfileKind": "Absolute",
        "chargingSchedule": [
          ["id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [["startPeriod": 0, "setpoint": -80000]]]
        ],
      ],
    ]
    let charger = ocppCharger()
    XCTAssertEqual(
      charger.upstreamCall(id: "u1", action: "SetChargingProfile", payload: profile, now: t0),
      .result(id: "u1", payload: ["status": "Accepted"]))
    XCTAssertEqual(charger.upstreamSetpointKW(now: t0), -80, "the safety filter, not the driver, bounds it")
    charger.clearUpstreamRequest()
    XCTAssertNil(charger.upstreamSetpointKW(now: t0))
    // Anything else needs the charge point, which is not connected.
    guard
      case .error("u2", .genericError, _, _) = charger.upstreamCall(id: "u2", action: "Reset", payload: [:], now: t0)
    else { return XCTFail("a relayed call to an absent charger should fail") }
  }

  func testTheMQTTAdapterNamesWhatIsWrongAndGoesStale() {
    let charger = MQTTCharger(id: "C3", topic: "site/chargers/C3", ratedChargeKW: 19.2, ratedDischargeKW: 9.6)
    XCTAssertEqual(
      charger.ingest(payload: Array("nope".utf8), now: t0), ["site/chargers/C3/state: not a JSON object; ignored"])
    let bad = charger.ingest(payload: Array(#"{"power_kw": "fast", "vehicle": {"battery_kwh": 60}}"#.utf8), now: t0)
    XCTAssertTrue(bad.contains { $0.contains("power_kw must be a number") }, "\(bad)")
    XCTAssertTrue(bad.contains { $0.contains("vehicle.departure") }, "\(bad)")
    XCTAssertFalse(charger.state(now: t0).online, "nothing valid received yet")
    let good = #"""
      {"max_charge_kw": 50, "max_discharge_kw": 5, "power_kw": -3,
       "vehicle": {"id": "V", "battery_kwh": 60, "energy_kwh": 40, "reserve_kwh": 10, "need_kwh": 50,
                   "departure": "2026-11-28T06:30:00Z"}}
      """#
    XCTAssertEqual(charger.ingest(payload: Array(good.utf8), now: t0), [])
    let state = charger.state(now: t0.addingTimeInterval(5))
    XCTAssertTrue(state.online)
    XCTAssertEqual(state.maxChargeKW, 19.2, "never above the rating")
    XCTAssertEqual(state.maxDischargeKW, 5)
    XCTAssertEqual(state.vehicle?.departureNeedKWh, 50)
    XCTAssertEqual(charger.state(now: t0.addingTimeInterval(11)).fault, "no state on site/chargers/C3/state for 11 s")
    // Setpoints go out on the adapter's topic.
    let sent = SentMessages()
    charger.attach { sent.append($0) }
    charger.command(setpointKW: -2.5, now: t0)
    charger.command(setpointKW: -2.55, now: t0.addingTimeInterval(1))
    XCTAssertEqual(sent.all.count, 1, "an unchanged setpoint is not repeated within 10 s")
    XCTAssertEqual(sent.all.first?.topic, "site/chargers/C3/setpoint")
    XCTAssertTrue(String(decoding: sent.all.first?.payload ?? [], as: UTF8.self).contains(#""setpoint_kw":-2.5"#))
  }

  func testTheSimulatedChargerFollowsWithinItsLimitsAndMovesEnergy() {
    let vehicle = VehicleNeeds(
      vehicleID: "V", batteryKWh: 100, energyKWh: 50, reserveKWh: 20, arrivalEnergyKWh: 50, departureNeedKWh: 80,
      departure: t0.addingTimeInterval(3600))
    let charger = SimulatedCharger(
      id: "S", maxChargeKW: 11, maxDischargeKW: 7, efficiency: 1, vehicle: vehicle, now: t0)
    charger.command(setpointKW: -20, now: t0)
    XCTAssertEqual(charger.state(now: t0).measuredKW, -7)
    let later = charger.state(now: t0.addingTimeInterval(3600))
    XCTAssertEqual(later.vehicle?.energyKWh ?? 0, 43, accuracy: 1e-6)
    charger.setOnline(false, fault: "unplugged")
    XCTAssertEqual(charger.state(now: t0).fault, "unplugged")
  }
}

final class SentMessages: @unchecked Sendable {
  private let lock = NSLock()
  private var messages: [MQTTClient.Message] = []
  func append(_ m: MQTTClient.Message) { lock.withLock { messages.append(m) } }
  var all: [MQTTClient.Message] { lock.withLock { messages } }
}

final class ConnectGraceTests: XCTestCase {
  func testAChargerThatNeverConnectsRaisesItsAlarmAfterTheGrace() {
    let t0 = Date(timeIntervalSince1970: 1_795_000_000)
    let charger = OCPPCharger(
      id: "C7", configuration: .init(ratedChargeKW: 15, ratedDischargeKW: 15), logger: Logger(label: "test"), now: t0)
    XCTAssertNil(charger.state(now: t0.addingTimeInterval(60)).fault, "still within the boot grace")
    XCTAssertFalse(charger.state(now: t0.addingTimeInterval(60)).online)
    XCTAssertEqual(
      charger.state(now: t0.addingTimeInterval(121)).fault, "has not connected in the 121 s since the appliance started"
    )
    // Once it has been connected, losing it is a fault at once.
    let (number, _) = charger.attach(version: .v21, now: t0)
    charger.detach(number: number)
    XCTAssertEqual(charger.state(now: t0).fault, "not connected")
  }
}
