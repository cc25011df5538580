import Foundation
import OCPP
import SiteModel
import XCTest

@testable import Chargers

/// The OCPP session's rules, without a network: what a charge point's messages mean for the
/// controller, what it is sent, and when it stops being relied on. Every message this side
/// produces is checked against the edition's official schema.
final class ChargePointSessionTests: XCTestCase {
  let t0 = Date(timeIntervalSince1970: 1_795_000_000)

  func session(_ version: OCPPVersion = .v21) -> ChargePointSession {
    var c = ChargePointSession.Configuration(ratedChargeKW: 15, ratedDischargeKW: 15)
    c.heartbeatSeconds = 10
    c.offlineAfterSeconds = 30
    return ChargePointSession(chargerID: "C1", version: version, configuration: c)
  }

  func schemas(_ version: OCPPVersion) throws -> OCPPSchemas { try OCPPSchemas.shared(version) }

  /// Boot, a transaction and the vehicle's needs: 200 kWh at 80 %, 10 kWh more by 8 h from
  /// now, may go down to 30 %, 15 kW each way.
  func plugged(_ version: OCPPVersion = .v21, at t: Date? = nil) throws -> ChargePointSession {
    let now = t ?? t0
    var s = session(version)
    s.connect(now: now)
    let boot = s.handleCall(
      action: "BootNotification",
      payload: ["reason": "PowerUp", "chargingStation": ["model": "X", "vendorName": "Y"]], now: now)
    guard case .result(let answer) = boot else { return s }
    XCTAssertEqual(try schemas(version).validate(action: "BootNotification", kind: .response, payload: answer), [])
    XCTAssertEqual(answer["interval"]?.intValue, 10)
    _ = s.handleCall(
      action: "TransactionEvent",
      payload: [
        "eventType": "Started", "timestamp": .string(OCPPTime.format(now)), "triggerReason": "CablePluggedIn",
        "seqNo": 0, "transactionInfo": ["transactionId": "T-1"], "evse": ["id": 1, "connectorId": 1],
        "idToken": ["idToken": "BUS-7", "type": "Local"],
      ], now: now)
    var needs: [String: JSONValue] = [
      "requestedEnergyTransfer": version == .v21 ? "DC_BPT" : "DC",
      "departureTime": .string(OCPPTime.format(now.addingTimeInterval(8 * 3600))),
      "dcChargingParameters": [
        "evMaxCurrent": 40, "evMaxVoltage": 400, "evMaxPower": 15000, "energyAmount": 10000, "stateOfCharge": 80,
        "evEnergyCapacity": 200_000,
      ],
    ]
    if version == .v21 {
      needs["v2xChargingParameters"] = [
        "maxChargePower": 15000, "maxDischargePower": 12000, "evMinEnergyRequest": -100_000,
        "evTargetEnergyRequest": 10000,
      ]
    }
    let payload: JSONValue = ["evseId": 1, "chargingNeeds": .object(needs)]
    XCTAssertEqual(try schemas(version).validate(action: "NotifyEVChargingNeeds", kind: .request, payload: payload), [])
    XCTAssertEqual(
      s.handleCall(action: "NotifyEVChargingNeeds", payload: payload, now: now), .result(["status": "Accepted"]))
    return s
  }

  func testTheVehiclesNeedsBecomeWhatTheControllerSees() throws {
    let s = try plugged()
    let state = s.state(now: t0)
    XCTAssertTrue(state.online)
    XCTAssertEqual(state.maxChargeKW, 15)
    XCTAssertEqual(state.maxDischargeKW, 12, "the vehicle's V2X limit, below the charger's 15 kW")
    let v = try XCTUnwrap(state.vehicle)
    XCTAssertEqual(v.vehicleID, "BUS-7")
    XCTAssertEqual(v.batteryKWh, 200)
    XCTAssertEqual(v.energyKWh, 160, accuracy: 1e-9)
    XCTAssertEqual(v.departureNeedKWh, 170, accuracy: 1e-9)
    XCTAssertEqual(v.reserveKWh, 60, accuracy: 1e-9, "80 % less the 100 kWh it may give")
    XCTAssertEqual(v.departure.timeIntervalSince(t0), 8 * 3600, accuracy: 0.01)
    // On the snapshot's timeline.
    let reading = state.reading(snapshotTime: 1000, now: t0)
    XCTAssertEqual(try XCTUnwrap(reading.vehicle).departureTime, 1000 + 8 * 3600, accuracy: 0.01)
  }

