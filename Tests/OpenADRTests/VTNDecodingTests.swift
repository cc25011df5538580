import Foundation
import Testing

@testable import OpenADR

@Suite("Decoding what openleadr's VTN sent (Tests/Integration/openadr-samples)")
struct VTNDecodingTests {
  @Test("every VTN -> VEN sample decodes, every VEN -> VTN sample is a well-formed tree")
  func everySample() throws {
    let table = try Samples.directions()
    #expect(table.count > 40)
    var decoded = 0
    for (file, direction) in table where !file.hasPrefix("hostile/") {
      let bytes = try Samples.bytes(file)
      if direction == "VTN -> VEN" {
        #expect(throws: Never.self, "\(file)") { _ = try VTNMessage.decode(bytes) }
        decoded += 1
      } else {
        #expect(throws: Never.self, "\(file)") { _ = try XMLTreeElement.parse(bytes) }
      }
    }
    #expect(decoded == 22)
    // The bodies that are not XML: the VEN goes by the HTTP status, but they decode to errors.
    #expect(decodingError(try Samples.bytes("http200-empty-body.txt"))?.kind == .empty)
    #expect(decodingError(try Samples.bytes("error-http400-schema.txt"))?.kind == .notWellFormed)
  }

  @Test func createdPartyRegistration() throws {
    guard case .createdPartyRegistration(let registration) = try Samples.decode("oadrCreatedPartyRegistration.xml")
    else { return #expect(Bool(false)) }
    #expect(
      registration.response
        == Response(code: 200, description: "OK", requestID: "dafd11e9-021e-44f0-9669-7d032c103440", venID: "ven-1"))
    #expect(registration.registrationID == "reg-0102eb92")
    #expect(registration.venID == "ven-1")
    #expect(registration.vtnID == "MGE-TEST-VTN")
    #expect(registration.pollFrequencySeconds == 1)
    #expect(registration.profiles == [.init(name: "2.0b", transports: ["simpleHttp"])])
    #expect(!registration.isRefusal)
  }

