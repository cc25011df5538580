import Foundation
import Testing

@testable import OpenADR

/// The builders' documents for the samples' inputs, and for awkward ones; shared with the
/// schema test.
enum Built {
  static let created = Date(timeIntervalSince1970: 1_796_222_699.001889)
  static let start = Date(timeIntervalSince1970: 1_796_222_699.001921)

  static let telemetry = MetadataReport.siteTelemetry(
    reportSpecifierID: "usage-1", gridImportRID: "site-grid-import", availableDischargeRID: "site-available-discharge",
    resourceID: "site", samplingSeconds: 2, createdDateTime: created)

  static let update = ReportUpdate(
    reportRequestID: "rrq-7882a775", reportSpecifierID: "usage-1", createdDateTime: created, start: start,
    intervals: [.init(start: start, values: [(rID: "site-meter-power", value: 41.5)])])

  /// Every builder, by file name, with values that stress escaping and number formats.
  static func documents() -> [(name: String, bytes: [UInt8])] {
    let awkward = "ven <&> \"quoted\" 'single' \u{7}bell é"
    return [
      ("queryRegistration", VENMessage.queryRegistration(requestID: "q-1")),
      ("createPartyRegistration", VENMessage.createPartyRegistration(requestID: "r-1", venName: awkward)),
      (
        "createPartyRegistration-reregister",
        VENMessage.createPartyRegistration(
          requestID: "r-2", registrationID: "reg-1", venID: "ven-1", venName: "mge", reportOnly: true,
          xmlSignature: true,
          httpPullModel: true)
      ),
      (
        "cancelPartyRegistration",
        VENMessage.cancelPartyRegistration(requestID: "c-1", registrationID: "reg-1", venID: "ven-1")
      ),
      (
        "canceledPartyRegistration",
        VENMessage.canceledPartyRegistration(requestID: "c-2", registrationID: "reg-1", venID: "ven-1")
      ),
      ("poll", VENMessage.poll(venID: awkward)),
      ("response", VENMessage.response(requestID: nil, venID: "ven-1")),
      ("response-error", VENMessage.response(code: 450, description: nil, requestID: "x", venID: nil)),
      ("requestEvent", VENMessage.requestEvent(requestID: "e-1", venID: "ven-1", replyLimit: 5)),
      (
        "createdEvent",
        VENMessage.createdEvent(
          venID: "ven-1",
          responses: [
            EventResponse(requestID: "d-1", eventID: "event-1", modificationNumber: 2, optType: .optIn),
            EventResponse(
              requestID: "d-1", eventID: "event-2", modificationNumber: 0, optType: .optOut, code: 460,
              description: "SIGNAL NOT SUPPORTED"),
          ])
      ),
      ("createdEvent-none", VENMessage.createdEvent(venID: "ven-1", responses: [])),
      ("registerReport", VENMessage.registerReport(requestID: "rr-1", venID: "ven-1", reports: [telemetry])),
      (
        "createdReport",
        VENMessage.createdReport(requestID: "rr-1", venID: "ven-1", pendingReportRequestIDs: ["rrq-1", "rrq-2"])
      ),
      ("createdReport-none", VENMessage.createdReport(requestID: "rr-1", venID: "ven-1", pendingReportRequestIDs: [])),
      (
        "updateReport",
        VENMessage.updateReport(
          requestID: "u-1", venID: "ven-1",
          reports: [
            ReportUpdate(
              reportRequestID: "rrq-1", reportSpecifierID: "usage-1", createdDateTime: created, start: start,
              intervals: [
                .init(
                  start: start, durationSeconds: 2,
                  values: [(rID: "site-grid-import", value: 41.5), (rID: "site-available-discharge", value: 1e-7)]),
                .init(
                  start: start.addingTimeInterval(2), durationSeconds: 2,
                  values: [(rID: "site-grid-import", value: -3), (rID: "site-available-discharge", value: .nan)]),
              ])
          ])
      ),
    ]
  }
}

@Suite("The VEN's documents: openleadr's structure, escaped values, read back the same")
struct VENMessageTests {
  func tree(_ bytes: [UInt8]) throws -> XMLTreeElement { try XMLTreeElement.parse(bytes) }

  func sample(_ name: String) throws -> XMLTreeElement { try tree(try Samples.bytes(name)) }