  func testA201VehicleIsNeverOfferedForDischarge() throws {
    let s = try plugged(.v201)
    XCTAssertEqual(s.state(now: t0).maxDischargeKW, 0)
    XCTAssertEqual(s.state(now: t0).maxChargeKW, 15)
  }

  func testA21ChargerIsSentASignedCentralSetpointThatMatchesTheSchema() throws {
    var s = try plugged()
    s.command(setpointKW: -9.5)
    let calls = s.callsDue(now: t0)
    XCTAssertEqual(calls.count, 1)
    let payload = try XCTUnwrap(calls.first?.payload)
    XCTAssertEqual(calls.first?.action, "SetChargingProfile")
    XCTAssertEqual(try schemas(.v21).validate(action: "SetChargingProfile", kind: .request, payload: payload), [])
    let period = try XCTUnwrap(payload["chargingProfile"]?["chargingSchedule"]?[0]?["chargingSchedulePeriod"]?[0])
    XCTAssertEqual(period["operationMode"], "CentralSetpoint")
    XCTAssertEqual(period["setpoint"]?.doubleValue, -9500)
    XCTAssertEqual(payload["chargingProfile"]?["transactionId"], "T-1")
    XCTAssertEqual(payload["chargingProfile"]?["invalidAfterOfflineDuration"], true)
  }