  @Test("the answer to a query has empty IDs: nil, a refusal if taken as a registration")
  func createdPartyRegistrationQuery() throws {
    guard
      case .createdPartyRegistration(let registration) = try Samples.decode("oadrCreatedPartyRegistration-query.xml")
    else { return #expect(Bool(false)) }
    #expect(registration.registrationID == nil)
    #expect(registration.venID == nil)
    #expect(registration.response.requestID == "31865fb6-5971-46d3-aad6-7614d04efc10")
    #expect(registration.pollFrequencySeconds == 1)
    #expect(registration.isRefusal)
  }

  @Test("signed: the ds:Signature before oadrSignedObject is skipped")
  func signed() throws {
    guard
      case .createdPartyRegistration(let registration) = try Samples.decode("signed/oadrCreatedPartyRegistration.xml")
    else { return #expect(Bool(false)) }
    #expect(registration.registrationID != nil)
    #expect(
      try Samples.decode("signed/oadrResponse.xml")
        == .response(Response(code: 200, description: "OK", venID: "ven-59e1471c")))
  }

  @Test("SIMPLE level 2 with notification, ramp-up, recovery and startafter")
  func distributeEventSimple() throws {
    guard case .distributeEvent(let distribution) = try Samples.decode("oadrDistributeEvent-simple.xml")
    else { return #expect(Bool(false)) }
    // Quirk 3: the literal "None" is kept as written.
    #expect(distribution.response == Response(code: 200, description: "OK", requestID: "None"))
    #expect(distribution.requestID == "aaf3248f-de61-46dc-9c7a-b4d487551af8")
    #expect(distribution.vtnID == "MGE-TEST-VTN")
    try #require(distribution.events.count == 1)
    let event = distribution.events[0]
    #expect(event.eventID == "event-50ed22c7")
    #expect(event.modificationNumber == 0)
    #expect(event.modificationReason == nil)
    #expect(event.priority == 0)
    #expect(event.marketContext == "http://MarketContext1")
    expectDate(event.createdDateTime, 1_796_222_698.408585)
    #expect(event.status == "far")
    expectDate(event.start, 1_796_222_998.408273)
    #expect(event.durationSeconds == 600)
    #expect(event.startAfterSeconds == 120)
    #expect(event.notificationSeconds == 300)
    #expect(event.rampUpSeconds == 60)
    #expect(event.recoverySeconds == 30)
    #expect(event.targetVenIDs == ["ven-1"])
    #expect(event.responseRequired)
    try #require(event.signals.count == 1)
    let signal = event.signals[0]
    #expect(signal.name == "SIMPLE")
    #expect(signal.type == "level")
    #expect(signal.id == "signal-74bdc343")
    #expect(signal.currentValue == 0)
    #expect(signal.itemBase == nil)
    try #require(signal.intervals.count == 1)
    #expect(signal.intervals[0].uid == "0")
    #expect(signal.intervals[0].offsetSeconds == 0)
    #expect(signal.intervals[0].durationSeconds == 600)
    #expect(signal.intervals[0].value == 2)
    expectDate(signal.intervals[0].declaredStart, 1_796_222_998.408273)
  }

  @Test("the modification: number 1, reason, level 3 for 15 minutes")
  func distributeEventModified() throws {
    guard case .distributeEvent(let distribution) = try Samples.decode("oadrDistributeEvent-modified.xml")
    else { return #expect(Bool(false)) }
    let event = try #require(distribution.events.first)
    #expect(event.eventID == "event-50ed22c7")
    #expect(event.modificationNumber == 1)
    #expect(event.modificationReason == "deeper shed")
    expectDate(event.modificationDateTime, 1_796_222_698.443673)
    #expect(event.durationSeconds == 900)
    #expect(event.signals.first?.intervals.map(\.value) == [3])
    #expect(event.signals.first?.intervals.map(\.durationSeconds) == [900])
  }

  @Test func distributeEventCancelled() throws {
    guard case .distributeEvent(let distribution) = try Samples.decode("oadrDistributeEvent-cancelled.xml")
    else { return #expect(Bool(false)) }
    let event = try #require(distribution.events.first)
    #expect(event.status == "cancelled")
    #expect(event.modificationNumber == 2)
    expectDate(event.modificationDateTime, 1_796_222_698.449462)
  }

  @Test("LOAD_DISPATCH setpoint in kW: two intervals back to back, offsets summed")
  func distributeEventLoadDispatch() throws {
    guard case .distributeEvent(let distribution) = try Samples.decode("oadrDistributeEvent-load-dispatch.xml")
    else { return #expect(Bool(false)) }
    let event = try #require(distribution.events.first)
    #expect(event.eventID == "event-2e01379f")
    expectDate(event.start, 1_796_222_818.454381)
    #expect(event.durationSeconds == 600)
    #expect(event.notificationSeconds == 120)
    #expect(event.startAfterSeconds == nil)
    #expect(event.rampUpSeconds == nil)
    let signal = try #require(event.signals.first)
    #expect(signal.name == "LOAD_DISPATCH")
    #expect(signal.type == "setpoint")
    #expect(signal.currentValue == nil)
    #expect(signal.intervals.map(\.uid) == ["0", "1"])
    #expect(signal.intervals.map(\.value) == [-75, -50])
    #expect(signal.intervals.map(\.offsetSeconds) == [0, 300])
    #expect(signal.intervals.map(\.durationSeconds) == [300, 300])
    // The stated dtstart of the second interval agrees with the summed offset.
    expectDate(signal.intervals[1].declaredStart, 1_796_223_118.454381)
    #expect(signal.intervals[1].declaredStart == event.start.addingTimeInterval(signal.intervals[1].offsetSeconds))
    #expect(
      signal.itemBase == ItemBase(kind: "powerReal", itemDescription: "RealPower", itemUnits: "W", siScaleCode: "k"))
    #expect(signal.itemBase?.kilowattMultiplier == 1)
  }

  @Test("kW multipliers of item bases")
  func kilowattMultiplier() {
    #expect(ItemBase(kind: "powerReal", itemUnits: "W", siScaleCode: "none").kilowattMultiplier == 0.001)
    #expect(ItemBase(kind: "powerReal", itemUnits: "W").kilowattMultiplier == 0.001)
    #expect(ItemBase(kind: "powerReal", itemUnits: "W", siScaleCode: "M").kilowattMultiplier == 1000)
    #expect(ItemBase(kind: "powerReal", itemUnits: "J/s", siScaleCode: "k").kilowattMultiplier == 1)
    #expect(ItemBase(kind: "energyReal", itemUnits: "Wh", siScaleCode: "k").kilowattMultiplier == nil)
    #expect(ItemBase(kind: "powerReal", itemUnits: "W", siScaleCode: "bogus").kilowattMultiplier == nil)
  }

  @Test("oadrRegisteredReport: one request at PT2S for site-meter-power")
  func registeredReport() throws {
    guard case .registeredReport(let registered) = try Samples.decode("oadrRegisteredReport.xml")
    else { return #expect(Bool(false)) }
    #expect(registered.response.requestID == "c47bb176-8d12-4687-9cf5-679bf1c85344")
    #expect(registered.response.venID == "ven-1")
    #expect(
      registered.reportRequests == [
        ReportRequest(
          reportRequestID: "4e69240d-30fb-4298-b85b-4bab80bffd8e", reportSpecifierID: "usage-1", granularitySeconds: 2,
          reportBackDurationSeconds: 2, rIDs: ["site-meter-power"])
      ])
  }

  @Test("oadrCreateReport at PT1S, delivered on a poll")
  func createReport() throws {
    #expect(
      try Samples.decode("oadrCreateReport.xml")
        == .createReport(
          CreateReport(
            requestID: "b78578fd-791a-443e-892b-98aa1c2f5b5f",
            reportRequests: [
              ReportRequest(
                reportRequestID: "rrq-7882a775", reportSpecifierID: "usage-1", granularitySeconds: 1,
                reportBackDurationSeconds: 1, rIDs: ["site-meter-power"])
            ], venID: "ven-1")))
  }

  @Test("responses, reregistration, cancellation")
  func smallMessages() throws {
    #expect(
      try Samples.decode("oadrResponse-poll-empty.xml")
        == .response(Response(code: 200, description: "OK", venID: "ven-1")))
    #expect(
      try Samples.decode("oadrResponse-requestEvent-none.xml")
        == .response(
          Response(code: 200, description: "OK", requestID: "2911413a-e722-4eec-9998-d2eee4875cd1", venID: "ven-1")))
    #expect(
      try Samples.decode("error-oadrResponse-452.xml") == .response(Response(code: 452, description: "INVALID ID")))
    guard case .response(let wrongService) = try Samples.decode("error-oadrResponse-459-wrong-service.xml")
    else { return #expect(Bool(false)) }
    #expect(wrongService.code == 459)
    #expect(wrongService.description?.hasPrefix("A message of type oadrPoll") == true)
    #expect(try Samples.decode("oadrRequestReregistration.xml") == .requestReregistration(venID: "ven-1"))
    #expect(
      try Samples.decode("oadrRequestReregistration-unknown-ven.xml") == .requestReregistration(venID: "ven-unknown"))
    #expect(
      try Samples.decode("oadrCancelPartyRegistration-vtn.xml")
        == .cancelPartyRegistration(
          CancelPartyRegistration(
            requestID: "cba09b63-bb31-48df-86ae-d433288d84a8", registrationID: "reg-5c2060a4", venID: "ven-1")))
    #expect(
      try Samples.decode("oadrCanceledPartyRegistration.xml")
        == .canceledPartyRegistration(
          CanceledPartyRegistration(
            response: Response(
              code: 200, description: "OK", requestID: "9b53877b-1612-46f9-a674-d8653440abe5", venID: "ven-1"),
            registrationID: "reg-0102eb92", venID: "ven-1")))
    #expect(
      try Samples.decode("oadrUpdatedReport.xml")
        == .updatedReport(
          Response(code: 200, description: "OK", requestID: "52fa4f09-dffa-429d-875e-de91a14d669c", venID: "ven-1")))
  }

  @Test("a VEN's message is not one the VEN reads")
  func venMessageRefused() throws {
    let error = decodingError(try Samples.bytes("oadrPoll.xml"))
    #expect(error?.kind == .unsupportedMessage)
    #expect(error?.message == "oadrPoll is not a message this VEN reads from a VTN")
  }

  @Test("oadrCancelReport")
  func cancelReport() throws {
    let document = """
      <?xml version="1.0" encoding="utf-8"?>
      <oadr:oadrPayload xmlns:oadr="http://openadr.org/oadr-2.0b/2012/07"><oadr:oadrSignedObject>\
      <oadr:oadrCancelReport xmlns:ei="http://docs.oasis-open.org/ns/energyinterop/201110" \
      xmlns:pyld="http://docs.oasis-open.org/ns/energyinterop/201110/payloads" ei:schemaVersion="2.0b">\
      <pyld:requestID>r-9</pyld:requestID><ei:reportRequestID>a</ei:reportRequestID>\
      <ei:reportRequestID>b</ei:reportRequestID><pyld:reportToFollow>false</pyld:reportToFollow>\
      <ei:venID>ven-1</ei:venID></oadr:oadrCancelReport></oadr:oadrSignedObject></oadr:oadrPayload>
      """
    #expect(
      try VTNMessage.decode(Array(document.utf8))
        == .cancelReport(
          CancelReport(requestID: "r-9", reportRequestIDs: ["a", "b"], reportToFollow: false, venID: "ven-1")))
  }
}

