import Foundation
import OCPP
import XCTest

/// The JSON Schema validator, keyword by keyword on small inline schemas, then on the
/// official OCPP 2.0.1 and 2.1 schemas with real messages.
final class SchemaKeywordTests: XCTestCase {
  private func schema(_ text: String) throws -> JSONSchema { try JSONSchema(JSONValue.parse(text)) }

  private func violations(_ schemaText: String, _ valueText: String) throws -> [String] {
    try schema(schemaText).validate(JSONValue.parse(valueText)).map(\.description)
  }

  func testTypeNamesTheExpectedAndFoundTypes() throws {
    XCTAssertEqual(try violations(#"{"type": "number"}"#, "2.5"), [])
    XCTAssertEqual(try violations(#"{"type": "number"}"#, #""2.5""#), ["expected number, found string"])
    XCTAssertEqual(try violations(#"{"type": "boolean"}"#, "true"), [])
    XCTAssertEqual(try violations(#"{"type": "boolean"}"#, "1"), ["expected boolean, found integer"])
    XCTAssertEqual(try violations(#"{"type": "object"}"#, "[]"), ["expected object, found array"])
    XCTAssertEqual(try violations(#"{"type": ["string", "null"]}"#, "null"), [])
    XCTAssertEqual(try violations(#"{"type": ["string", "null"]}"#, "{}"), ["expected null or string, found object"])
  }

  func testIntegerIsANumberWithoutFraction() throws {
    XCTAssertEqual(try violations(#"{"type": "integer"}"#, "3"), [])
    XCTAssertEqual(try violations(#"{"type": "integer"}"#, "3.0"), [])
    XCTAssertEqual(try violations(#"{"type": "integer"}"#, "3.5"), ["expected integer, found number"])
  }

  func testRequiredAndPropertiesReportThePath() throws {
    let s = #"""
      {"type": "object", "required": ["evseId"],
       "properties": {"evse": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}}}
      """#
    XCTAssertEqual(try violations(s, #"{"evseId": 1, "evse": {"id": 2}}"#), [])
    XCTAssertEqual(
      try schema(s).validate(JSONValue.parse(#"{"evse": {"id": "2"}}"#)),
      [
        SchemaViolation(path: "", message: #"required property "evseId" is missing"#),
        SchemaViolation(path: "evse.id", message: "expected integer, found string"),
      ])
    XCTAssertEqual(try violations(s, #"{"evseId": 1, "evse": {}}"#), [#"evse: required property "id" is missing"#])
  }

  func testAdditionalPropertiesFalseRejectsUnknownMembers() throws {
    let closed = #"{"type": "object", "additionalProperties": false, "properties": {"a": {}}}"#
    XCTAssertEqual(try violations(closed, #"{"a": 1}"#), [])
    XCTAssertEqual(
      try violations(closed, #"{"a": 1, "zeta": 2, "bogus": 3}"#),
      [#"property "bogus" is not allowed"#, #"property "zeta" is not allowed"#])
    // true or absent: other members pass unchecked (OCPP's CustomDataType is open this way).
    XCTAssertEqual(try violations(#"{"type": "object", "additionalProperties": true}"#, #"{"bogus": 1}"#), [])
    XCTAssertEqual(try violations(#"{"type": "object", "properties": {"a": {}}}"#, #"{"bogus": 1}"#), [])
  }

  func testEnumListsTheAllowedValues() throws {
    let s = #"{"type": "string", "enum": ["Accepted", "Rejected"]}"#
    XCTAssertEqual(try violations(s, #""Rejected""#), [])
    XCTAssertEqual(try violations(s, #""Foo""#), [#""Foo" is not one of Accepted, Rejected"#])
  }

  func testRefResolvesLocalDefinitions() throws {
    let s = #"""
      {"definitions": {"Status": {"type": "string", "enum": ["On", "Off"]}, "Alias": {"$ref": "#/definitions/Status"}},
       "type": "object", "properties": {"status": {"$ref": "#/definitions/Alias"}}}
      """#
    XCTAssertEqual(try violations(s, #"{"status": "On"}"#), [])
    XCTAssertEqual(try violations(s, #"{"status": "Dim"}"#), [#"status: "Dim" is not one of On, Off"#])
  }

  func testBrokenSchemasAreRefusedWhenCompiled() throws {
    XCTAssertThrowsError(try schema(##"{"properties": {"a": {"$ref": "#/definitions/Missing"}}}"##)) {
      XCTAssertEqual("\($0)", ##"properties.a: $ref "#/definitions/Missing" names no definition in this file"##)
    }
    XCTAssertThrowsError(try schema(##"{"definitions": {"A": {"$ref": "#/definitions/A"}}}"##))
    XCTAssertThrowsError(try schema(#"{"type": "float"}"#))
    XCTAssertThrowsError(try schema(#"{"maxLength": "20"}"#))
  }

  func testItemsAndItemCounts() throws {
    let s = #"{"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 3}"#
    XCTAssertEqual(try violations(s, "[1, 2, 3]"), [])
    XCTAssertEqual(try violations(s, "[]"), ["has 0 items, fewer than the minimum 1"])
    XCTAssertEqual(try violations(s, "[1, 2, 3, 4]"), ["has 4 items, more than the maximum 3"])
    XCTAssertEqual(
      try violations(s, #"[1, "2", 0]"#),
      ["[1]: expected integer, found string", "[2]: value 0 is below the minimum 1"])
  }

  func testMinimumAndMaximum() throws {
    let s = #"{"type": "number", "minimum": 1.0, "maximum": 3.0}"#
    XCTAssertEqual(try violations(s, "1"), [])
    XCTAssertEqual(try violations(s, "3"), [])
    XCTAssertEqual(try violations(s, "0"), ["value 0 is below the minimum 1"])
    XCTAssertEqual(try violations(s, "3.5"), ["value 3.5 is above the maximum 3"])
  }

  func testLengthsCountCharactersNotBytes() throws {
    let s = #"{"type": "string", "minLength": 2, "maxLength": 5}"#
    XCTAssertEqual(try violations(s, #""Ämter""#), [])  // 5 characters, 6 bytes
    XCTAssertEqual(try violations(s, #""Zähler""#), ["longer than 5 characters"])
    XCTAssertEqual(try violations(s, #""x""#), ["shorter than 2 characters"])
  }

  func testDateTimeFollowsRFC3339() throws {
    let s = #"{"type": "string", "format": "date-time"}"#
    for good in [
      "2026-11-27T10:00:00Z", "2026-11-27T10:00:00.123Z", "2026-11-27T10:00:00+01:00", "2026-11-27t10:00:00.5-05:30",
      "2028-02-29T23:59:60Z",
    ] {
      XCTAssertEqual(try violations(s, "\"\(good)\""), [], good)
    }
    for bad in [
      "2026-11-27", "2026-11-27T10:00:00", "2026-11-27 10:00:00Z", "2026-13-01T00:00:00Z", "2027-02-29T00:00:00Z",
      "2026-11-27T24:00:00Z", "2026-11-27T10:00:00.Z", "2026-11-27T10:00:00+0100", "2026-11-27T10:00:00Zjunk",
      "tomorrow",
    ] {
      XCTAssertEqual(try violations(s, "\"\(bad)\""), ["\"\(bad)\" is not an RFC 3339 date-time"], bad)
    }
  }

  func testAnnotationsAndUnknownKeywordsAreIgnored() throws {
    let s = #"""
      {"$schema": "http://json-schema.org/draft-06/schema#", "$id": "urn:x", "comment": "c", "description": "d",
       "javaType": "J", "default": "Outlet", "x-vendor": {"anything": true},
       "type": "array", "additionalItems": false, "items": {"type": "string"}}
      """#
    XCTAssertEqual(try violations(s, #"["a", "b"]"#), [])
    XCTAssertEqual(try violations(s, "[1]"), ["[0]: expected string, found integer"])
  }

  func testViolationsAreCapped() throws {
    let names = (0..<30).map { "\"p\($0)\"" }.joined(separator: ", ")
    let s = try schema(#"{"type": "object", "required": [\#(names)]}"#)
    XCTAssertEqual(s.validate([:]).count, SchemaViolation.defaultLimit)
    XCTAssertEqual(s.validate([:], limit: 3).count, 3)
  }
}

final class OCPPSchemaTests: XCTestCase {
  private func schemas(_ version: OCPPVersion) throws -> OCPPSchemas { try OCPPSchemas.shared(version) }

  private func messages(_ violations: [SchemaViolation]) -> [String] { violations.map(\.description) }

  /// The schema files as they sit in the source tree, to count independently of the bundle.
  private func filesOnDisk(_ directory: String) throws -> [String] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .appendingPathComponent("../../Sources/OCPP/Schemas/\(directory)").standardizedFileURL
    return try FileManager.default.contentsOfDirectory(atPath: url.path).filter { $0.hasSuffix(".json") }
  }

  func testEveryEditionLoadsAndCompilesAllItsFiles() throws {
    for (version, directory, expected) in [(OCPPVersion.v201, "v201", 128), (.v21, "v21", 181)] {
      let loaded = try OCPPSchemas.load(version)
      XCTAssertEqual(loaded.schemaCount, expected, "\(version)")
      XCTAssertEqual(loaded.schemaCount, try filesOnDisk(directory).count, "\(version)")
      XCTAssertTrue(loaded.knows(action: "BootNotification"))
      for action in loaded.actions where action != "NotifyPeriodicEventStream" {
        XCTAssertNotNil(loaded.schema(action: action, kind: .request), "\(version) \(action)")
        XCTAssertNotNil(loaded.schema(action: action, kind: .response), "\(version) \(action)")
      }
    }
  }

  func testSharedInstancesAreLoadedOnce() throws {
    XCTAssertTrue(try OCPPSchemas.shared(.v21) === OCPPSchemas.shared(.v21))
    XCTAssertEqual(try OCPPSchemas.shared(.v201).version, .v201)
  }

  func testAFileThatDoesNotParseIsNamed() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("schemas-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    try Data(#"{"type": "object"}"#.utf8).write(to: directory.appendingPathComponent("GoodRequest.json"))
    try Data(#"{"type": "object""#.utf8).write(to: directory.appendingPathComponent("BrokenRequest.json"))
    XCTAssertThrowsError(try OCPPSchemas.load(.v21, from: directory)) {
      XCTAssertEqual(($0 as? OCPPSchemaError)?.file, "v21/BrokenRequest.json")
    }
  }

  func testUnknownActionIsDistinguishable() throws {
    let v21 = try schemas(.v21)
    XCTAssertFalse(v21.knows(action: "NoSuchAction"))
    XCTAssertEqual(
      messages(v21.validate(action: "NoSuchAction", kind: .request, payload: [:])),
      [#"OCPP ocpp2.1 has no request schema for "NoSuchAction""#])
    // 2.1's SEND message has a schema but no response.
    XCTAssertTrue(v21.knows(action: "NotifyPeriodicEventStream"))
    XCTAssertNil(v21.schema(action: "NotifyPeriodicEventStream", kind: .response))
    XCTAssertFalse(try schemas(.v201).knows(action: "NotifyPeriodicEventStream"))
  }

  func testV21ChargingNeedsWithV2XParametersAndDepartureTime() throws {
    var payload = Messages.chargingNeeds
    XCTAssertEqual(
      messages(try schemas(.v21).validate(action: "NotifyEVChargingNeeds", kind: .request, payload: payload)), [])

    payload = try JSONValue.parse(
      #"""
      {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "AC_BPT", "departureTime": "at six",
       "acChargingParameters": {"energyAmount": "20000", "evMinCurrent": 6, "evMaxCurrent": 32, "evMaxVoltage": 400},
       "v2xChargingParameters": {"targetSoC": 80.5}}}
      """#)
    XCTAssertEqual(
      messages(try schemas(.v21).validate(action: "NotifyEVChargingNeeds", kind: .request, payload: payload)),
      [
        "chargingNeeds.acChargingParameters.energyAmount: expected number, found string",
        #"chargingNeeds.departureTime: "at six" is not an RFC 3339 date-time"#,
        "chargingNeeds.v2xChargingParameters.targetSoC: expected integer, found number",
      ])
    // 2.0.1 knows neither bidirectional transfer nor the V2X parameters (nor the other 2.1 additions).
    XCTAssertEqual(
      messages(
        try schemas(.v201).validate(action: "NotifyEVChargingNeeds", kind: .request, payload: Messages.chargingNeeds)),
      [
        #"chargingNeeds.requestedEnergyTransfer: "AC_BPT" is not one of DC, AC_single_phase, AC_two_phase, AC_three_phase"#,
        #"chargingNeeds: property "availableEnergyTransfer" is not allowed"#,
        #"chargingNeeds: property "controlMode" is not allowed"#,
        #"chargingNeeds: property "v2xChargingParameters" is not allowed"#,
        #"property "timestamp" is not allowed"#,
      ])
  }

  func testV21CentralSetpointProfileWithADischargeSetpoint() throws {
    let v21 = try schemas(.v21)
    XCTAssertEqual(
      messages(v21.validate(action: "SetChargingProfile", kind: .request, payload: Messages.setpointProfile)), [])

    let broken = try JSONValue.parse(
      Messages.setpointProfile.jsonText.replacingOccurrences(of: #""numberPhases":3"#, with: #""numberPhases":4"#)
        .replacingOccurrences(of: #""CentralSetpoint""#, with: #""Discharge""#))
    XCTAssertEqual(
      messages(v21.validate(action: "SetChargingProfile", kind: .request, payload: broken)),
      [
        #"chargingProfile.chargingSchedule[0].chargingSchedulePeriod[0].operationMode: "Discharge" is not one of "#
          + "Idle, ChargingOnly, CentralSetpoint, ExternalSetpoint, ExternalLimits, CentralFrequency, LocalFrequency, "
          + "LocalLoadBalancing",
        "chargingProfile.chargingSchedule[0].chargingSchedulePeriod[1].numberPhases: value 4 is above the maximum 3",
      ])
  }

  func testV201ProfileHasNoOperationModeOrSetpoint() throws {
    let v201 = try schemas(.v201)
    XCTAssertEqual(
      messages(v201.validate(action: "SetChargingProfile", kind: .request, payload: Messages.setpointProfile)),
      [
        #"chargingProfile.chargingSchedule[0].chargingSchedulePeriod[0]: required property "limit" is missing"#,
        #"chargingProfile.chargingSchedule[0].chargingSchedulePeriod[0]: property "operationMode" is not allowed"#,
        #"chargingProfile.chargingSchedule[0].chargingSchedulePeriod[0]: property "setpoint" is not allowed"#,
        #"chargingProfile.chargingSchedule[0].chargingSchedulePeriod[1]: property "operationMode" is not allowed"#,
      ])
    let limitOnly = try JSONValue.parse(
      #"""
      {"evseId": 1, "chargingProfile": {"id": 7, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
       "chargingProfileKind": "Absolute", "chargingSchedule": [{"id": 1, "chargingRateUnit": "A",
       "startSchedule": "2026-11-27T10:00:00Z", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}]}]}}
      """#)
    XCTAssertEqual(messages(v201.validate(action: "SetChargingProfile", kind: .request, payload: limitOnly)), [])
  }

  func testBootNotificationWithoutChargingStation() throws {
    let payload: JSONValue = ["reason": "PowerUp"]
    for version in OCPPVersion.allCases {
      XCTAssertEqual(
        messages(try schemas(version).validate(action: "BootNotification", kind: .request, payload: payload)),
        [#"required property "chargingStation" is missing"#], "\(version)")
    }
    let complete: JSONValue = ["reason": "PowerUp", "chargingStation": ["model": "Wallbox 22", "vendorName": "ACME"]]
    XCTAssertEqual(try schemas(.v201).validate(action: "BootNotification", kind: .request, payload: complete), [])
    let longModel: JSONValue = [
      "reason": "PowerUp", "chargingStation": ["model": "Wallbox 22 kW bidirectional", "vendorName": "ACME"],
    ]
    XCTAssertEqual(
      messages(try schemas(.v201).validate(action: "BootNotification", kind: .request, payload: longModel)),
      ["chargingStation.model: longer than 20 characters"])
  }

  func testTransactionEventWithAWrongEnumAndABadTimestamp() throws {
    for version in OCPPVersion.allCases {
      let v = try schemas(version)
      XCTAssertEqual(
        messages(v.validate(action: "TransactionEvent", kind: .request, payload: Messages.transactionEvent)), [])
      let broken = try JSONValue.parse(
        Messages.transactionEvent.jsonText.replacingOccurrences(of: #""Updated""#, with: #""Begun""#)
          .replacingOccurrences(of: "2026-11-27T10:00:05.250+01:00", with: "2026-11-27 10:00"))
      XCTAssertEqual(
        messages(v.validate(action: "TransactionEvent", kind: .request, payload: broken)),
        [
          #"eventType: "Begun" is not one of Ended, Started, Updated"#,
          #"meterValue[0].timestamp: "2026-11-27 10:00" is not an RFC 3339 date-time"#,
        ], "\(version)")
    }
  }

  func testResponsesAreCheckedAgainstTheirOwnSchema() throws {
    let v21 = try schemas(.v21)
    XCTAssertEqual(v21.validate(action: "SetChargingProfile", kind: .response, payload: ["status": "Accepted"]), [])
    XCTAssertEqual(
      messages(v21.validate(action: "SetChargingProfile", kind: .response, payload: ["status": "Foo"])),
      [#"status: "Foo" is not one of Accepted, Rejected"#])
  }
}

/// Real-shaped messages, valid in 2.1 as written.
private enum Messages {
  static let chargingNeeds = parse(
    #"""
    {"evseId": 1, "maxScheduleTuples": 24, "timestamp": "2026-11-27T09:59:58Z",
     "chargingNeeds": {"requestedEnergyTransfer": "AC_BPT", "availableEnergyTransfer": ["AC_three_phase", "AC_BPT"],
      "controlMode": "DynamicControl", "departureTime": "2026-11-27T17:30:00+01:00",
      "acChargingParameters": {"energyAmount": 20000, "evMinCurrent": 6, "evMaxCurrent": 32, "evMaxVoltage": 400},
      "v2xChargingParameters": {"minChargePower": 1400, "maxChargePower": 11000, "minDischargePower": 1400,
       "maxDischargePower": 11000, "evMinEnergyRequest": -15000, "evMaxEnergyRequest": 40000, "targetSoC": 80}}}
    """#)

  static let setpointProfile = parse(
    #"""
    {"evseId": 1, "chargingProfile": {"id": 7, "stackLevel": 1, "chargingProfilePurpose": "TxProfile",
     "chargingProfileKind": "Absolute", "transactionId": "tx-42",
     "chargingSchedule": [{"id": 1, "chargingRateUnit": "W", "startSchedule": "2026-11-27T10:00:00Z",
      "chargingSchedulePeriod": [
       {"startPeriod": 0, "setpoint": -7400, "operationMode": "CentralSetpoint"},
       {"startPeriod": 900, "limit": 11000, "numberPhases": 3, "operationMode": "ChargingOnly"}]}]}}
    """#)

  static let transactionEvent = parse(
    #"""
    {"eventType": "Updated", "timestamp": "2026-11-27T10:00:05Z", "triggerReason": "MeterValuePeriodic", "seqNo": 12,
     "transactionInfo": {"transactionId": "tx-42", "chargingState": "Charging"}, "evse": {"id": 1, "connectorId": 1},
     "meterValue": [{"timestamp": "2026-11-27T10:00:05.250+01:00", "sampledValue": [
      {"value": 7350.5, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
      {"value": 12.25, "measurand": "Energy.Active.Import.Register", "context": "Sample.Periodic"}]}]}
    """#)

  private static func parse(_ text: String) -> JSONValue {
    // A typo in a fixture should fail the tests that use it, not crash the run.
    (try? JSONValue.parse(text)) ?? .null
  }
}