  /// The message element (oadrPayload > oadrSignedObject > message).
  func message(_ root: XMLTreeElement) -> XMLTreeElement { root.children[0].children[0] }

  func removing(_ local: String, from element: XMLTreeElement) -> XMLTreeElement {
    var copy = element
    copy.children = element.children.filter { $0.name.local != local }.map { removing(local, from: $0) }
    return copy
  }

  @Test("the same elements, namespaces and order as openleadr's VEN for the same values")
  func sameAsOpenleadr() throws {
    #expect(
      try tree(VENMessage.queryRegistration(requestID: "31865fb6-5971-46d3-aad6-7614d04efc10"))
        == sample("oadrQueryRegistration.xml"))
    #expect(try tree(VENMessage.poll(venID: "ven-1")) == sample("oadrPoll.xml"))
    #expect(try tree(VENMessage.response(requestID: nil, venID: "ven-1")) == sample("oadrResponse-ven.xml"))
    #expect(
      try tree(
        VENMessage.cancelPartyRegistration(
          requestID: "9b53877b-1612-46f9-a674-d8653440abe5", registrationID: "reg-0102eb92", venID: "ven-1"))
        == sample("oadrCancelPartyRegistration.xml"))
    #expect(
      try tree(
        VENMessage.canceledPartyRegistration(
          requestID: "cba09b63-bb31-48df-86ae-d433288d84a8", registrationID: "reg-5c2060a4", venID: "ven-1"))
        == sample("oadrCanceledPartyRegistration-ven.xml"))
    #expect(
      try tree(VENMessage.requestEvent(requestID: "2911413a-e722-4eec-9998-d2eee4875cd1", venID: "ven-1"))
        == sample("oadrRequestEvent.xml"))
    #expect(
      try tree(
        VENMessage.createdEvent(
          venID: "ven-1",
          responses: [
            EventResponse(
              requestID: "aaf3248f-de61-46dc-9c7a-b4d487551af8", eventID: "event-50ed22c7", modificationNumber: 0,
              optType: .optIn)
          ])) == sample("oadrCreatedEvent-optIn.xml"))
    #expect(
      try tree(
        VENMessage.createdReport(
          requestID: "c47bb176-8d12-4687-9cf5-679bf1c85344", venID: "ven-1",
          pendingReportRequestIDs: ["4e69240d-30fb-4298-b85b-4bab80bffd8e"])) == sample("oadrCreatedReport.xml"))
    // openleadr's VEN writes oadrTransportAddress "None" (study, Quirks 13); ours leaves it out.
    #expect(
      try tree(
        VENMessage.createPartyRegistration(requestID: "dafd11e9-021e-44f0-9669-7d032c103440", venName: "mge-sample-ven")
      )
        == removing("oadrTransportAddress", from: sample("oadrCreatePartyRegistration.xml")))
    // openleadr's VEN writes an empty eiReportID; ours leaves it out.
    #expect(
      try tree(
        VENMessage.updateReport(
          requestID: "52fa4f09-dffa-429d-875e-de91a14d669c", venID: "ven-1", reports: [Built.update]))
        == removing("eiReportID", from: sample("oadrUpdateReport.xml")))
  }

  @Test("oadrRegisterReport: openleadr's report structure, two kW data points")
  func registerReport() throws {
    let ours = message(
      try tree(VENMessage.registerReport(requestID: "rr-1", venID: "ven-1", reports: [Built.telemetry])))
    let theirs = message(try sample("oadrRegisterReport.xml"))
    #expect(ours.children.map(\.name) == theirs.children.map(\.name))
    let report = ours.children[1]
    #expect(
      report.children.map(\.name.description) == [
        "xcal:duration", "oadr:oadrReportDescription", "oadr:oadrReportDescription", "ei:reportRequestID",
        "ei:reportSpecifierID", "ei:reportName", "ei:createdDateTime",
      ])
    #expect(report.children[5].text == "METADATA_TELEMETRY_USAGE")
    #expect(report.children[6].text == "2026-12-02T14:44:59.001889Z")
    let point = report.children[2]
    #expect(
      point.children.map(\.name.description) == [
        "ei:rID", "ei:reportDataSource", "ei:reportType", "power:powerReal", "ei:readingType", "oadr:oadrSamplingRate",
      ])
    #expect(point.children[0].text == "site-available-discharge")
    #expect(point.children[2].text == "upRegulationCapacityAvailable")
    let unit = point.children[3]
    #expect(unit.children.map { $0.text ?? "" } == ["RealPower", "W", "k", ""])
    #expect(point.children[5].children.map(\.text) == ["PT2S", "PT2S", "false"])
  }

  @Test("text and attribute values are escaped, never pasted; XML-illegal characters become U+FFFD")
  func escaping() throws {
    #expect(XMLWriter.escape("a&b<c>d\"e'f") == "a&amp;b&lt;c&gt;d&quot;e&apos;f")
    #expect(XMLWriter.escape("tab\tline\ncr\r") == "tab&#9;line&#10;cr&#13;")
    #expect(XMLWriter.escape("nul\u{0}bell\u{7}\u{FFFE}") == "nul\u{FFFD}bell\u{FFFD}\u{FFFD}")
    let hostile = "</oadr:oadrVenName><oadr:oadrReportOnly>true</oadr:oadrReportOnly><x a='&amp;'>"
    let bytes = VENMessage.createPartyRegistration(requestID: "r\"&'<>", venName: hostile)
    let registration = message(try tree(bytes))
    #expect(registration.children.count == 7)
    #expect(registration.children[0].text == "r\"&'<>")
    #expect(registration.children[5].text == hostile)
    let text = String(decoding: bytes, as: UTF8.self)
    #expect(text.hasPrefix("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<oadr:oadrPayload xmlns:oadr="))
  }

  @Test("round trip: every builder's document reads back with its values")
  func roundTrip() throws {
    for (name, bytes) in Built.documents() {
      #expect(throws: Never.self, "\(name)") { _ = try XMLTreeElement.parse(bytes) }
    }
    // The VEN's oadrResponse and oadrCanceledPartyRegistration are also VTN messages: decode them.
    #expect(
      try VTNMessage.decode(VENMessage.response(code: 463, description: "NOT REGISTERED", requestID: "q", venID: "v"))
        == .response(Response(code: 463, description: "NOT REGISTERED", requestID: "q", venID: "v")))
    #expect(
      try VTNMessage.decode(VENMessage.canceledPartyRegistration(requestID: "c", registrationID: "reg", venID: "v"))
        == .canceledPartyRegistration(
          CanceledPartyRegistration(
            response: Response(code: 200, description: "OK", requestID: "c", venID: "v"), registrationID: "reg",
            venID: "v")))
    // The values of an update, read back with the decoder's own readers.
    let report = message(try tree(VENMessage.updateReport(requestID: "u", venID: "v", reports: [Built.update])))
    let node = Node(element: report, path: "")
    let decoder = VTNDecoder(limits: .default)
    let interval = try node.require(NS.oadr, "oadrReport").require(NS.strm, "intervals").require(NS.ei, "interval")
    expectDate(
      try decoder.dateTime(interval.require(NS.xcal, "dtstart").require(NS.xcal, "date-time")), 1_796_222_699.001921)
    let payload = try interval.require(NS.oadr, "oadrReportPayload")
    #expect(payload.string(NS.ei, "rID") == "site-meter-power")
    #expect(try decoder.number(payload.require(NS.ei, "payloadFloat").require(NS.ei, "value")) == 41.5)
  }

  @Test("numbers as xs:float text")
  func numbers() {
    #expect(VENMessage.format(41.5) == "41.5")
    #expect(VENMessage.format(2) == "2.0")
    #expect(VENMessage.format(-75) == "-75.0")
    #expect(VENMessage.format(1e-7) == "0.0000001")
    #expect(VENMessage.format(-1.25e-5) == "-0.0000125")
    #expect(VENMessage.format(1.2345e20) == "123450000000000000000.0")
    #expect(VENMessage.format(1e16) == "10000000000000000.0")
    #expect(VENMessage.format(0) == "0.0")
    for value in [1e-7, 3.14159e-12, 6.02214076e23, -2.5e-300, 1.7976931348623157e308, 5e-324] {
      #expect(Double(VENMessage.format(value)) == value)
      #expect(!VENMessage.format(value).contains("e"))
    }
    #expect(VENMessage.format(.nan) == "NaN")
    #expect(VENMessage.format(-.infinity) == "-INF")
  }
}