@Suite("Hostile and absurd documents: the right error, fast")
struct HostileDecodingTests {
  func error(_ file: String) throws -> OpenADRDocumentError? {
    decodingError(try Samples.bytes(file))
  }

  @Test func hostileSamples() throws {
    let clock = ContinuousClock()
    let started = clock.now
    #expect(try error("hostile/billion-laughs.xml")?.kind == .documentTypeDeclaration)
    #expect(try error("hostile/external-entity.xml")?.kind == .documentTypeDeclaration)
    #expect(try error("hostile/empty.xml")?.kind == .empty)
    #expect(try error("hostile/http-500.xml")?.kind == .empty)
    #expect(try error("hostile/wrong-namespace.xml")?.kind == .notOpenADR)
    let malformed = try error("hostile/malformed.xml")
    #expect(malformed?.kind == .notWellFormed)
    #expect(malformed?.message.hasPrefix("not well-formed XML at line 3, column ") == true)
    let notXML = try error("hostile/not-xml.xml")
    #expect(notXML?.kind == .notWellFormed)
    #expect(notXML?.message.hasPrefix("not well-formed XML at line 1, column 1") == true)
    // The other hostile bodies are fine documents; the VEN judges them (HTTP, content type).
    #expect(try error("hostile/slow.xml") == nil)
    #expect(try error("hostile/wrong-content-type.xml") == nil)
    #expect(clock.now - started < .seconds(1))
  }

