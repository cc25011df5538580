// The VEN's documents to the VTN, built as element trees and serialized by `XMLWriter`.
//
// Structure, namespaces and element order follow what openleadr 0.5.36's own VEN writes
// (Tests/Integration/openadr-samples/, the VEN -> VTN ones), because openleadr's VTN
// validates every incoming document against the 2.0b schema before reading it (study,
// "Transport"); Tests/OpenADRTests checks each builder against that schema. Two deliberate
// differences: no `oadrTransportAddress` (openleadr's VEN writes the text `None`, study
// Quirks 13; it is optional and a pull VEN has none), and no empty `ei:eiReportID`.
// Times are written UTC with microseconds, durations in whole seconds (TimeValues.swift).

import Foundation

/// What the VEN answers per event in oadrCreatedEvent.
public enum OptType: String, Sendable, Equatable {
  case optIn, optOut
}

/// One `eventResponse` of oadrCreatedEvent.
public struct EventResponse: Sendable, Equatable {
  /// The requestID of the oadrDistributeEvent that carried the event.
  public var requestID: String
  public var eventID: String
  /// The modificationNumber last received: the VTN refuses any other (452).
  public var modificationNumber: Int
  public var optType: OptType
  /// 200, or e.g. 460 for a signal the VEN does not support.
  public var code: Int
  public var description: String?

  public init(
    requestID: String, eventID: String, modificationNumber: Int, optType: OptType, code: Int = 200,
    description: String? = "OK"
  ) {
    self.requestID = requestID
    self.eventID = eventID
    self.modificationNumber = modificationNumber
    self.optType = optType
    self.code = code
    self.description = description
  }
}

/// The unit of a data point in oadrRegisterReport: real power, W with an SI scale (k: kW),
/// with the `power:powerAttributes` the schema requires of it.
public struct RealPowerUnit: Sendable, Equatable {
  public var siScaleCode: String
  public var hertz: Double
  public var voltage: Double
  public var ac: Bool

  public init(siScaleCode: String = "k", hertz: Double = 60, voltage: Double = 480, ac: Bool = true) {
    self.siScaleCode = siScaleCode
    self.hertz = hertz
    self.voltage = voltage
    self.ac = ac
  }

  public static let kilowatts = RealPowerUnit()
}

/// One data point of a metadata report (`oadrReportDescription`).
public struct DataPointDescription: Sendable, Equatable {
  public var rID: String
  /// `reportDataSource/resourceID`, when the data point belongs to a named resource.
  public var resourceID: String?
  /// A value of the schema's ReportEnumeratedType (usage, demand, reading,
  /// upRegulationCapacityAvailable, …) or an `x-` extension.
  public var reportType: String
  /// A value of the schema's ReadingTypeEnumeratedType (Direct Read, Net, Estimated, …).
  public var readingType: String
  public var unit: RealPowerUnit?
  public var minPeriodSeconds: Double
  public var maxPeriodSeconds: Double
  public var onChange: Bool

  public init(
    rID: String, resourceID: String? = nil, reportType: String, readingType: String = "Direct Read",
    unit: RealPowerUnit? = .kilowatts, minPeriodSeconds: Double, maxPeriodSeconds: Double, onChange: Bool = false
  ) {
    self.rID = rID
    self.resourceID = resourceID
    self.reportType = reportType
    self.readingType = readingType
    self.unit = unit
    self.minPeriodSeconds = minPeriodSeconds
    self.maxPeriodSeconds = maxPeriodSeconds
    self.onChange = onChange
  }
}

/// One report the VEN offers in oadrRegisterReport.
public struct MetadataReport: Sendable, Equatable {
  public var reportSpecifierID: String
  /// METADATA_TELEMETRY_USAGE, METADATA_TELEMETRY_STATUS, …
  public var reportName: String
  /// The report's `xcal:duration` (openleadr's VEN writes its sampling period there).
  public var durationSeconds: Double?
  public var descriptions: [DataPointDescription]
  public var createdDateTime: Date