  func testA201ChargerIsSentAChargeLimitNeverADischarge() throws {
    var s = try plugged(.v201)
    for kW in [-15.0, -0.4, 0, 7.3] {
      s.command(setpointKW: kW)
      let calls = s.callsDue(now: t0.addingTimeInterval(1000 * (kW + 20)))
      for call in calls {
        XCTAssertEqual(
          try schemas(.v201).validate(action: "SetChargingProfile", kind: .request, payload: call.payload), [])
        let period = try XCTUnwrap(
          call.payload["chargingProfile"]?["chargingSchedule"]?[0]?["chargingSchedulePeriod"]?[0])
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(period["limit"]?.doubleValue), 0)
        XCTAssertNil(period["setpoint"])
        XCTAssertNil(period["operationMode"])
        s.handleResult(messageID: call.messageID, payload: ["status": "Accepted"], now: t0)
      }
    }
  }

  func testSmallChangesWaitForTheDeadbandOrTheRefresh() throws {
    var s = try plugged()
    s.command(setpointKW: 5)
    let first = s.callsDue(now: t0)
    XCTAssertEqual(first.count, 1)
    XCTAssertEqual(s.callsDue(now: t0).count, 0, "nothing while the profile waits for its answer")
    s.handleResult(messageID: first[0].messageID, payload: ["status": "Accepted"], now: t0)
    s.command(setpointKW: 5.2)
    XCTAssertEqual(s.callsDue(now: t0.addingTimeInterval(1)).count, 0, "0.2 kW is inside the 0.5 kW deadband")
    s.command(setpointKW: 6)
    XCTAssertEqual(s.callsDue(now: t0.addingTimeInterval(2)).count, 1)
    s.handleResult(messageID: "mge-2", payload: ["status": "Accepted"], now: t0)
    XCTAssertEqual(s.callsDue(now: t0.addingTimeInterval(61)).count, 0)
    XCTAssertEqual(s.callsDue(now: t0.addingTimeInterval(63)).count, 1, "refreshed after 60 s")
  }

  func testWithNoDeadbandAnUnchangedSetpointStillWaitsForItsRefresh() throws {
    var c = ChargePointSession.Configuration(ratedChargeKW: 15, ratedDischargeKW: 15)
    c.setpointDeadbandKW = 0
    c.setpointRefreshSeconds = 1
    var s = ChargePointSession(chargerID: "C1", version: .v21, configuration: c)
    s.connect(now: t0)
    _ = s.handleCall(
      action: "TransactionEvent",
      payload: [
        "eventType": "Started", "timestamp": .string(OCPPTime.format(t0)), "triggerReason": "CablePluggedIn",
        "seqNo": 0, "transactionInfo": ["transactionId": "T-1"],
      ], now: t0)
    _ = s.handleCall(
      action: "NotifyEVChargingNeeds",
      payload: ["evseId": 1, "chargingNeeds": ["requestedEnergyTransfer": "DC_BPT"]], now: t0)
    s.command(setpointKW: -3)
    var sent = 0
    // Messages from the charger at 10 Hz, control steps at 1 Hz, for 5 s: one profile a
    // second, on the control steps.
    for tenth in 0..<50 {
      let now = t0.addingTimeInterval(Double(tenth) / 10)
      for call in s.callsDue(now: now, refresh: tenth % 10 == 0) {
        XCTAssertEqual(tenth % 10, 0, "a refresh between control steps")
        sent += 1
        s.handleResult(messageID: call.messageID, payload: ["status": "Accepted"], now: now)
      }
    }
    XCTAssertEqual(sent, 5)
  }

  func testAChargerThatRejectsProfilesIsNoLongerReliedOn() throws {
    var s = try plugged()
    for i in 0..<2 {
      s.command(setpointKW: -5 - Double(i))
      let call = try XCTUnwrap(s.callsDue(now: t0.addingTimeInterval(Double(i))).first)
      s.handleResult(messageID: call.messageID, payload: ["status": "Rejected"], now: t0.addingTimeInterval(Double(i)))
    }
    let state = s.state(now: t0.addingTimeInterval(2))
    XCTAssertFalse(state.online)
    XCTAssertEqual(state.fault?.hasPrefix("rejected 2 charging profiles in a row"), true, state.fault ?? "")
    _ = s.handleCall(action: "Heartbeat", payload: [:], now: t0.addingTimeInterval(199))
    XCTAssertTrue(s.state(now: t0.addingTimeInterval(200)).online, "relied on again once the fault has aged out")
  }

  func testNonsenseReadingsAreRefusedAndRaiseAFault() throws {
    var s = try plugged()
    let meter: JSONValue = [
      "eventType": "Updated", "timestamp": .string(OCPPTime.format(t0)), "triggerReason": "MeterValuePeriodic",
      "seqNo": 1, "transactionInfo": ["transactionId": "T-1"],
      "meterValue": [
        [
          "timestamp": .string(OCPPTime.format(t0)),
          "sampledValue": [
            ["value": 250, "measurand": "SoC"], ["value": 150_000, "measurand": "Power.Active.Import"],
          ],
        ]
      ],
    ]
    _ = s.handleCall(action: "TransactionEvent", payload: meter, now: t0)
    XCTAssertEqual(s.measuredKW, 0, "a 150 kW reading on a 15 kW charger is not believed")
    let state = s.state(now: t0)
    XCTAssertFalse(state.online)
    XCTAssertNotNil(state.fault)
  }

  func testAChargerThatDoesNotFollowItsSetpointIsNoLongerReliedOn() throws {
    var s = try plugged()
    s.command(setpointKW: -10)
    let call = try XCTUnwrap(s.callsDue(now: t0).first)
    s.handleResult(messageID: call.messageID, payload: ["status": "Accepted"], now: t0)
    func meter(_ watts: Double, at t: Date) -> JSONValue {
      [
        "eventType": "Updated", "timestamp": .string(OCPPTime.format(t)), "triggerReason": "MeterValuePeriodic",
        "seqNo": 1, "transactionInfo": ["transactionId": "T-1"],
        "meterValue": [
          [
            "timestamp": .string(OCPPTime.format(t)),
            "sampledValue": [["value": .number(watts), "measurand": "Power.Active.Import"]],
          ]
        ],
      ]
    }
    for second in 3...10 {
      _ = s.handleCall(
        action: "TransactionEvent", payload: meter(12000, at: t0 + Double(second)), now: t0 + Double(second))
    }
    XCTAssertTrue(s.state(now: t0 + 10).online, "within the 15 s grace")
    for second in 11...20 {
      _ = s.handleCall(
        action: "TransactionEvent", payload: meter(12000, at: t0 + Double(second)), now: t0 + Double(second))
    }
    let state = s.state(now: t0 + 20)
    XCTAssertFalse(state.online)
    XCTAssertEqual(state.fault?.hasPrefix("does not follow its setpoint"), true, state.fault ?? "")
  }

  func testASilentOrDisconnectedChargerIsOffline() throws {
    var s = try plugged()
    XCTAssertTrue(s.state(now: t0.addingTimeInterval(29)).online)
    XCTAssertEqual(s.state(now: t0.addingTimeInterval(31)).fault, "silent for 31 s")
    s.disconnect()
    XCTAssertFalse(s.state(now: t0).online)
    XCTAssertEqual(s.callsDue(now: t0).count, 0, "nothing is sent without a connection")
  }

  func testAVehicleWhoseNeedsAreUnknownIsLeftToTheChargerNotStopped() throws {
    // The appliance restarted under a running transaction: the charger reconnects and
    // goes on metering, but its vehicle's needs were sent to the appliance before.
    var s = session()
    s.connect(now: t0)
    _ = s.handleCall(
      action: "TransactionEvent",
      payload: [
        "eventType": "Updated", "timestamp": .string(OCPPTime.format(t0)), "triggerReason": "MeterValuePeriodic",
        "seqNo": 7, "transactionInfo": ["transactionId": "T-9"],
      ], now: t0)
    s.command(setpointKW: 0)
    XCTAssertEqual(s.callsDue(now: t0).count, 0, "no profile that would stop a vehicle we know nothing about")
    XCTAssertTrue(s.state(now: t0.addingTimeInterval(5)).online, "its needs may still come")
    let later = s.state(now: t0.addingTimeInterval(11))
    XCTAssertFalse(later.online)
    XCTAssertEqual(later.fault?.hasPrefix("its vehicle's needs are unknown"), true, later.fault ?? "")
  }

  func testAnEndedTransactionLeavesNoVehicle() throws {
    var s = try plugged()
    _ = s.handleCall(action: "TransactionEvent", payload: transaction("Ended", "T-1", seqNo: 2, at: t0), now: t0)
    XCTAssertNil(s.state(now: t0).vehicle)
    XCTAssertEqual(s.state(now: t0).maxChargeKW, 0)
    s.command(setpointKW: 5)
    XCTAssertEqual(s.callsDue(now: t0).count, 0, "no transaction, no profile")
  }

  /// A TransactionEvent from the charge point: `Started` (cable plugged in, on EVSE 1),
  /// `Updated` (periodic, with a state of charge when `soc` is given) or `Ended` (the EV left).
  func transaction(_ eventType: String, _ id: String, seqNo: Int, at t: Date, soc: Double? = nil) -> JSONValue {
    let trigger = ["Started": "CablePluggedIn", "Updated": "MeterValuePeriodic", "Ended": "EVDeparted"][eventType]!
    var payload: [String: JSONValue] = [
      "eventType": .string(eventType), "timestamp": .string(OCPPTime.format(t)), "triggerReason": .string(trigger),
      "seqNo": .number(Double(seqNo)), "transactionInfo": ["transactionId": .string(id)],
    ]
    if eventType == "Started" { payload["evse"] = ["id": 1, "connectorId": 1] }
    if let soc {
      payload["meterValue"] = [
        ["timestamp": .string(OCPPTime.format(t)), "sampledValue": [["value": .number(soc), "measurand": "SoC"]]]
      ]
    }
    return .object(payload)
  }

  func testANewVehicleStartsFromWhatItReportsNotThePreviousVehiclesStateOfCharge() throws {
    var s = try plugged()
    _ = s.handleCall(
      action: "TransactionEvent", payload: transaction("Updated", "T-1", seqNo: 1, at: t0, soc: 90), now: t0)
    XCTAssertEqual(try XCTUnwrap(s.state(now: t0).vehicle).energyKWh, 180, accuracy: 1e-9)
    _ = s.handleCall(action: "TransactionEvent", payload: transaction("Ended", "T-1", seqNo: 2, at: t0), now: t0)
    // The next vehicle: a new transaction and its needs at 16 %, no SoC meter value yet.
    _ = s.handleCall(action: "TransactionEvent", payload: transaction("Started", "T-2", seqNo: 3, at: t0), now: t0)
    let needs: JSONValue = [
      "evseId": 1,
      "chargingNeeds": [
        "requestedEnergyTransfer": "DC_BPT", "departureTime": .string(OCPPTime.format(t0.addingTimeInterval(3600))),
        "dcChargingParameters": [
          "evMaxCurrent": 40, "evMaxVoltage": 400, "stateOfCharge": 16, "evEnergyCapacity": 156_000,
          "energyAmount": 50_000,
        ],
      ],
    ]
    _ = s.handleCall(action: "NotifyEVChargingNeeds", payload: needs, now: t0)
    let v = try XCTUnwrap(s.state(now: t0).vehicle)
    XCTAssertLessThan(v.energyKWh, 26, "the new vehicle's 16 % of 156 kWh, not the last one's 90 %: \(v.energyKWh)")
  }

  func testAVehicleThatSendsNoNeedsIsManagedOnTheSitesAssumptionChargeOnly() throws {
    var s = session()
    s.connect(now: t0)
    _ = s.handleCall(action: "TransactionEvent", payload: transaction("Started", "T-5", seqNo: 0, at: t0), now: t0)
    let later = t0.addingTimeInterval(12)
    XCTAssertTrue(s.state(now: later).needsUnknown, "flagged, so the site can supply its needs")
    XCTAssertFalse(s.state(now: later).online)
    s.assumedNeeds = AssumedNeeds(
      vehicleID: "BUS-2", batteryKWh: 155, reserveKWh: 20, departureNeedKWh: 110,
      departure: t0.addingTimeInterval(5 * 3600), source: "timetable")
    let state = s.state(now: later)
    XCTAssertTrue(state.online)
    XCTAssertEqual(state.maxDischargeKW, 0, "nobody said it may discharge")
    XCTAssertEqual(state.maxChargeKW, 15)
    let v = try XCTUnwrap(state.vehicle)
    XCTAssertEqual(v.vehicleID, "BUS-2")
    XCTAssertEqual(v.energyKWh, 20, "energy unknown: assumed at its reserve, so it charges")
    XCTAssertEqual(v.departure, t0.addingTimeInterval(5 * 3600))
    s.command(setpointKW: 15)
    let calls = s.callsDue(now: later)
    XCTAssertEqual(calls.map(\.action), ["SetChargingProfile"], "managed: it is sent its charging")
    // A state of charge of 47 % reads as 46.5 %: the low end of its rounding.
    _ = s.handleCall(
      action: "TransactionEvent", payload: transaction("Updated", "T-5", seqNo: 1, at: t0, soc: 47), now: later)
    XCTAssertEqual(try XCTUnwrap(s.state(now: later).vehicle).energyKWh, 155 * 0.465, accuracy: 1e-9)
    // The vehicle leaves: the assumption goes with it.
    _ = s.handleCall(
      action: "TransactionEvent", payload: transaction("Ended", "T-5", seqNo: 2, at: later), now: later)
    XCTAssertNil(s.assumedNeeds)
    XCTAssertNil(s.state(now: later).vehicle)
  }

  func testAnswersToTheChargePointMatchTheirSchemas() throws {
    for version in OCPPVersion.allCases {
      var s = session(version)
      s.connect(now: t0)
      let calls: [(String, JSONValue)] = [
        ("Heartbeat", [:]),
        (
          "StatusNotification",
          ["timestamp": .string(OCPPTime.format(t0)), "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1]
        ),
        ("Authorize", ["idToken": ["idToken": "X", "type": "Local"]]),
        ("DataTransfer", ["vendorId": "acme"]),
      ]
      for (action, payload) in calls {
        guard case .result(let answer) = s.handleCall(action: action, payload: payload, now: t0) else {
          return XCTFail("\(action) should be answered")
        }
        XCTAssertEqual(try schemas(version).validate(action: action, kind: .response, payload: answer), [], action)
      }
      XCTAssertEqual(
        s.handleCall(action: "Bogus", payload: [:], now: t0),
        .error(.notImplemented, "Bogus is not handled by this controller"))
    }
  }
}
