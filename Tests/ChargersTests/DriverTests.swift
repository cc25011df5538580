import Foundation
import Logging
import MQTT
import OCPP
import SiteModel
import Synchronization
import Testing

@testable import Chargers

/// The drivers behind the one `Charger` interface: OCPP's frame handling, the MQTT
/// adapter's input checks, the simulated charger's physics.
@Suite struct DriverTests {
  let t0 = Date(timeIntervalSince1970: 1_795_000_000)

  func ocppCharger() -> OCPPCharger {
    OCPPCharger(
      id: "C1", configuration: .init(ratedChargeKW: 15, ratedDischargeKW: 15), logger: Logger(label: "test"))
  }

  /// Collects what the driver sends on its connection: `count` frames, or, when fewer come
  /// within `seconds`, a failed test that says how many did (never a test that hangs).
  func drain(
    _ stream: AsyncStream<String>, count: Int, seconds: Double = 5, sourceLocation: SourceLocation = #_sourceLocation
  ) async throws -> [OCPPFrame] {
    let received = Received()
    let complete = await withTaskGroup(of: Bool.self) { group in
      group.addTask {
        for await text in stream {
          if received.texts.withLock({
            $0.append(text); return $0.count
          }) == count {
            return true
          }
        }
        return false  // the stream ended
      }
      group.addTask {
        try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
        return false
      }
      let first = await group.next() ?? false
      group.cancelAll()
      return first
    }
    let texts = received.texts.withLock { $0 }
    try #require(
      complete,
      "expected \(count) frames from the driver within \(seconds) s, got \(texts.count): \(texts)",
      sourceLocation: sourceLocation)
    return try texts.map { try OCPPFrame.parse($0) }
  }

  @Test func anInvalidCallGetsACallErrorNamingTheFieldAndTheChargerCarriesOn() async throws {
    let charger = ocppCharger()
    let (_, outgoing) = charger.attach(version: .v21, now: t0)
    charger.receive(#"[2,"a1","NotifyEVChargingNeeds",{"evseId":1}]"#, now: t0)
    charger.receive(
      #"[2,"a2","BootNotification",{"reason":"PowerUp","chargingStation":{"model":"m","vendorName":"v"}}]"#, now: t0)
    charger.receive(#"[2,"a3","Heartbeat",{"extra":true}]"#, now: t0)
    charger.receive("this is not json", now: t0)
    charger.receive(#"[2,"a4","MadeUpAction",{}]"#, now: t0)
    let frames = try await drain(outgoing, count: 4)
    guard case .error("a1", .occurrenceConstraintViolation, let why, _) = frames[0] else {
      Issue.record("expected a CALLERROR for a1, got \(frames[0])")
      return
    }
    #expect(why.contains("chargingNeeds"), "\(why)")
    guard case .result("a2", let boot) = frames[1] else {
      Issue.record("\(frames[1])")
      return
    }
    #expect(boot["status"] == "Accepted")
    guard case .error("a3", .propertyConstraintViolation, let extra, _) = frames[2] else {
      Issue.record("\(frames[2])")
      return
    }
    #expect(extra.contains("extra"), "\(extra)")
    // Unreadable text has no message id to answer; a made-up action is not implemented.
    guard case .error("a4", .notImplemented, _, _) = frames[3] else {
      Issue.record("\(frames[3])")
      return
    }
    #expect(charger.state(now: t0).online, "a charger is not dropped for one bad message")
  }

  @Test func aSetpointGoesOutOnTheConnectionAndItsAnswerIsTaken() async throws {
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
    let frames = try await drain(outgoing, count: 4)
    guard case .call(let id, "SetChargingProfile", let payload) = frames[3] else {
      Issue.record("\(frames[3])")
      return
    }
    #expect(payload["chargingProfile"]?["chargingSchedule"]?[0]?["chargingSchedulePeriod"]?[0]?["setpoint"] == -4000)
    charger.receive(OCPPFrame.result(id: id, payload: ["status": "Accepted"]).text, now: t0)
    #expect(charger.session?.acceptedKW == -4)
    // An answer that breaks its schema counts as a refusal.
    charger.command(setpointKW: -8, now: t0)
    charger.receive(OCPPFrame.result(id: "mge-2", payload: ["status": "Maybe"]).text, now: t0)
    #expect(charger.session?.acceptedKW == nil)
  }

  @Test func theSocketClosingTakesTheChargerOfflineAtOnce() {
    let charger = ocppCharger()
    let (number, _) = charger.attach(version: .v201, now: t0)
    charger.receive(#"[2,"h","Heartbeat",{}]"#, now: t0)
    #expect(charger.state(now: t0).online)
    charger.detach(number: number)
    #expect(!(charger.state(now: t0).online))
  }

  @Test func aPlatformsProfileBecomesARequestInKilowatts() {
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
    #expect(
      charger.upstreamCall(id: "u1", action: "SetChargingProfile", payload: profile, now: t0)
        == .result(id: "u1", payload: ["status": "Accepted"]))
    #expect(charger.upstreamSetpointKW(now: t0) == -80, "the safety filter, not the driver, bounds it")
    charger.clearUpstreamRequest()
    #expect(charger.upstreamSetpointKW(now: t0) == nil)
    // Anything else needs the charge point, which is not connected.
    guard
      case .error("u2", .genericError, _, _) = charger.upstreamCall(id: "u2", action: "Reset", payload: [:], now: t0)
    else {
      Issue.record("a relayed call to an absent charger should fail")
      return
    }
  }

  @Test func theMQTTAdapterNamesWhatIsWrongAndGoesStale() {
    let charger = MQTTCharger(id: "C3", topic: "site/chargers/C3", ratedChargeKW: 19.2, ratedDischargeKW: 9.6)
    #expect(
      charger.ingest(payload: Array("nope".utf8), now: t0) == ["site/chargers/C3/state: not a JSON object; ignored"])
    let bad = charger.ingest(payload: Array(#"{"power_kw": "fast", "vehicle": {"battery_kwh": 60}}"#.utf8), now: t0)
    #expect(bad.contains { $0.contains("power_kw must be a number") }, "\(bad)")
    #expect(bad.contains { $0.contains("vehicle.departure") }, "\(bad)")
    #expect(!(charger.state(now: t0).online), "nothing valid received yet")
    let good = #"""
      {"max_charge_kw": 50, "max_discharge_kw": 5, "power_kw": -3,
       "vehicle": {"id": "V", "battery_kwh": 60, "energy_kwh": 40, "reserve_kwh": 10, "need_kwh": 50,
                   "departure": "2026-11-28T06:30:00Z"}}
      """#
    #expect(charger.ingest(payload: Array(good.utf8), now: t0) == [])
    let state = charger.state(now: t0.addingTimeInterval(5))
    #expect(state.online)
    #expect(state.maxChargeKW == 19.2, "never above the rating")
    #expect(state.maxDischargeKW == 5)
    #expect(state.vehicle?.departureNeedKWh == 50)
    #expect(charger.state(now: t0.addingTimeInterval(11)).fault == "no state on site/chargers/C3/state for 11 s")
    // Setpoints go out on the adapter's topic.
    let sent = SentMessages()
    charger.attach { sent.append($0) }
    charger.command(setpointKW: -2.5, now: t0)
    charger.command(setpointKW: -2.55, now: t0.addingTimeInterval(1))
    #expect(sent.all.count == 1, "an unchanged setpoint is not repeated within 10 s")
    #expect(sent.all.first?.topic == "site/chargers/C3/setpoint")
    let text = String(decoding: sent.all.first?.payload ?? [], as: UTF8.self)
    #expect(text.contains(#""setpoint_kw":-2.5"#), "\(text)")
  }

  @Test func theSimulatedChargerFollowsWithinItsLimitsAndMovesEnergy() {
    let vehicle = VehicleNeeds(
      vehicleID: "V", batteryKWh: 100, energyKWh: 50, reserveKWh: 20, arrivalEnergyKWh: 50, departureNeedKWh: 80,
      departure: t0.addingTimeInterval(3600))
    let charger = SimulatedCharger(
      id: "S", maxChargeKW: 11, maxDischargeKW: 7, efficiency: 1, vehicle: vehicle, now: t0)
    charger.command(setpointKW: -20, now: t0)
    #expect(charger.state(now: t0).measuredKW == -7)
    let later = charger.state(now: t0.addingTimeInterval(3600))
    #expect(abs((later.vehicle?.energyKWh ?? 0) - (43)) <= 1e-6)
    charger.setOnline(false, fault: "unplugged")
    #expect(charger.state(now: t0).fault == "unplugged")
  }
}

/// The frames `drain` has seen so far, shared with the task that reads them.
final class Received: Sendable {
  let texts = Mutex<[String]>([])
}

final class SentMessages: @unchecked Sendable {
  private let lock = NSLock()
  private var messages: [MQTTClient.Message] = []
  func append(_ m: MQTTClient.Message) { lock.withLock { messages.append(m) } }
  var all: [MQTTClient.Message] { lock.withLock { messages } }
}

@Suite struct ConnectGraceTests {
  @Test func aChargerThatNeverConnectsRaisesItsAlarmAfterTheGrace() {
    let t0 = Date(timeIntervalSince1970: 1_795_000_000)
    let charger = OCPPCharger(
      id: "C7", configuration: .init(ratedChargeKW: 15, ratedDischargeKW: 15), logger: Logger(label: "test"), now: t0)
    #expect(charger.state(now: t0.addingTimeInterval(60)).fault == nil, "still within the boot grace")
    #expect(!(charger.state(now: t0.addingTimeInterval(60)).online))
    #expect(
      charger.state(now: t0.addingTimeInterval(121)).fault
        == "has not connected in the 121 s since the appliance started")
    // Once it has been connected, losing it is a fault at once.
    let (number, _) = charger.attach(version: .v21, now: t0)
    charger.detach(number: number)
    #expect(charger.state(now: t0).fault == "not connected")
  }
}
