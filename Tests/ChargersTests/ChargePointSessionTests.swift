import Foundation
import OCPP
import SiteModel
import Testing

@testable import Chargers

/// The OCPP session's rules, without a network: what a charge point's messages mean for the
/// controller, what it is sent, and when it stops being relied on. Every message this side
/// produces is checked against the edition's official schema.
@Suite struct ChargePointSessionTests {
  let t0 = Date(timeIntervalSince1970: 1_795_000_000)

  func session(_ version: OCPPVersion = .v21) -> ChargePointSession {
    var c = ChargePointSession.Configuration(ratedChargeKW: 15, ratedDischargeKW: 15)
    c.heartbeatSeconds = 10
    c.offlineAfterSeconds = 30
    return ChargePointSession(chargerID: "C1", version: version, configuration: c)
  }

  func schemas(_ version: OCPPVersion) throws -> OCPPSchemas { try OCPPSchemas.shared(version) }

  /// Boot, a transaction and the vehicle's needs: 200 kWh at 80 %, 10 kWh more by 8 h from
  /// now, may go down to 30 %, 15 kW each way. In 2.1 the energy fields say 160 kWh exactly
  /// (40 kWh to full); 2.0.1 has only the rounded state of charge.
  func plugged(_ version: OCPPVersion = .v21, at t: Date? = nil) throws -> ChargePointSession {
    let now = t ?? t0
    var s = session(version)
    s.connect(now: now)
    let boot = s.handleCall(
      action: "BootNotification",
      payload: ["reason": "PowerUp", "chargingStation": ["model": "X", "vendorName": "Y"]], now: now)
    guard case .result(let answer) = boot else { return s }
    #expect(try schemas(version).validate(action: "BootNotification", kind: .response, payload: answer) == [])
    #expect(answer["interval"]?.intValue == 10)
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
        "evTargetEnergyRequest": 10000, "evMaxEnergyRequest": 40000,
      ]
    }
    let payload: JSONValue = ["evseId": 1, "chargingNeeds": .object(needs)]
    #expect(try schemas(version).validate(action: "NotifyEVChargingNeeds", kind: .request, payload: payload) == [])
    #expect(
      s.handleCall(action: "NotifyEVChargingNeeds", payload: payload, now: now) == .result(["status": "Accepted"]))
    return s
  }

  @Test func theVehiclesNeedsBecomeWhatTheControllerSees() throws {
    let s = try plugged()
    let state = s.state(now: t0)
    #expect(state.online)
    #expect(state.maxChargeKW == 15)
    #expect(state.maxDischargeKW == 12, "the vehicle's V2X limit, below the charger's 15 kW")
    let v = try #require(state.vehicle)
    #expect(v.vehicleID == "BUS-7")
    #expect(v.batteryKWh == 200)
    #expect(abs((v.energyKWh) - (160)) <= 1e-9)
    #expect(abs((v.departureNeedKWh) - (170)) <= 1e-9)
    #expect(abs((v.reserveKWh) - (60)) <= 1e-9, "80 % less the 100 kWh it may give")
    #expect(abs((v.departure.timeIntervalSince(t0)) - (8 * 3600)) <= 0.01)
    // On the snapshot's timeline.
    let reading = state.reading(snapshotTime: 1000, now: t0)
    #expect(abs((try #require(reading.vehicle).departureTime) - (1000 + 8 * 3600)) <= 0.01)
  }

  @Test func a201VehicleIsNeverOfferedForDischarge() throws {
    let s = try plugged(.v201)
    #expect(s.state(now: t0).maxDischargeKW == 0)
    #expect(s.state(now: t0).maxChargeKW == 15)
  }

  @Test func a21ChargerIsSentASignedCentralSetpointThatMatchesTheSchema() throws {
    var s = try plugged()
    s.command(setpointKW: -9.5)
    let calls = s.callsDue(now: t0)
    #expect(calls.count == 1)
    let payload = try #require(calls.first?.payload)
    #expect(calls.first?.action == "SetChargingProfile")
    #expect(try schemas(.v21).validate(action: "SetChargingProfile", kind: .request, payload: payload) == [])
    let period = try #require(payload["chargingProfile"]?["chargingSchedule"]?[0]?["chargingSchedulePeriod"]?[0])
    #expect(period["operationMode"] == "CentralSetpoint")
    #expect(period["setpoint"]?.doubleValue == -9500)
    #expect(payload["chargingProfile"]?["transactionId"] == "T-1")
    #expect(payload["chargingProfile"]?["invalidAfterOfflineDuration"] == true)
  }

  @Test func a201ChargerIsSentAChargeLimitNeverADischarge() throws {
    var s = try plugged(.v201)
    for kW in [-15.0, -0.4, 0, 7.3] {
      s.command(setpointKW: kW)
      let calls = s.callsDue(now: t0.addingTimeInterval(1000 * (kW + 20)))
      // Each setpoint comes long after the last one: one profile each, or nothing is checked.
      try #require(calls.count == 1, "expected one SetChargingProfile for \(kW) kW, got \(calls.map(\.action))")
      for call in calls {
        #expect(try schemas(.v201).validate(action: "SetChargingProfile", kind: .request, payload: call.payload) == [])
        let period = try #require(
          call.payload["chargingProfile"]?["chargingSchedule"]?[0]?["chargingSchedulePeriod"]?[0])
        #expect(try #require(period["limit"]?.doubleValue) >= 0)
        #expect(period["setpoint"] == nil)
        #expect(period["operationMode"] == nil)
        s.handleResult(messageID: call.messageID, payload: ["status": "Accepted"], now: t0)
      }
    }
  }

  @Test func smallChangesWaitForTheDeadbandOrTheRefresh() throws {
    var s = try plugged()
    s.command(setpointKW: 5)
    let first = s.callsDue(now: t0)
    #expect(first.count == 1)
    #expect(s.callsDue(now: t0).count == 0, "nothing while the profile waits for its answer")
    s.handleResult(messageID: first[0].messageID, payload: ["status": "Accepted"], now: t0)
    s.command(setpointKW: 5.2)
    #expect(s.callsDue(now: t0.addingTimeInterval(1)).count == 0, "0.2 kW is inside the 0.5 kW deadband")
    s.command(setpointKW: 6)
    #expect(s.callsDue(now: t0.addingTimeInterval(2)).count == 1)
    s.handleResult(messageID: "mge-2", payload: ["status": "Accepted"], now: t0)
    #expect(s.callsDue(now: t0.addingTimeInterval(61)).count == 0)
    #expect(s.callsDue(now: t0.addingTimeInterval(63)).count == 1, "refreshed after 60 s")
  }

  @Test func withNoDeadbandAnUnchangedSetpointStillWaitsForItsRefresh() throws {
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
        #expect(tenth % 10 == 0, "a refresh between control steps")
        sent += 1
        s.handleResult(messageID: call.messageID, payload: ["status": "Accepted"], now: now)
      }
    }
    #expect(sent == 5)
  }

  @Test func aChargerThatRejectsProfilesIsNoLongerReliedOn() throws {
    var s = try plugged()
    for i in 0..<2 {
      s.command(setpointKW: -5 - Double(i))
      let call = try #require(s.callsDue(now: t0.addingTimeInterval(Double(i))).first)
      s.handleResult(messageID: call.messageID, payload: ["status": "Rejected"], now: t0.addingTimeInterval(Double(i)))
    }
    let state = s.state(now: t0.addingTimeInterval(2))
    #expect(!state.online)
    #expect(state.fault?.hasPrefix("rejected 2 charging profiles in a row") == true, "\(state.fault ?? "")")
    _ = s.handleCall(action: "Heartbeat", payload: [:], now: t0.addingTimeInterval(199))
    #expect(s.state(now: t0.addingTimeInterval(200)).online, "relied on again once the fault has aged out")
  }

  @Test func nonsenseReadingsAreRefusedAndRaiseAFault() throws {
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
    #expect(s.measuredKW == 0, "a 150 kW reading on a 15 kW charger is not believed")
    let state = s.state(now: t0)
    #expect(!state.online)
    #expect(state.fault != nil)
  }

  @Test func aChargerThatDoesNotFollowItsSetpointIsNoLongerReliedOn() throws {
    var s = try plugged()
    s.command(setpointKW: -10)
    let call = try #require(s.callsDue(now: t0).first)
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
    #expect(s.state(now: t0 + 10).online, "within the 15 s grace")
    for second in 11...20 {
      _ = s.handleCall(
        action: "TransactionEvent", payload: meter(12000, at: t0 + Double(second)), now: t0 + Double(second))
    }
    let state = s.state(now: t0 + 20)
    #expect(!state.online)
    #expect(state.fault?.hasPrefix("does not follow its setpoint") == true, "\(state.fault ?? "")")
  }

  @Test func aSilentOrDisconnectedChargerIsOffline() throws {
    var s = try plugged()
    #expect(s.state(now: t0.addingTimeInterval(29)).online)
    #expect(s.state(now: t0.addingTimeInterval(31)).fault == "silent for 31 s")
    s.disconnect()
    #expect(!(s.state(now: t0).online))
    #expect(s.callsDue(now: t0).count == 0, "nothing is sent without a connection")
  }

  @Test func aVehicleWhoseNeedsAreUnknownIsLeftToTheChargerNotStopped() throws {
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
    #expect(s.callsDue(now: t0).count == 0, "no profile that would stop a vehicle we know nothing about")
    #expect(s.state(now: t0.addingTimeInterval(5)).online, "its needs may still come")
    let later = s.state(now: t0.addingTimeInterval(11))
    #expect(!later.online)
    #expect(later.fault?.hasPrefix("its vehicle's needs are unknown") == true, "\(later.fault ?? "")")
  }

  @Test func anEndedTransactionLeavesNoVehicle() throws {
    var s = try plugged()
    _ = s.handleCall(action: "TransactionEvent", payload: transaction("Ended", "T-1", seqNo: 2, at: t0), now: t0)
    #expect(s.state(now: t0).vehicle == nil)
    #expect(s.state(now: t0).maxChargeKW == 0)
    s.command(setpointKW: 5)
    #expect(s.callsDue(now: t0).count == 0, "no transaction, no profile")
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

  @Test func aNewVehicleStartsFromWhatItReportsNotThePreviousVehiclesStateOfCharge() throws {
    var s = try plugged()
    _ = s.handleCall(
      action: "TransactionEvent", payload: transaction("Updated", "T-1", seqNo: 1, at: t0, soc: 90), now: t0)
    // 90 % is a whole percent: the true state anywhere in 89.5..90.5 %, so 89.5 % of 200 kWh.
    #expect(abs((try #require(s.state(now: t0).vehicle).energyKWh) - (179)) <= 1e-9)
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
    let v = try #require(s.state(now: t0).vehicle)
    #expect(v.energyKWh < 26, "the new vehicle's 16 % of 156 kWh, not the last one's 90 %: \(v.energyKWh)")
  }

  @Test func aVehicleThatSendsNoNeedsIsManagedOnTheSitesAssumptionChargeOnly() throws {
    var s = session()
    s.connect(now: t0)
    _ = s.handleCall(action: "TransactionEvent", payload: transaction("Started", "T-5", seqNo: 0, at: t0), now: t0)
    let later = t0.addingTimeInterval(12)
    #expect(s.state(now: later).needsUnknown, "flagged, so the site can supply its needs")
    #expect(!(s.state(now: later).online))
    s.assumedNeeds = AssumedNeeds(
      vehicleID: "BUS-2", batteryKWh: 155, reserveKWh: 20, departureNeedKWh: 110,
      departure: t0.addingTimeInterval(5 * 3600), source: "timetable")
    let state = s.state(now: later)
    #expect(state.online)
    #expect(state.maxDischargeKW == 0, "nobody said it may discharge")
    #expect(state.maxChargeKW == 15)
    let v = try #require(state.vehicle)
    #expect(v.vehicleID == "BUS-2")
    #expect(v.energyKWh == 20, "energy unknown: assumed at its reserve, so it charges")
    #expect(v.departure == t0.addingTimeInterval(5 * 3600))
    s.command(setpointKW: 15)
    let calls = s.callsDue(now: later)
    #expect(calls.map(\.action) == ["SetChargingProfile"], "managed: it is sent its charging")
    // A state of charge of 47 % reads as 46.5 %: the low end of its rounding.
    _ = s.handleCall(
      action: "TransactionEvent", payload: transaction("Updated", "T-5", seqNo: 1, at: t0, soc: 47), now: later)
    #expect(abs((try #require(s.state(now: later).vehicle).energyKWh) - (155 * 0.465)) <= 1e-9)
    // The vehicle leaves: the assumption goes with it.
    _ = s.handleCall(
      action: "TransactionEvent", payload: transaction("Ended", "T-5", seqNo: 2, at: later), now: later)
    #expect(s.assumedNeeds == nil)
    #expect(s.state(now: later).vehicle == nil)
  }

  // MARK: Energy from the energy fields, or from the conservative end of a rounded SoC

  /// A vehicle of `capacityKWh` that truly holds `trueKWh`, as its charger reports it: the
  /// state of charge rounded to a whole percent, as ISO 15118 and OCPP carry it, and (unless
  /// `energyFields` is false, or in 2.0.1, which has none) the 2.1 energy fields in Wh: to
  /// full, to its target (`targetKWh`), to its minimum (`minimumKWh`).
  func reporting(
    _ version: OCPPVersion = .v21, capacityKWh: Double = 100, trueKWh: Double, targetKWh: Double,
    minimumKWh: Double, energyFields: Bool = true, toFullKWh: Double? = nil
  ) throws -> ChargePointSession {
    var s = session(version)
    s.connect(now: t0)
    _ = s.handleCall(action: "TransactionEvent", payload: transaction("Started", "T-1", seqNo: 0, at: t0), now: t0)
    var needs: [String: JSONValue] = [
      "requestedEnergyTransfer": version == .v21 ? "DC_BPT" : "DC",
      "departureTime": .string(OCPPTime.format(t0.addingTimeInterval(8 * 3600))),
      "dcChargingParameters": [
        "evMaxCurrent": 40, "evMaxVoltage": 400, "evMaxPower": 15000,
        "energyAmount": .number(((targetKWh - trueKWh) * 1000).rounded()),
        "stateOfCharge": .number((trueKWh / capacityKWh * 100).rounded()),
        "evEnergyCapacity": .number(capacityKWh * 1000),
      ],
    ]
    if version == .v21 {
      var v2x: [String: JSONValue] = ["maxChargePower": 15000, "maxDischargePower": 12000]
      if energyFields {
        v2x["evMaxEnergyRequest"] = .number((((toFullKWh ?? capacityKWh - trueKWh)) * 1000).rounded())
      }
      v2x["evTargetEnergyRequest"] = .number(((targetKWh - trueKWh) * 1000).rounded())
      v2x["evMinEnergyRequest"] = .number(((minimumKWh - trueKWh) * 1000).rounded())
      needs["v2xChargingParameters"] = .object(v2x)
    }
    let payload: JSONValue = ["evseId": 1, "chargingNeeds": .object(needs)]
    #expect(try schemas(version).validate(action: "NotifyEVChargingNeeds", kind: .request, payload: payload) == [])
    #expect(s.handleCall(action: "NotifyEVChargingNeeds", payload: payload, now: t0) == .result(["status": "Accepted"]))
    return s
  }

  @Test func theEnergyFieldsAreUsedWhereTheChargerSendsThem() throws {
    // 65.06 kWh of 100 reports a state of charge of 65: read from the SoC, 65.0 kWh.
    let s = try reporting(trueKWh: 65.06, targetKWh: 85.06, minimumKWh: 20)
    let v = try #require(s.state(now: t0).vehicle)
    #expect(
      abs(v.energyKWh - 65.06) < 0.001, "the capacity less the energy to full, not 65 % of 100 kWh: \(v.energyKWh)")
    #expect(abs(v.departureNeedKWh - 85.06) < 0.001, "65.06 kWh + the 20 kWh it asks for: \(v.departureNeedKWh)")
    #expect(abs(v.reserveKWh - 20) < 0.001, "65.06 kWh less the 45.06 kWh it may give: \(v.reserveKWh)")
    #expect(abs(v.arrivalEnergyKWh - 65.06) < 0.001)
    #expect(s.state(now: t0).maxDischargeKW == 12, "its energy is known: it may discharge")
  }

  @Test(arguments: [64.5, 64.8, 65.06, 65.2, 65.49, 53.91])
  func withOnlyARoundedStateOfChargeThePlanIsAtItsConservativeEnd(trueKWh: Double) throws {
    // Every true energy that reports as the same whole percent gets the same plan, and that
    // plan holds for the worst of them: never more energy than there could be, never less
    // need, never more to give than the vehicle allows.
    let needKWh = 20.0
    let givesKWh = 45.0
    for version in OCPPVersion.allCases {
      let s = try reporting(
        version, trueKWh: trueKWh, targetKWh: trueKWh + needKWh, minimumKWh: trueKWh - givesKWh, energyFields: false)
      let v = try #require(s.state(now: t0).vehicle)
      let soc = (trueKWh).rounded()
      #expect(v.energyKWh <= trueKWh + 1e-9, "\(version): believes \(v.energyKWh) kWh, the truth is \(trueKWh)")
      #expect(abs(v.energyKWh - (soc - 0.5)) < 1e-9, "\(version): the low end of \(soc) %: \(v.energyKWh)")
      #expect(
        v.departureNeedKWh >= trueKWh + needKWh - 1e-9,
        "\(version): plans to leave with \(v.departureNeedKWh) kWh, the vehicle needs \(trueKWh + needKWh)")
      #expect(abs(v.departureNeedKWh - (soc + 0.5 + needKWh)) < 1e-9, "\(version): the high end: \(v.departureNeedKWh)")
      if version == .v21 {
        #expect(
          v.energyKWh - v.reserveKWh <= givesKWh + 1e-9,
          "\(version): would take \(v.energyKWh - v.reserveKWh) kWh, the vehicle gives \(givesKWh)")
        #expect(v.reserveKWh >= trueKWh - givesKWh - 1e-9)
      }
    }
  }

  @Test func energyFieldsThatContradictTheStateOfChargeAreNotBelieved() throws {
    // 25 kWh "to full" of 100 says 75 kWh, but 65 % cannot be 75 kWh (its full may be a
    // maximum state of charge below 100 %): the state of charge's low end, 64.5 kWh.
    let s = try reporting(trueKWh: 65.06, targetKWh: 85.06, minimumKWh: 20, toFullKWh: 25)
    let v = try #require(s.state(now: t0).vehicle)
    #expect(abs(v.energyKWh - 64.5) < 1e-9, "\(v.energyKWh)")
    #expect(v.departureNeedKWh >= 85.06, "\(v.departureNeedKWh)")
  }

  @Test func aWholePercentMeterValueCountsAtTheLowEndOfItsRounding() throws {
    var s = try reporting(trueKWh: 65.06, targetKWh: 85.06, minimumKWh: 20)
    _ = s.handleCall(
      action: "TransactionEvent", payload: transaction("Updated", "T-1", seqNo: 1, at: t0, soc: 66), now: t0)
    #expect(abs((try #require(s.state(now: t0).vehicle).energyKWh) - 65.5) < 1e-9, "66 % is 65.5..66.5 %")
    _ = s.handleCall(
      action: "TransactionEvent", payload: transaction("Updated", "T-1", seqNo: 2, at: t0, soc: 66.3), now: t0)
    #expect(abs((try #require(s.state(now: t0).vehicle).energyKWh) - 66.3) < 1e-9, "66.3 % is not rounded to a percent")
    _ = s.handleCall(
      action: "MeterValues",
      payload: [
        "evseId": 1,
        "meterValue": [
          ["timestamp": .string(OCPPTime.format(t0)), "sampledValue": [["value": 0, "measurand": "SoC"]]]
        ],
      ], now: t0)
    #expect((try #require(s.state(now: t0).vehicle).energyKWh) == 0, "0 % is never below empty")
  }

  @Test func answersToTheChargePointMatchTheirSchemas() throws {
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
          Issue.record("\(action) should be answered")
          return
        }
        #expect(try schemas(version).validate(action: action, kind: .response, payload: answer) == [], "\(action)")
      }
      #expect(
        s.handleCall(action: "Bogus", payload: [:], now: t0)
          == .error(.notImplemented, "Bogus is not handled by this controller"))
    }
  }
}
