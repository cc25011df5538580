// Reading a VTN's document into a `VTNMessage`.
//
// The shape is `oadr:oadrPayload > [ds:Signature] > oadr:oadrSignedObject > message`
// (docs/openadr-study.md, "Document shape"). The signature is not checked here: openleadr's
// VTN signs only when asked to, and on plain HTTP nothing is verified (study, "TLS, identity
// and signatures"). The decoder is lenient where openleadr is sloppy (a missing priority is
// 0, empty IDs are nil, a bare `P` duration is 0) and strict where a value would mislead the
// VEN: a duration that is negative or longer than `Limits.maxDurationSeconds`, a number that
// is not finite, a negative modificationNumber. Each error names the element's path, e.g.
// `oadr:oadrDistributeEvent/oadr:oadrEvent[2]/ei:eiEvent/ei:eiActivePeriod/xcal:properties:
// xcal:dtstart missing`.

import Foundation

extension VTNMessage {
  /// Decodes one HTTP body from the VTN.
  public static func decode(
    _ bytes: some Collection<UInt8>, limits: Limits = .default
  ) throws(OpenADRDocumentError) -> VTNMessage {
    // Checked before the copy: a huge body costs nothing more than its count.
    if bytes.count > limits.maxBytes {
      throw OpenADRDocumentError(
        .tooLarge, "body is \(bytes.count) bytes, over the \(limits.maxBytes)-byte limit")
    }
    let root = try XMLTreeElement.parse(Array(bytes), limits: limits)
    return try VTNDecoder(limits: limits).decode(root)
  }
}

/// An element with the path that led to it, so that errors can say where.
struct Node {
  let element: XMLTreeElement
  let path: String

  var name: XMLName { element.name }

  /// Trimmed text, nil when absent or empty.
  var text: String? {
    guard let text = element.text?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty else { return nil }
    return text
  }

  func children(_ namespace: String, _ local: String) -> [Node] {
    let matching = element.children.filter { $0.name.namespace == namespace && $0.name.local == local }
    let step = XMLName(namespace, local).description
    if matching.count == 1 { return [Node(element: matching[0], path: path + "/" + step)] }
    return matching.enumerated().map { Node(element: $1, path: "\(path)/\(step)[\($0 + 1)]") }
  }

  func child(_ namespace: String, _ local: String) -> Node? {
    guard let element = element.children.first(where: { $0.name.namespace == namespace && $0.name.local == local })
    else { return nil }
    return Node(element: element, path: path + "/" + XMLName(namespace, local).description)
  }

  func require(_ namespace: String, _ local: String) throws(OpenADRDocumentError) -> Node {
    guard let node = child(namespace, local) else {
      throw OpenADRDocumentError(.missingValue, "\(path): \(XMLName(namespace, local)) missing")
    }
    return node
  }

  /// The text of a child, nil when the child is absent or empty.
  func string(_ namespace: String, _ local: String) -> String? { child(namespace, local)?.text }

  func requireString(_ namespace: String, _ local: String) throws(OpenADRDocumentError) -> String {
    guard let text = try require(namespace, local).text else {
      throw OpenADRDocumentError(.missingValue, "\(path)/\(XMLName(namespace, local)): empty")
    }
    return text
  }

  func invalid(_ what: String) -> OpenADRDocumentError {
    OpenADRDocumentError(.invalidValue, "\(path): \(what)")
  }
}

struct VTNDecoder {
  let limits: Limits