  public init(
    reportSpecifierID: String, reportName: String = "METADATA_TELEMETRY_USAGE", durationSeconds: Double? = nil,
    descriptions: [DataPointDescription], createdDateTime: Date
  ) {
    self.reportSpecifierID = reportSpecifierID
    self.reportName = reportName
    self.durationSeconds = durationSeconds
    self.descriptions = descriptions
    self.createdDateTime = createdDateTime
  }

  /// The appliance's TELEMETRY_USAGE: the site's grid import and the discharge power it has
  /// available, both kW. Grid import is `usage` (the 2.0b profile's type for telemetry
  /// usage); available discharge is `upRegulationCapacityAvailable`, the schema's term for
  /// how much more a resource can supply (discharging raises supply to the grid).
  public static func siteTelemetry(
    reportSpecifierID: String, gridImportRID: String, availableDischargeRID: String, resourceID: String? = nil,
    samplingSeconds: Double, unit: RealPowerUnit = .kilowatts, createdDateTime: Date
  ) -> MetadataReport {
    MetadataReport(
      reportSpecifierID: reportSpecifierID, durationSeconds: samplingSeconds,
      descriptions: [
        DataPointDescription(
          rID: gridImportRID, resourceID: resourceID, reportType: "usage", unit: unit,
          minPeriodSeconds: samplingSeconds, maxPeriodSeconds: samplingSeconds),
        DataPointDescription(
          rID: availableDischargeRID, resourceID: resourceID, reportType: "upRegulationCapacityAvailable", unit: unit,
          minPeriodSeconds: samplingSeconds, maxPeriodSeconds: samplingSeconds),
      ], createdDateTime: createdDateTime)
  }
}

/// One `oadrReport` of oadrUpdateReport: values for a report request.
public struct ReportUpdate: Sendable, Equatable {
  public struct IntervalValues: Sendable, Equatable {
    public var start: Date
    public var durationSeconds: Double?
    /// (rID, value) in the order written.
    public var values: [(rID: String, value: Double)]

    public init(start: Date, durationSeconds: Double? = nil, values: [(rID: String, value: Double)]) {
      self.start = start
      self.durationSeconds = durationSeconds
      self.values = values
    }

    public static func == (a: IntervalValues, b: IntervalValues) -> Bool {
      a.start == b.start && a.durationSeconds == b.durationSeconds && a.values.map(\.rID) == b.values.map(\.rID)
        && a.values.map(\.value) == b.values.map(\.value)
    }
  }

  public var reportRequestID: String
  public var reportSpecifierID: String
  public var reportName: String
  public var createdDateTime: Date
  public var start: Date
  public var intervals: [IntervalValues]

  public init(
    reportRequestID: String, reportSpecifierID: String, reportName: String = "TELEMETRY_USAGE", createdDateTime: Date,
    start: Date, intervals: [IntervalValues]
  ) {
    self.reportRequestID = reportRequestID
    self.reportSpecifierID = reportSpecifierID
    self.reportName = reportName
    self.createdDateTime = createdDateTime
    self.start = start
    self.intervals = intervals
  }
}

/// Builders of the VEN's messages: UTF-8 documents with an XML declaration, ready to POST
/// with `Content-Type: application/xml`.
public enum VENMessage {
  public static func queryRegistration(requestID: String) -> [UInt8] {
    document("oadrQueryRegistration", [pyld("requestID", requestID)])
  }

  public static func createPartyRegistration(
    requestID: String, registrationID: String? = nil, venID: String? = nil, venName: String,
    reportOnly: Bool = false, xmlSignature: Bool = false, httpPullModel: Bool = true
  ) -> [UInt8] {
    var body = [pyld("requestID", requestID)]
    if let registrationID { body.append(ei("registrationID", registrationID)) }
    if let venID { body.append(ei("venID", venID)) }
    body += [
      oadr("oadrProfileName", "2.0b"), oadr("oadrTransportName", "simpleHttp"),
      oadr("oadrReportOnly", String(reportOnly)), oadr("oadrXmlSignature", String(xmlSignature)),
      oadr("oadrVenName", venName), oadr("oadrHttpPullModel", String(httpPullModel)),
    ]
    return document("oadrCreatePartyRegistration", body)
  }