  @Test("a duration of 9999 years is refused, naming the element")
  func absurdDuration() throws {
    let error = try error("hostile/absurd-duration.xml")
    #expect(error?.kind == .invalidValue)
    #expect(
      error?.message
        == "oadr:oadrDistributeEvent/oadr:oadrEvent/ei:eiEvent/ei:eiActivePeriod/xcal:properties/xcal:duration/xcal:duration: duration \"P9999Y\" is over the limit of 366 days"
    )
  }

  @Test func negativeDuration() throws {
    let error = try error("hostile/negative-duration.xml")
    #expect(error?.kind == .invalidValue)
    #expect(error?.message.hasSuffix("xcal:duration/xcal:duration: negative duration \"-PT1H\"") == true)
  }

  @Test("unknown signal names and types decode: the VEN answers them with 460")
  func unknownSignals() throws {
    guard case .distributeEvent(let name) = try Samples.decode("hostile/unknown-signal-name.xml"),
      case .distributeEvent(let type) = try Samples.decode("hostile/unknown-signal-type.xml")
    else { return #expect(Bool(false)) }
    #expect(name.events.first?.signals.first?.name == "x-MGE-UNKNOWN-SIGNAL")
    #expect(type.events.first?.signals.first?.type == "bogusType")
  }

  /// The simple event sample with one piece of text replaced.
  func simpleEvent(replacing old: String, with new: String) throws -> [UInt8] {
    let text = String(decoding: try Samples.bytes("oadrDistributeEvent-simple.xml"), as: UTF8.self)
    #expect(text.contains(old))
    return Array(text.replacingOccurrences(of: old, with: new).utf8)
  }

  @Test("absurd values name the element's path")
  func absurdValues() throws {
    var error = decodingError(
      try simpleEvent(
        replacing: "<ei:modificationNumber>0</ei:modificationNumber>",
        with: "<ei:modificationNumber>-1</ei:modificationNumber>"))
    #expect(
      error
        == OpenADRDocumentError(
          .invalidValue,
          "oadr:oadrDistributeEvent/oadr:oadrEvent/ei:eiEvent/ei:eventDescriptor/ei:modificationNumber: -1 is negative")
    )
    error = decodingError(try simpleEvent(replacing: "<ei:value>2.0</ei:value>", with: "<ei:value>NaN</ei:value>"))
    #expect(error?.kind == .invalidValue)
    #expect(
      error?.message.hasSuffix("ei:signalPayload/ei:payloadFloat/ei:value: \"NaN\" is not a finite decimal number")
        == true)
    error = decodingError(try simpleEvent(replacing: "<ei:value>2.0</ei:value>", with: "<ei:value>1e999</ei:value>"))
    #expect(error?.message.hasSuffix("\"1e999\" is not a finite number") == true)
    error = decodingError(try simpleEvent(replacing: "<ei:value>2.0</ei:value>", with: "<ei:value>0x10</ei:value>"))
    #expect(error?.kind == .invalidValue)
    error = decodingError(
      try simpleEvent(
        replacing: "<dtstart><date-time>2026-12-02T14:49:58.408273Z</date-time></dtstart>", with: ""))
    #expect(
      error
        == OpenADRDocumentError(
          .missingValue,
          "oadr:oadrDistributeEvent/oadr:oadrEvent/ei:eiEvent/ei:eiActivePeriod/xcal:properties: xcal:dtstart missing"))
    error = decodingError(
      try simpleEvent(
        replacing: "2026-12-02T14:49:58.408273Z</date-time></dtstart>",
        with: "2026-12-02T14:49:58</date-time></dtstart>"))
    #expect(
      error?.message.hasSuffix(
        "\"2026-12-02T14:49:58\" is not a date-time with a time zone (e.g. 2026-12-02T14:49:58Z)") == true)
    error = decodingError(try simpleEvent(replacing: ">always<", with: ">sometimes<"))
    #expect(error?.kind == .invalidValue)
  }

  @Test("the second of two events is named [2] in a path")
  func indexedPath() throws {
    let text = String(decoding: try Samples.bytes("oadrDistributeEvent-simple.xml"), as: UTF8.self)
    let event = try #require(
      text.range(of: "<oadr:oadrEvent>").map { start in
        text[start.lowerBound..<text.range(of: "</oadr:oadrEvent>")!.upperBound]
      })
    let broken = event.replacingOccurrences(
      of: "<dtstart><date-time>2026-12-02T14:49:58.408273Z</date-time></dtstart>", with: "")
    let document = text.replacingOccurrences(of: String(event), with: String(event) + broken)
    #expect(
      decodingError(Array(document.utf8))?.message
        == "oadr:oadrDistributeEvent/oadr:oadrEvent[2]/ei:eiEvent/ei:eiActivePeriod/xcal:properties: xcal:dtstart missing"
    )
    // The good event is still read: one bad event does not hide the others.
    guard case .distributeEvent(let d) = try VTNMessage.decode(Array(document.utf8)) else {
      Issue.record("not a distribution")
      return
    }
    #expect(d.events.map(\.eventID) == ["event-50ed22c7"])
    #expect(d.unreadable.map(\.eventID) == ["event-50ed22c7"] && d.unreadable[0].modificationNumber == 0)
    // An event that does not even name itself makes the distribution unreadable.
    let nameless = document.replacingOccurrences(
      of: "<ei:eventID>event-50ed22c7</ei:eventID>", with: "<ei:eventID></ei:eventID>")
    #expect(throws: OpenADRDocumentError.self) { try VTNMessage.decode(Array(nameless.utf8)) }
  }

  @Test("an offset date-time and prefixes other than openleadr's read the same")
  func otherSpellings() throws {
    let bytes = try simpleEvent(
      replacing: "<date-time>2026-12-02T14:49:58.408273Z</date-time>",
      with: "<date-time>2026-12-02T15:49:58.408273+01:00</date-time>")
    guard case .distributeEvent(let distribution) = try VTNMessage.decode(bytes) else { return #expect(Bool(false)) }
    expectDate(distribution.events.first?.start, 1_796_222_998.408273)

    let renamed = String(decoding: try Samples.bytes("oadrCreatedPartyRegistration.xml"), as: UTF8.self)
      .replacingOccurrences(of: "ei:", with: "energy:").replacingOccurrences(of: "xmlns:ei=", with: "xmlns:energy=")
      .replacingOccurrences(of: "oadr:", with: "o:").replacingOccurrences(of: "xmlns:oadr=", with: "xmlns:o=")
    #expect(renamed.contains("<energy:registrationID>"))
    #expect(try VTNMessage.decode(Array(renamed.utf8)) == Samples.decode("oadrCreatedPartyRegistration.xml"))
  }
}