  func decode(_ root: XMLTreeElement) throws(OpenADRDocumentError) -> VTNMessage {
    guard root.name == XMLName(NS.oadr, "oadrPayload") else {
      throw OpenADRDocumentError(
        .notOpenADR,
        "root element is \(root.name.local) in namespace \"\(root.name.namespace)\", expected oadrPayload in \(NS.oadr)"
      )
    }
    let payload = Node(element: root, path: "oadr:oadrPayload")
    let signed = try payload.require(NS.oadr, "oadrSignedObject")
    guard let first = signed.element.children.first else {
      throw OpenADRDocumentError(.missingValue, "\(signed.path): no message in it")
    }
    let message = Node(element: first, path: first.name.description)
    guard first.name.namespace == NS.oadr else {
      throw OpenADRDocumentError(
        .notOpenADR, "message \(first.name.local) is in namespace \"\(first.name.namespace)\", expected \(NS.oadr)")
    }
    switch first.name.local {
    case "oadrResponse":
      return .response(try response(of: message))
    case "oadrCreatedPartyRegistration":
      return .createdPartyRegistration(try createdPartyRegistration(message))
    case "oadrDistributeEvent":
      return .distributeEvent(try distributeEvent(message))
    case "oadrRegisteredReport":
      return .registeredReport(
        RegisteredReport(
          response: try response(of: message),
          reportRequests: try message.children(NS.oadr, "oadrReportRequest").map(reportRequest)))
    case "oadrCreateReport":
      return .createReport(
        CreateReport(
          requestID: try message.requireString(NS.pyld, "requestID"),
          reportRequests: try message.children(NS.oadr, "oadrReportRequest").map(reportRequest),
          venID: message.string(NS.ei, "venID")))
    case "oadrCancelReport":
      return .cancelReport(
        CancelReport(
          requestID: try message.requireString(NS.pyld, "requestID"),
          reportRequestIDs: message.children(NS.ei, "reportRequestID").compactMap(\.text),
          reportToFollow: try boolean(message.require(NS.pyld, "reportToFollow")),
          venID: message.string(NS.ei, "venID")))
    case "oadrRequestReregistration":
      return .requestReregistration(venID: message.string(NS.ei, "venID"))
    case "oadrCancelPartyRegistration":
      return .cancelPartyRegistration(
        CancelPartyRegistration(
          requestID: try message.requireString(NS.pyld, "requestID"),
          registrationID: try message.requireString(NS.ei, "registrationID"),
          venID: message.string(NS.ei, "venID")))
    case "oadrCanceledPartyRegistration":
      return .canceledPartyRegistration(
        CanceledPartyRegistration(
          response: try response(of: message), registrationID: message.string(NS.ei, "registrationID"),
          venID: message.string(NS.ei, "venID")))
    case "oadrCreatedReport":
      return .createdReport(try response(of: message))
    case "oadrUpdatedReport":
      return .updatedReport(try response(of: message))
    case "oadrCreatedEvent":
      // eiCreatedEvent > eiResponse, venID (push profiles; the pull VEN never gets one).
      let created = try message.require(NS.pyld, "eiCreatedEvent")
      return .createdEvent(try response(of: created))
    default:
      throw OpenADRDocumentError(
        .unsupportedMessage, "\(first.name.local) is not a message this VEN reads from a VTN")
    }
  }

  // MARK: Responses and registration

  /// The `ei:eiResponse` of a message, with the message's `ei:venID`.
  func response(of message: Node) throws(OpenADRDocumentError) -> Response {
    let node = try message.require(NS.ei, "eiResponse")
    let codeText = try node.requireString(NS.ei, "responseCode")
    guard let code = Int(codeText), (100...999).contains(code) else {
      throw node.invalid("responseCode \"\(codeText)\" is not a 3-digit code")
    }
    return Response(
      code: code, description: node.string(NS.ei, "responseDescription"),
      requestID: node.string(NS.pyld, "requestID"), venID: message.string(NS.ei, "venID"))
  }

