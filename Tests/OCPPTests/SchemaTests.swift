import Foundation
import OCPP
import Testing

/// The JSON Schema validator, keyword by keyword on small inline schemas, then on the
/// official OCPP 2.0.1 and 2.1 schemas with real messages.
@Suite struct SchemaKeywordTests {
  private func schema(_ text: String) throws -> JSONSchema { try JSONSchema(JSONValue.parse(text)) }

  private func violations(_ schemaText: String, _ valueText: String) throws -> [String] {
    try schema(schemaText).validate(JSONValue.parse(valueText)).map(\.description)
  }

  @Test func typeNamesTheExpectedAndFoundTypes() throws {
    #expect(try violations(#"{"type": "number"}"#, "2.5") == [])
    #expect(try violations(#"{"type": "number"}"#, #""2.5""#) == ["expected number, found string"])
    #expect(try violations(#"{"type": "boolean"}"#, "true") == [])
    #expect(try violations(#"{"type": "boolean"}"#, "1") == ["expected boolean, found integer"])
    #expect(try violations(#"{"type": "object"}"#, "[]") == ["expected object, found array"])
    #expect(try violations(#"{"type": ["string", "null"]}"#, "null") == [])
    #expect(try violations(#"{"type": ["string", "null"]}"#, "{}") == ["expected null or string, found object"])
  }

  @Test func integerIsANumberWithoutFraction() throws {
    #expect(try violations(#"{"type": "integer"}"#, "3") == [])
    #expect(try violations(#"{"type": "integer"}"#, "3.0") == [])
    #expect(try violations(#"{"type": "integer"}"#, "3.5") == ["expected integer, found number"])
  }