  public static func cancelPartyRegistration(requestID: String, registrationID: String, venID: String) -> [UInt8] {
    document(
      "oadrCancelPartyRegistration",
      [pyld("requestID", requestID), ei("registrationID", registrationID), ei("venID", venID)])
  }

  public static func canceledPartyRegistration(
    code: Int = 200, description: String? = "OK", requestID: String?, registrationID: String?, venID: String
  ) -> [UInt8] {
    var body = [eiResponse(code: code, description: description, requestID: requestID)]
    if let registrationID { body.append(ei("registrationID", registrationID)) }
    body.append(ei("venID", venID))
    return document("oadrCanceledPartyRegistration", body)
  }

  public static func poll(venID: String) -> [UInt8] {
    document("oadrPoll", [ei("venID", venID)])
  }

  public static func response(
    code: Int = 200, description: String? = "OK", requestID: String?, venID: String?
  ) -> [UInt8] {
    var body = [eiResponse(code: code, description: description, requestID: requestID)]
    if let venID { body.append(ei("venID", venID)) }
    return document("oadrResponse", body)
  }

  public static func requestEvent(requestID: String, venID: String, replyLimit: Int? = nil) -> [UInt8] {
    var request = [pyld("requestID", requestID), ei("venID", venID)]
    if let replyLimit { request.append(pyld("replyLimit", String(replyLimit))) }
    return document("oadrRequestEvent", [element(NS.pyld, "eiRequestEvent", request)])
  }

  /// `responses` empty is allowed (nothing required an answer); `eventResponses` is then left out.
  public static func createdEvent(
    venID: String, responses: [EventResponse], code: Int = 200, description: String? = "OK", requestID: String? = nil
  ) -> [UInt8] {
    var created = [eiResponse(code: code, description: description, requestID: requestID)]
    if !responses.isEmpty {
      created.append(
        element(
          NS.ei, "eventResponses",
          responses.map { response in
            var parts = [ei("responseCode", String(response.code))]
            if let description = response.description { parts.append(ei("responseDescription", description)) }
            parts += [
              pyld("requestID", response.requestID),
              element(
                NS.ei, "qualifiedEventID",
                [ei("eventID", response.eventID), ei("modificationNumber", String(response.modificationNumber))]),
              ei("optType", response.optType.rawValue),
            ]
            return element(NS.ei, "eventResponse", parts)
          }))
    }
    created.append(ei("venID", venID))
    return document("oadrCreatedEvent", [element(NS.pyld, "eiCreatedEvent", created)])
  }

  public static func registerReport(requestID: String, venID: String, reports: [MetadataReport]) -> [UInt8] {
    var body = [pyld("requestID", requestID)]
    for report in reports {
      var parts: [XMLTreeElement] = []
      if let duration = report.durationSeconds { parts.append(durationProperty(NS.xcal, "duration", duration)) }
      for point in report.descriptions {
        var description = [ei("rID", point.rID)]
        if let resourceID = point.resourceID {
          description.append(element(NS.ei, "reportDataSource", [ei("resourceID", resourceID)]))
        }
        description.append(ei("reportType", point.reportType))
        if let unit = point.unit { description.append(realPower(unit)) }
        description.append(ei("readingType", point.readingType))
        description.append(
          element(
            NS.oadr, "oadrSamplingRate",
            [
              oadr("oadrMinPeriod", TimeValues.formatDuration(seconds: point.minPeriodSeconds)),
              oadr("oadrMaxPeriod", TimeValues.formatDuration(seconds: point.maxPeriodSeconds)),
              oadr("oadrOnChange", String(point.onChange)),
            ]))
        parts.append(element(NS.oadr, "oadrReportDescription", description))
      }
      // reportRequestID 0: a metadata report answers no request (openleadr's VEN writes 0).
      parts += [
        ei("reportRequestID", "0"), ei("reportSpecifierID", report.reportSpecifierID),
        ei("reportName", report.reportName), ei("createdDateTime", TimeValues.formatDateTime(report.createdDateTime)),
      ]
      body.append(element(NS.oadr, "oadrReport", parts))
    }
    body.append(ei("venID", venID))
    return document("oadrRegisterReport", body)
  }