  func createdPartyRegistration(_ message: Node) throws(OpenADRDocumentError) -> CreatedPartyRegistration {
    var profiles: [CreatedPartyRegistration.Profile] = []
    for profile in message.child(NS.oadr, "oadrProfiles")?.children(NS.oadr, "oadrProfile") ?? [] {
      let transports = profile.child(NS.oadr, "oadrTransports")?.children(NS.oadr, "oadrTransport")
        .compactMap { $0.string(NS.oadr, "oadrTransportName") }
      profiles.append(
        .init(name: try profile.requireString(NS.oadr, "oadrProfileName"), transports: transports ?? []))
    }
    var poll: Double?
    if let frequency = message.child(NS.oadr, "oadrRequestedOadrPollFreq") {
      poll = try duration(frequency.require(NS.xcal, "duration"))
    }
    return CreatedPartyRegistration(
      response: try response(of: message), registrationID: message.string(NS.ei, "registrationID"),
      venID: message.string(NS.ei, "venID"), vtnID: message.string(NS.ei, "vtnID"), pollFrequencySeconds: poll,
      profiles: profiles)
  }

  // MARK: Events

  func distributeEvent(_ message: Node) throws(OpenADRDocumentError) -> DistributeEvent {
    // eiResponse is optional in oadrDistributeEvent (schema); openleadr always writes one.
    let response = message.child(NS.ei, "eiResponse") == nil ? nil : try self.response(of: message)
    var events: [Event] = []
    var unreadable: [UnreadableEvent] = []
    for oadrEvent in message.children(NS.oadr, "oadrEvent") {
      do {
        events.append(try event(oadrEvent))
      } catch {
        // An event that names itself is answered on its own; one that does not makes the
        // whole distribution unreadable.
        let descriptor = oadrEvent.child(NS.ei, "eiEvent")?.child(NS.ei, "eventDescriptor")
        guard let id = descriptor?.string(NS.ei, "eventID"), !id.isEmpty,
          let m = descriptor?.string(NS.ei, "modificationNumber").flatMap({
            Int($0.trimmingCharacters(in: .whitespaces))
          }),
          m >= 0
        else { throw error }
        let never = oadrEvent.child(NS.oadr, "oadrResponseRequired")?.text == "never"
        unreadable.append(UnreadableEvent(eventID: id, modificationNumber: m, problem: error, responseRequired: !never))
      }
    }
    return DistributeEvent(
      response: response, requestID: message.string(NS.pyld, "requestID"), vtnID: message.string(NS.ei, "vtnID"),
      events: events, unreadable: unreadable)
  }

  func event(_ oadrEvent: Node) throws(OpenADRDocumentError) -> Event {
    let eiEvent = try oadrEvent.require(NS.ei, "eiEvent")
    let descriptor = try eiEvent.require(NS.ei, "eventDescriptor")
    let modificationNumber = try integer(descriptor.require(NS.ei, "modificationNumber"))
    let priority = try descriptor.child(NS.ei, "priority").map(integer) ?? 0

    let period = try eiEvent.require(NS.ei, "eiActivePeriod").require(NS.xcal, "properties")
    let start = try dateTime(period.require(NS.xcal, "dtstart").require(NS.xcal, "date-time"))
    let eventDuration = try duration(period.require(NS.xcal, "duration").require(NS.xcal, "duration"))
    let startAfter = try period.child(NS.xcal, "tolerance")?.child(NS.xcal, "tolerate")?
      .child(NS.xcal, "startafter").map(duration)
    func extra(_ local: String) throws(OpenADRDocumentError) -> Double? {
      guard let node = period.child(NS.ei, local) else { return nil }
      return try duration(node.require(NS.xcal, "duration"))
    }

    var signals: [Signal] = []
    for signal in try eiEvent.require(NS.ei, "eiEventSignals").children(NS.ei, "eiEventSignal") {
      signals.append(try self.signal(signal))
    }
    let target = eiEvent.child(NS.ei, "eiTarget")
    func targets(_ local: String) -> [String] { target?.children(NS.ei, local).compactMap(\.text) ?? [] }

    var responseRequired = true
    if let required = oadrEvent.child(NS.oadr, "oadrResponseRequired") {
      switch required.text {
      case "always": responseRequired = true
      case "never": responseRequired = false
      default: throw required.invalid("\"\(required.text ?? "")\" is neither always nor never")
      }
    }

    return Event(
      eventID: try descriptor.requireString(NS.ei, "eventID"), modificationNumber: modificationNumber,
      modificationDateTime: try descriptor.child(NS.ei, "modificationDateTime").map(dateTime),
      modificationReason: descriptor.string(NS.ei, "modificationReason"), priority: priority,
      marketContext: descriptor.child(NS.ei, "eiMarketContext")?.string(NS.emix, "marketContext"),
      createdDateTime: try descriptor.child(NS.ei, "createdDateTime").map(dateTime),
      status: try descriptor.requireString(NS.ei, "eventStatus"), testEvent: descriptor.string(NS.ei, "testEvent"),
      vtnComment: descriptor.string(NS.ei, "vtnComment"), start: start, durationSeconds: eventDuration,
      startAfterSeconds: startAfter, notificationSeconds: try extra("x-eiNotification"),
      rampUpSeconds: try extra("x-eiRampUp"), recoverySeconds: try extra("x-eiRecovery"), signals: signals,
      targetVenIDs: targets("venID"), targetResourceIDs: targets("resourceID"), targetGroupIDs: targets("groupID"),
      targetPartyIDs: targets("partyID"), responseRequired: responseRequired)
  }