  @Test func requiredAndPropertiesReportThePath() throws {
    let s = #"""
      {"type": "object", "required": ["evseId"],
       "properties": {"evse": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}}}
      """#
    #expect(try violations(s, #"{"evseId": 1, "evse": {"id": 2}}"#) == [])
    #expect(
      try schema(s).validate(JSONValue.parse(#"{"evse": {"id": "2"}}"#)) == [
        SchemaViolation(path: "", message: #"required property "evseId" is missing"#),
        SchemaViolation(path: "evse.id", message: "expected integer, found string"),
      ])
    #expect(try violations(s, #"{"evseId": 1, "evse": {}}"#) == [#"evse: required property "id" is missing"#])
  }

  @Test func additionalPropertiesFalseRejectsUnknownMembers() throws {
    let closed = #"{"type": "object", "additionalProperties": false, "properties": {"a": {}}}"#
    #expect(try violations(closed, #"{"a": 1}"#) == [])
    #expect(
      try violations(closed, #"{"a": 1, "zeta": 2, "bogus": 3}"#) == [
        #"property "bogus" is not allowed"#, #"property "zeta" is not allowed"#,
      ])
    // true or absent: other members pass unchecked (OCPP's CustomDataType is open this way).
    #expect(try violations(#"{"type": "object", "additionalProperties": true}"#, #"{"bogus": 1}"#) == [])
    #expect(try violations(#"{"type": "object", "properties": {"a": {}}}"#, #"{"bogus": 1}"#) == [])
  }

  @Test func enumListsTheAllowedValues() throws {
    let s = #"{"type": "string", "enum": ["Accepted", "Rejected"]}"#
    #expect(try violations(s, #""Rejected""#) == [])
    #expect(try violations(s, #""Foo""#) == [#""Foo" is not one of Accepted, Rejected"#])
  }

  @Test func refResolvesLocalDefinitions() throws {
    let s = #"""
      {"definitions": {"Status": {"type": "string", "enum": ["On", "Off"]}, "Alias": {"$ref": "#/definitions/Status"}},
       "type": "object", "properties": {"status": {"$ref": "#/definitions/Alias"}}}
      """#
    #expect(try violations(s, #"{"status": "On"}"#) == [])
    #expect(try violations(s, #"{"status": "Dim"}"#) == [#"status: "Dim" is not one of On, Off"#])
  }

  @Test func brokenSchemasAreRefusedWhenCompiled() throws {
    let missing = #expect(throws: (any Error).self) {
      try schema(##"{"properties": {"a": {"$ref": "#/definitions/Missing"}}}"##)
    }
    #expect(
      missing.map { "\($0)" } == ##"properties.a: $ref "#/definitions/Missing" names no definition in this file"##)
    #expect(throws: (any Error).self) { try schema(##"{"definitions": {"A": {"$ref": "#/definitions/A"}}}"##) }
    #expect(throws: (any Error).self) { try schema(#"{"type": "float"}"#) }
    #expect(throws: (any Error).self) { try schema(#"{"maxLength": "20"}"#) }
  }

  @Test func itemsAndItemCounts() throws {
    let s = #"{"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 3}"#
    #expect(try violations(s, "[1, 2, 3]") == [])
    #expect(try violations(s, "[]") == ["has 0 items, fewer than the minimum 1"])
    #expect(try violations(s, "[1, 2, 3, 4]") == ["has 4 items, more than the maximum 3"])
    #expect(
      try violations(s, #"[1, "2", 0]"#) == [
        "[1]: expected integer, found string", "[2]: value 0 is below the minimum 1",
      ])
  }

  @Test func minimumAndMaximum() throws {
    let s = #"{"type": "number", "minimum": 1.0, "maximum": 3.0}"#
    #expect(try violations(s, "1") == [])
    #expect(try violations(s, "3") == [])
    #expect(try violations(s, "0") == ["value 0 is below the minimum 1"])
    #expect(try violations(s, "3.5") == ["value 3.5 is above the maximum 3"])
  }

  @Test func lengthsCountCharactersNotBytes() throws {
    let s = #"{"type": "string", "minLength": 2, "maxLength": 5}"#
    #expect(try violations(s, #""Ämter""#) == [])  // 5 characters, 6 bytes
    #expect(try violations(s, #""Zähler""#) == ["longer than 5 characters"])
    #expect(try violations(s, #""x""#) == ["shorter than 2 characters"])
  }

  @Test func dateTimeFollowsRFC3339() throws {
    let s = #"{"type": "string", "format": "date-time"}"#
    for good in [
      "2026-11-27T10:00:00Z", "2026-11-27T10:00:00.123Z", "2026-11-27T10:00:00+01:00", "2026-11-27t10:00:00.5-05:30",
      "2028-02-29T23:59:60Z",
    ] {
      #expect(try violations(s, "\"\(good)\"") == [], "\(good)")
    }
    for bad in [
      "2026-11-27", "2026-11-27T10:00:00", "2026-11-27 10:00:00Z", "2026-13-01T00:00:00Z", "2027-02-29T00:00:00Z",
      "2026-11-27T24:00:00Z", "2026-11-27T10:00:00.Z", "2026-11-27T10:00:00+0100", "2026-11-27T10:00:00Zjunk",
      "tomorrow",
    ] {
      #expect(try violations(s, "\"\(bad)\"") == ["\"\(bad)\" is not an RFC 3339 date-time"], "\(bad)")
    }
  }

  @Test func annotationsAndUnknownKeywordsAreIgnored() throws {
    let s = #"""
      {"$schema": "http://json-schema.org/draft-06/schema#", "$id": "urn:x", "comment": "c", "description": "d",
       "javaType": "J", "default": "Outlet", "x-vendor": {"anything": true},
       "type": "array", "additionalItems": false, "items": {"type": "string"}}
      """#
    #expect(try violations(s, #"["a", "b"]"#) == [])
    #expect(try violations(s, "[1]") == ["[0]: expected string, found integer"])
  }

  @Test func violationsAreCapped() throws {
    let names = (0..<30).map { "\"p\($0)\"" }.joined(separator: ", ")
    let s = try schema(#"{"type": "object", "required": [\#(names)]}"#)
    #expect(s.validate([:]).count == SchemaViolation.defaultLimit)
    #expect(s.validate([:], limit: 3).count == 3)
  }
}

@Suite struct OCPPSchemaTests {
  private func schemas(_ version: OCPPVersion) throws -> OCPPSchemas { try OCPPSchemas.shared(version) }

  private func messages(_ violations: [SchemaViolation]) -> [String] { violations.map(\.description) }

  /// The schema files as they sit in the source tree, to count independently of the bundle.
  private func filesOnDisk(_ directory: String) throws -> [String] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
      .appendingPathComponent("../../Sources/OCPP/Schemas/\(directory)").standardizedFileURL
    return try FileManager.default.contentsOfDirectory(atPath: url.path).filter { $0.hasSuffix(".json") }
  }

  @Test func everyEditionLoadsAndCompilesAllItsFiles() throws {
    for (version, directory, expected) in [(OCPPVersion.v201, "v201", 128), (.v21, "v21", 181)] {
      let loaded = try OCPPSchemas.load(version)
      #expect(loaded.schemaCount == expected, "\(version)")
      #expect(try loaded.schemaCount == filesOnDisk(directory).count, "\(version)")
      #expect(loaded.knows(action: "BootNotification"))
      for action in loaded.actions where action != "NotifyPeriodicEventStream" {
        #expect(loaded.schema(action: action, kind: .request) != nil, "\(version) \(action)")
        #expect(loaded.schema(action: action, kind: .response) != nil, "\(version) \(action)")
      }
    }
  }

  @Test func sharedInstancesAreLoadedOnce() throws {
    #expect(try OCPPSchemas.shared(.v21) === OCPPSchemas.shared(.v21))
    #expect(try OCPPSchemas.shared(.v201).version == .v201)
  }

  @Test func aFileThatDoesNotParseIsNamed() throws {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("schemas-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    try Data(#"{"type": "object"}"#.utf8).write(to: directory.appendingPathComponent("GoodRequest.json"))
    try Data(#"{"type": "object""#.utf8).write(to: directory.appendingPathComponent("BrokenRequest.json"))
    let error = #expect(throws: OCPPSchemaError.self) { try OCPPSchemas.load(.v21, from: directory) }
    #expect(error?.file == "v21/BrokenRequest.json")
  }

  @Test func unknownActionIsDistinguishable() throws {
    let v21 = try schemas(.v21)
    #expect(!(v21.knows(action: "NoSuchAction")))
    #expect(
      messages(v21.validate(action: "NoSuchAction", kind: .request, payload: [:])) == [
        #"OCPP ocpp2.1 has no request schema for "NoSuchAction""#
      ])
    // 2.1's SEND message has a schema but no response.
    #expect(v21.knows(action: "NotifyPeriodicEventStream"))
    #expect(v21.schema(action: "NotifyPeriodicEventStream", kind: .response) == nil)
    #expect(!(try schemas(.v201).knows(action: "NotifyPeriodicEventStream")))
  }

  @Test func v21ChargingNeedsWithV2XParametersAndDepartureTime() throws {
    var payload = Messages.chargingNeeds
    #expect(
      messages(try schemas(.v21).validate(action: "NotifyEVChargingNeeds", kind: .request, payload: payload)) == [])

    payload = try JSONValue.parse(
      #"""
      {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "AC_BPT", "departureTime": "at six",
       "acChargingParameters": {"energyAmount": "20000", "evMinCurrent": 6, "evMaxCurrent": 32, "evMaxVoltage": 400},
       "v2xChargingParameters": {"targetSoC": 80.5}}}
      """#)
    #expect(
      messages(try schemas(.v21).validate(action: "NotifyEVChargingNeeds", kind: .request, payload: payload)) == [
        "chargingNeeds.acChargingParameters.energyAmount: expected number, found string",
        #"chargingNeeds.departureTime: "at six" is not an RFC 3339 date-time"#,
        "chargingNeeds.v2xChargingParameters.targetSoC: expected integer, found number",
      ])
    // 2.0.1 knows neither bidirectional transfer nor the V2X parameters (nor the other 2.1 additions).
    #expect(
      messages(
        try schemas(.v201).validate(action: "NotifyEVChargingNeeds", kind: .request, payload: Messages.chargingNeeds))
        == [
          #"chargingNeeds.requestedEnergyTransfer: "AC_BPT" is not one of DC, AC_single_phase, AC_two_phase, AC_three_phase"#,
          #"chargingNeeds: property "availableEnergyTransfer" is not allowed"#,
          #"chargingNeeds: property "controlMode" is not allowed"#,
          #"chargingNeeds: property "v2xChargingParameters" is not allowed"#,
          #"property "timestamp" is not allowed"#,
        ])
  }

  @Test func v21CentralSetpointProfileWithADischargeSetpoint() throws {
    let v21 = try schemas(.v21)
    #expect(
      messages(v21.validate(action: "SetChargingProfile", kind: .request, payload: Messages.setpointProfile)) == [])

    let broken = try JSONValue.parse(
      Messages.setpointProfile.jsonText.replacingOccurrences(of: #""numberPhases":3"#, with: #""numberPhases":4"#)
        .replacingOccurrences(of: #""CentralSetpoint""#, with: #""Discharge""#))
    #expect(
      messages(v21.validate(action: "SetChargingProfile", kind: .request, payload: broken)) == [
        #"chargingProfile.chargingSchedule[0].chargingSchedulePeriod[0].operationMode: "Discharge" is not one of "#
          + "Idle, ChargingOnly, CentralSetpoint, ExternalSetpoint, ExternalLimits, CentralFrequency, LocalFrequency, "
          + "LocalLoadBalancing",
        "chargingProfile.chargingSchedule[0].chargingSchedulePeriod[1].numberPhases: value 4 is above the maximum 3",
      ])
  }

  @Test func v201ProfileHasNoOperationModeOrSetpoint() throws {
    let v201 = try schemas(.v201)
    #expect(
      messages(v201.validate(action: "SetChargingProfile", kind: .request, payload: Messages.setpointProfile)) == [
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
    #expect(messages(v201.validate(action: "SetChargingProfile", kind: .request, payload: limitOnly)) == [])
  }

  @Test func bootNotificationWithoutChargingStation() throws {
    let payload: JSONValue = ["reason": "PowerUp"]
    for version in OCPPVersion.allCases {
      #expect(
        messages(try schemas(version).validate(action: "BootNotification", kind: .request, payload: payload)) == [
          #"required property "chargingStation" is missing"#
        ], "\(version)")
    }
    let complete: JSONValue = ["reason": "PowerUp", "chargingStation": ["model": "Wallbox 22", "vendorName": "ACME"]]
    #expect(try schemas(.v201).validate(action: "BootNotification", kind: .request, payload: complete) == [])
    let longModel: JSONValue = [
      "reason": "PowerUp", "chargingStation": ["model": "Wallbox 22 kW bidirectional", "vendorName": "ACME"],
    ]
    #expect(
      messages(try schemas(.v201).validate(action: "BootNotification", kind: .request, payload: longModel)) == [
        "chargingStation.model: longer than 20 characters"
      ])
  }

  @Test func transactionEventWithAWrongEnumAndABadTimestamp() throws {
    for version in OCPPVersion.allCases {
      let v = try schemas(version)
      #expect(
        messages(v.validate(action: "TransactionEvent", kind: .request, payload: Messages.transactionEvent)) == [])
      let broken = try JSONValue.parse(
        Messages.transactionEvent.jsonText.replacingOccurrences(of: #""Updated""#, with: #""Begun""#)
          .replacingOccurrences(of: "2026-11-27T10:00:05.250+01:00", with: "2026-11-27 10:00"))
      #expect(
        messages(v.validate(action: "TransactionEvent", kind: .request, payload: broken)) == [
          #"eventType: "Begun" is not one of Ended, Started, Updated"#,
          #"meterValue[0].timestamp: "2026-11-27 10:00" is not an RFC 3339 date-time"#,
        ], "\(version)")
    }
  }

  @Test func responsesAreCheckedAgainstTheirOwnSchema() throws {
    let v21 = try schemas(.v21)
    #expect(v21.validate(action: "SetChargingProfile", kind: .response, payload: ["status": "Accepted"]) == [])
    #expect(
      messages(v21.validate(action: "SetChargingProfile", kind: .response, payload: ["status": "Foo"])) == [
        #"status: "Foo" is not one of Accepted, Rejected"#
      ])
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