  /// Confirms report requests (after oadrRegisteredReport or oadrCreateReport): `requestID`
  /// is that message's requestID.
  public static func createdReport(
    requestID: String, venID: String, pendingReportRequestIDs: [String], code: Int = 200,
    description: String? = "OK"
  ) -> [UInt8] {
    document(
      "oadrCreatedReport",
      [
        eiResponse(code: code, description: description, requestID: requestID),
        element(NS.oadr, "oadrPendingReports", pendingReportRequestIDs.map { ei("reportRequestID", $0) }),
        ei("venID", venID),
      ])
  }

  public static func updateReport(requestID: String, venID: String, reports: [ReportUpdate]) -> [UInt8] {
    var body = [pyld("requestID", requestID)]
    for report in reports {
      // One ei:interval per value: the schema allows several oadrReportPayloads in one
      // interval, but openleadr's VTN reads exactly one (report_service.update_report groups
      // intervals by `report_payload.r_id`), as its own VEN writes them.
      let intervals = report.intervals.flatMap { interval in
        interval.values.map { rID, value in
          var parts = [dateTimeProperty("dtstart", interval.start)]
          if let duration = interval.durationSeconds { parts.append(durationProperty(NS.xcal, "duration", duration)) }
          parts.append(
            element(
              NS.oadr, "oadrReportPayload",
              [ei("rID", rID), element(NS.ei, "payloadFloat", [ei("value", format(value))])]))
          return element(NS.ei, "interval", parts)
        }
      }
      body.append(
        element(
          NS.oadr, "oadrReport",
          [
            dateTimeProperty("dtstart", report.start), element(NS.strm, "intervals", intervals),
            ei("reportRequestID", report.reportRequestID), ei("reportSpecifierID", report.reportSpecifierID),
            ei("reportName", report.reportName),
            ei("createdDateTime", TimeValues.formatDateTime(report.createdDateTime)),
          ]))
    }
    body.append(ei("venID", venID))
    return document("oadrUpdateReport", body)
  }

  // MARK: Parts

  /// `oadrPayload > oadrSignedObject > message` with `ei:schemaVersion="2.0b"`.
  static func document(_ message: String, _ body: [XMLTreeElement]) -> [UInt8] {
    let payload = element(
      NS.oadr, "oadrPayload",
      [
        XMLTreeElement(
          XMLName(NS.oadr, "oadrSignedObject"),
          attributes: [XMLAttribute(name: XMLName(NS.oadr, "Id"), value: "oadrSignedObject")],
          children: [
            XMLTreeElement(
              XMLName(NS.oadr, message),
              attributes: [XMLAttribute(name: XMLName(NS.ei, "schemaVersion"), value: "2.0b")],
              children: body)
          ])
      ])
    return XMLWriter.document(payload)
  }

  static func element(_ namespace: String, _ local: String, _ children: [XMLTreeElement]) -> XMLTreeElement {
    XMLTreeElement(XMLName(namespace, local), children: children)
  }

  static func ei(_ local: String, _ text: String) -> XMLTreeElement {
    XMLTreeElement(XMLName(NS.ei, local), text: text)
  }
  static func oadr(_ local: String, _ text: String) -> XMLTreeElement {
    XMLTreeElement(XMLName(NS.oadr, local), text: text)
  }
  static func pyld(_ local: String, _ text: String) -> XMLTreeElement {
    XMLTreeElement(XMLName(NS.pyld, local), text: text)
  }