  func signal(_ node: Node) throws(OpenADRDocumentError) -> Signal {
    var intervals: [Interval] = []
    var offset = 0.0
    for interval in node.child(NS.strm, "intervals")?.children(NS.ei, "interval") ?? [] {
      let length = try duration(interval.require(NS.xcal, "duration").require(NS.xcal, "duration"))
      let value = try number(
        interval.require(NS.ei, "signalPayload").require(NS.ei, "payloadFloat").require(NS.ei, "value"))
      let declaredStart = try interval.child(NS.xcal, "dtstart").map { node throws(OpenADRDocumentError) in
        try dateTime(node.require(NS.xcal, "date-time"))
      }
      intervals.append(
        Interval(
          uid: interval.child(NS.xcal, "uid")?.string(NS.xcal, "text") ?? String(intervals.count),
          offsetSeconds: offset, durationSeconds: length, value: value, declaredStart: declaredStart))
      offset += length
    }
    let current = try node.child(NS.ei, "currentValue").map { node throws(OpenADRDocumentError) in
      try number(node.require(NS.ei, "payloadFloat").require(NS.ei, "value"))
    }
    return Signal(
      name: try node.requireString(NS.ei, "signalName"), type: try node.requireString(NS.ei, "signalType"),
      id: try node.requireString(NS.ei, "signalID"), intervals: intervals, itemBase: itemBase(in: node),
      currentValue: current)
  }

  /// The first child that is an item base: an element of the power namespace (powerReal,
  /// energyReal...) or one of oadr's own units (customUnit, currency, ...), by its parts.
  func itemBase(in node: Node) -> ItemBase? {
    let units: Set<String> = [
      "customUnit", "current", "currency", "currencyPerKWh", "currencyPerKW", "currencyPerThm", "frequency", "Therm",
      "temperature", "pulseCount",
    ]
    guard
      let element = node.element.children.first(where: {
        ($0.name.namespace == NS.power && $0.name.local != "powerAttributes")
          || ($0.name.namespace == NS.oadr && units.contains($0.name.local))
          || ($0.name.namespace == NS.emix && $0.name.local == "itemBase")
      })
    else { return nil }
    let unit = Node(element: element, path: node.path + "/" + element.name.description)
    func part(_ local: String) -> String? {
      unit.element.children.first { $0.name.local == local }.flatMap { Node(element: $0, path: "").text }
    }
    return ItemBase(
      kind: element.name.local, itemDescription: part("itemDescription"), itemUnits: part("itemUnits"),
      siScaleCode: unit.string(NS.scale, "siScaleCode"))
  }

  // MARK: Reports

  func reportRequest(_ node: Node) throws(OpenADRDocumentError) -> ReportRequest {
    let specifier = try node.require(NS.ei, "reportSpecifier")
    func durationIn(_ namespace: String, _ local: String) throws(OpenADRDocumentError) -> Double? {
      guard let holder = specifier.child(namespace, local) else { return nil }
      return try duration(holder.require(NS.xcal, "duration"))
    }
    var intervalStart: Date?
    var intervalDuration: Double?
    if let properties = specifier.child(NS.ei, "reportInterval")?.child(NS.xcal, "properties") {
      intervalStart = try properties.child(NS.xcal, "dtstart").map { node throws(OpenADRDocumentError) in
        try dateTime(node.require(NS.xcal, "date-time"))
      }
      intervalDuration = try properties.child(NS.xcal, "duration").map { node throws(OpenADRDocumentError) in
        try duration(node.require(NS.xcal, "duration"))
      }
    }
    return ReportRequest(
      reportRequestID: try node.requireString(NS.ei, "reportRequestID"),
      reportSpecifierID: try specifier.requireString(NS.ei, "reportSpecifierID"),
      granularitySeconds: try durationIn(NS.xcal, "granularity"),
      reportBackDurationSeconds: try durationIn(NS.ei, "reportBackDuration"), intervalStart: intervalStart,
      intervalDurationSeconds: intervalDuration,
      rIDs: specifier.children(NS.ei, "specifierPayload").compactMap { $0.string(NS.ei, "rID") })
  }

  // MARK: Values

  func duration(_ node: Node) throws(OpenADRDocumentError) -> Double {
    guard let text = node.text else { throw node.invalid("empty duration") }
    guard let seconds = TimeValues.parseDuration(text), seconds.isFinite else {
      throw node.invalid("\"\(text)\" is not an ISO 8601 duration")
    }
    if seconds < 0 { throw node.invalid("negative duration \"\(text)\"") }
    if seconds > limits.maxDurationSeconds {
      throw node.invalid(
        "duration \"\(text)\" is over the limit of \(Int(limits.maxDurationSeconds / 86_400)) days")
    }
    return seconds
  }

  func dateTime(_ node: Node) throws(OpenADRDocumentError) -> Date {
    guard let text = node.text else { throw node.invalid("empty date-time") }
    guard let date = TimeValues.parseDateTime(text) else {
      throw node.invalid("\"\(text)\" is not a date-time with a time zone (e.g. 2026-12-02T14:49:58Z)")
    }
    return date
  }

  /// A non-negative xs:int.
  func integer(_ node: Node) throws(OpenADRDocumentError) -> Int {
    guard let text = node.text else { throw node.invalid("empty number") }
    guard let value = Int32(text) else { throw node.invalid("\"\(text)\" is not an integer") }
    if value < 0 { throw node.invalid("\(value) is negative") }
    return Int(value)
  }

  /// An xs:float/xs:double in decimal or exponent notation, finite.
  func number(_ node: Node) throws(OpenADRDocumentError) -> Double {
    guard let text = node.text else { throw node.invalid("empty number") }
    // Checked by hand: Swift's Double("…") also reads "nan", "inf" and hexadecimal.
    var rest = Substring(text)
    if rest.first == "+" || rest.first == "-" { rest = rest.dropFirst() }
    let mantissa = rest.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
    rest = rest.dropFirst(mantissa.count)
    var ok = mantissa.contains(where: \.isNumber) && mantissa.filter { $0 == "." }.count <= 1
    if ok, rest.first == "e" || rest.first == "E" {
      rest = rest.dropFirst()
      if rest.first == "+" || rest.first == "-" { rest = rest.dropFirst() }
      ok = !rest.isEmpty && rest.allSatisfy { $0.isASCII && $0.isNumber }
      rest = ""
    }
    guard ok, rest.isEmpty, let value = Double(text) else {
      throw node.invalid("\"\(text)\" is not a finite decimal number")
    }
    guard value.isFinite else { throw node.invalid("\"\(text)\" is not a finite number") }
    return value
  }

  func boolean(_ node: Node) throws(OpenADRDocumentError) -> Bool {
    switch node.text {
    case "true", "1": return true
    case "false", "0": return false
    default: throw node.invalid("\"\(node.text ?? "")\" is not a boolean")
    }
  }
}