  static func eiResponse(code: Int, description: String?, requestID: String?) -> XMLTreeElement {
    var parts = [ei("responseCode", String(code))]
    if let description { parts.append(ei("responseDescription", description)) }
    // requestID is required by the schema; empty when the answer is to no request.
    parts.append(pyld("requestID", requestID ?? ""))
    return element(NS.ei, "eiResponse", parts)
  }

  /// `<ns:local><xcal:duration>PT…</xcal:duration></ns:local>`.
  static func durationProperty(_ namespace: String, _ local: String, _ seconds: Double) -> XMLTreeElement {
    element(
      namespace, local,
      [XMLTreeElement(XMLName(NS.xcal, "duration"), text: TimeValues.formatDuration(seconds: seconds))])
  }

  /// `<xcal:dtstart><xcal:date-time>…Z</xcal:date-time></xcal:dtstart>`.
  static func dateTimeProperty(_ local: String, _ date: Date) -> XMLTreeElement {
    element(NS.xcal, local, [XMLTreeElement(XMLName(NS.xcal, "date-time"), text: TimeValues.formatDateTime(date))])
  }

  static func realPower(_ unit: RealPowerUnit) -> XMLTreeElement {
    element(
      NS.power, "powerReal",
      [
        XMLTreeElement(XMLName(NS.power, "itemDescription"), text: "RealPower"),
        XMLTreeElement(XMLName(NS.power, "itemUnits"), text: "W"),
        XMLTreeElement(XMLName(NS.scale, "siScaleCode"), text: unit.siScaleCode),
        element(
          NS.power, "powerAttributes",
          [
            XMLTreeElement(XMLName(NS.power, "hertz"), text: format(unit.hertz)),
            XMLTreeElement(XMLName(NS.power, "voltage"), text: format(unit.voltage)),
            XMLTreeElement(XMLName(NS.power, "ac"), text: String(unit.ac)),
          ]),
      ])
  }

  /// A number as xs:float/xs:decimal text in plain decimal notation (`41.5`, `2.0`,
  /// `0.0000001`): the shortest digits that read back the same value, never an exponent,
  /// because openleadr turns a value into a float only when it matches `-?[\d.]+` and keeps
  /// `1e-07` as a string (utils.normalize_dict). The non-finite get the schema's spellings
  /// (`NaN`, `INF`, `-INF`); openleadr keeps those as strings too, so the VEN should leave
  /// such a reading out rather than send it.
  static func format(_ value: Double) -> String {
    if value.isNaN { return "NaN" }
    if value.isInfinite { return value < 0 ? "-INF" : "INF" }
    let shortest = String(value)  // "41.5", "2.0", "1e-07", "1.2345e+20"
    guard let e = shortest.firstIndex(where: { $0 == "e" || $0 == "E" }),
      let exponent = Int(shortest[shortest.index(after: e)...])
    else { return shortest }
    var mantissa = shortest[..<e]
    let negative = mantissa.hasPrefix("-")
    if negative { mantissa = mantissa.dropFirst() }
    let point = mantissa.firstIndex(of: ".") ?? mantissa.endIndex
    let integerDigits = mantissa.distance(from: mantissa.startIndex, to: point)
    var digits = mantissa.filter(\.isNumber)
    // The decimal point goes after `integerDigits + exponent` digits.
    var position = integerDigits + exponent
    if position <= 0 {
      digits = String(repeating: "0", count: 1 - position) + digits
      position = 1
    } else if position >= digits.count {
      digits += String(repeating: "0", count: position - digits.count)
    }
    var whole = String(digits.prefix(position))
    var fraction = String(digits.dropFirst(position))
    while fraction.hasSuffix("0") { fraction.removeLast() }
    if fraction.isEmpty { fraction = "0" }
    while whole.count > 1 && whole.hasPrefix("0") { whole.removeFirst() }
    return (negative ? "-" : "") + whole + "." + fraction
  }
}
