// What a VTN sends a VEN (OpenADR 2.0b, profile B, simpleHttp pull), as plain values.
//
// Decoding is in VTNDecoder.swift; these are the results. Strings are kept raw where the VEN
// must judge them itself: an unknown signal name or type is not a decoding error (the VEN
// answers such an event with code 460, docs/openadr-study.md, "Events"), and an event's
// status is the VTN's word at distribution time only (the VEN keeps the schedule itself).
// Empty elements (`<ei:venID/>`) are nil, never "".

import Foundation

public enum VTNMessage: Sendable, Equatable {
  /// oadrResponse: an acknowledgement, an error code, or "nothing pending" after a poll.
  case response(Response)
  /// oadrCreatedPartyRegistration: the answer to a query or a registration.
  case createdPartyRegistration(CreatedPartyRegistration)
  /// oadrDistributeEvent: the VEN's whole current event set.
  case distributeEvent(DistributeEvent)
  /// oadrRegisteredReport: the answer to oadrRegisterReport, with what the VTN wants reported.
  case registeredReport(RegisteredReport)
  /// oadrCreateReport: a report request sent later (delivered on a poll).
  case createReport(CreateReport)
  /// oadrCancelReport.
  case cancelReport(CancelReport)
  /// oadrRequestReregistration: register again (the VEN first answers oadrResponse).
  case requestReregistration(venID: String?)
  /// oadrCancelPartyRegistration sent by the VTN.
  case cancelPartyRegistration(CancelPartyRegistration)
  /// oadrCanceledPartyRegistration: the answer to the VEN's cancellation.
  case canceledPartyRegistration(CanceledPartyRegistration)
  /// oadrCreatedReport from the VTN (its eiResponse).
  case createdReport(Response)
  /// oadrUpdatedReport: the answer to oadrUpdateReport.
  case updatedReport(Response)
  /// oadrCreatedEvent from the VTN (push profiles only; its eiResponse).
  case createdEvent(Response)

  /// The message element's local name (`oadrDistributeEvent`), for logs.
  public var messageName: String {
    switch self {
    case .response: "oadrResponse"
    case .createdPartyRegistration: "oadrCreatedPartyRegistration"
    case .distributeEvent: "oadrDistributeEvent"
    case .registeredReport: "oadrRegisteredReport"
    case .createReport: "oadrCreateReport"
    case .cancelReport: "oadrCancelReport"
    case .requestReregistration: "oadrRequestReregistration"
    case .cancelPartyRegistration: "oadrCancelPartyRegistration"
    case .canceledPartyRegistration: "oadrCanceledPartyRegistration"
    case .createdReport: "oadrCreatedReport"
    case .updatedReport: "oadrUpdatedReport"
    case .createdEvent: "oadrCreatedEvent"
    }
  }
}

/// An `ei:eiResponse`, with the message's `ei:venID` when the message has one.
public struct Response: Sendable, Equatable {
  /// 200 is OK; 4xx are OpenADR errors (452 invalid ID, 463 not registered...).
  public var code: Int
  public var description: String?
  /// The request answered. openleadr writes the literal `None` in the oadrDistributeEvent
  /// that answers a poll (study, Quirks 3); it is kept as written.
  public var requestID: String?
  public var venID: String?

  public init(code: Int, description: String? = nil, requestID: String? = nil, venID: String? = nil) {
    self.code = code
    self.description = description
    self.requestID = requestID
    self.venID = venID
  }

  public var isOK: Bool { code == 200 }
}

public struct CreatedPartyRegistration: Sendable, Equatable {
  public struct Profile: Sendable, Equatable {
    public var name: String
    public var transports: [String]

    public init(name: String, transports: [String]) {
      self.name = name
      self.transports = transports
    }
  }

  public var response: Response
  /// nil (empty in the document) when the VTN refused the registration, or answered a query.
  public var registrationID: String?
  public var venID: String?
  public var vtnID: String?
  public var pollFrequencySeconds: Double?
  public var profiles: [Profile]

  public init(
    response: Response, registrationID: String? = nil, venID: String? = nil, vtnID: String? = nil,
    pollFrequencySeconds: Double? = nil, profiles: [Profile] = []
  ) {
    self.response = response
    self.registrationID = registrationID
    self.venID = venID
    self.vtnID = vtnID
    self.pollFrequencySeconds = pollFrequencySeconds
    self.profiles = profiles
  }

  /// openleadr's VTN refuses with code 200 and an empty registrationID (study, Registration).
  public var isRefusal: Bool { !response.isOK || registrationID == nil }
}

public struct DistributeEvent: Sendable, Equatable {
  public var response: Response?
  public var requestID: String?
  public var vtnID: String?
  public var events: [Event]
  /// Events whose id and modification could be read but not the rest (an absurd or
  /// missing value): the VEN answers them with 454 rather than dropping the whole
  /// distribution, so one bad event does not hide the good ones.
  public var unreadable: [UnreadableEvent]

  public init(
    response: Response? = nil, requestID: String? = nil, vtnID: String? = nil, events: [Event] = [],
    unreadable: [UnreadableEvent] = []
  ) {
    self.response = response
    self.requestID = requestID
    self.vtnID = vtnID
    self.events = events
    self.unreadable = unreadable
  }
}

/// An event in a distribution that could not be read whole.
public struct UnreadableEvent: Sendable, Equatable {
  public var eventID: String
  public var modificationNumber: Int
  /// What was wrong, naming the element.
  public var problem: OpenADRDocumentError
  public var responseRequired: Bool

  public init(eventID: String, modificationNumber: Int, problem: OpenADRDocumentError, responseRequired: Bool = true) {
    self.eventID = eventID
    self.modificationNumber = modificationNumber
    self.problem = problem
    self.responseRequired = responseRequired
  }
}

/// One `oadr:oadrEvent`.
public struct Event: Sendable, Equatable {
  public var eventID: String
  public var modificationNumber: Int
  public var modificationDateTime: Date?
  public var modificationReason: String?
  public var priority: Int
  public var marketContext: String?
  public var createdDateTime: Date?
  /// Raw `eventStatus`: none, far, near, active, completed, cancelled.
  public var status: String
  public var testEvent: String?
  public var vtnComment: String?
  /// The active period: `start` + `durationSeconds` (0 = no stated end).
  public var start: Date
  public var durationSeconds: Double
  /// `tolerance/tolerate/startafter`: the VEN may start up to this late (randomisation).
  public var startAfterSeconds: Double?
  public var notificationSeconds: Double?
  public var rampUpSeconds: Double?
  public var recoverySeconds: Double?
  public var signals: [Signal]
  public var targetVenIDs: [String]
  public var targetResourceIDs: [String]
  public var targetGroupIDs: [String]
  public var targetPartyIDs: [String]
  /// `oadrResponseRequired`: `always` (the default) or `never`.
  public var responseRequired: Bool

  public init(
    eventID: String, modificationNumber: Int, modificationDateTime: Date? = nil, modificationReason: String? = nil,
    priority: Int = 0, marketContext: String? = nil, createdDateTime: Date? = nil, status: String,
    testEvent: String? = nil, vtnComment: String? = nil, start: Date, durationSeconds: Double,
    startAfterSeconds: Double? = nil, notificationSeconds: Double? = nil, rampUpSeconds: Double? = nil,
    recoverySeconds: Double? = nil, signals: [Signal] = [], targetVenIDs: [String] = [],
    targetResourceIDs: [String] = [], targetGroupIDs: [String] = [], targetPartyIDs: [String] = [],
    responseRequired: Bool = true
  ) {
    self.eventID = eventID
    self.modificationNumber = modificationNumber
    self.modificationDateTime = modificationDateTime
    self.modificationReason = modificationReason
    self.priority = priority
    self.marketContext = marketContext
    self.createdDateTime = createdDateTime
    self.status = status
    self.testEvent = testEvent
    self.vtnComment = vtnComment
    self.start = start
    self.durationSeconds = durationSeconds
    self.startAfterSeconds = startAfterSeconds
    self.notificationSeconds = notificationSeconds
    self.rampUpSeconds = rampUpSeconds
    self.recoverySeconds = recoverySeconds
    self.signals = signals
    self.targetVenIDs = targetVenIDs
    self.targetResourceIDs = targetResourceIDs
    self.targetGroupIDs = targetGroupIDs
    self.targetPartyIDs = targetPartyIDs
    self.responseRequired = responseRequired
  }

  /// When the active period ends (nil for a duration of 0, an event without a stated end).
  public var end: Date? { durationSeconds > 0 ? start.addingTimeInterval(durationSeconds) : nil }
}

/// One `ei:eiEventSignal`.
public struct Signal: Sendable, Equatable {
  /// Raw `signalName` (SIMPLE, LOAD_DISPATCH, x-…): unknown ones are the VEN's to refuse.
  public var name: String
  /// Raw `signalType` (level, setpoint, delta, …).
  public var type: String
  public var id: String
  public var intervals: [Interval]
  public var itemBase: ItemBase?
  /// `currentValue`: openleadr always writes 0 for SIMPLE (study, Quirks 2); use the intervals.
  public var currentValue: Double?

  public init(
    name: String, type: String, id: String, intervals: [Interval], itemBase: ItemBase? = nil,
    currentValue: Double? = nil
  ) {
    self.name = name
    self.type = type
    self.id = id
    self.intervals = intervals
    self.itemBase = itemBase
    self.currentValue = currentValue
  }
}

/// One `ei:interval` of a signal.
public struct Interval: Sendable, Equatable {
  public var uid: String
  /// Seconds from the event's start: the sum of the durations of the intervals before this
  /// one. OpenADR 2.0b places intervals back to back from the active period's dtstart;
  /// openleadr also writes a dtstart per interval (the same instants), kept in `declaredStart`
  /// but not used for the offset.
  public var offsetSeconds: Double
  public var durationSeconds: Double
  public var value: Double
  /// The interval's own `xcal:dtstart`, when the VTN wrote one.
  public var declaredStart: Date?

  public init(uid: String, offsetSeconds: Double, durationSeconds: Double, value: Double, declaredStart: Date? = nil) {
    self.uid = uid
    self.offsetSeconds = offsetSeconds
    self.durationSeconds = durationSeconds
    self.value = value
    self.declaredStart = declaredStart
  }
}

/// A signal's or report's unit (`emix:itemBase`: `power:powerReal`, `power:energyReal`,
/// `oadr:customUnit`...).
public struct ItemBase: Sendable, Equatable {
  /// The element's local name: powerReal, energyReal, powerApparent, customUnit, …
  public var kind: String
  public var itemDescription: String?
  public var itemUnits: String?
  /// SI prefix: p n micro m c d k M G T none.
  public var siScaleCode: String?

  public init(kind: String, itemDescription: String? = nil, itemUnits: String? = nil, siScaleCode: String? = nil) {
    self.kind = kind
    self.itemDescription = itemDescription
    self.itemUnits = itemUnits
    self.siScaleCode = siScaleCode
  }

  /// What a value in this unit is multiplied by to give kW, when it is a real power in W
  /// (or J/s): 1 for kW (scale k), 0.001 for W (no scale, or `none`), 1000 for MW. nil
  /// for anything else (energy, apparent power, currency, an unknown scale).
  public var kilowattMultiplier: Double? {
    guard kind == "powerReal" || kind == "customUnit", let units = itemUnits, units == "W" || units == "J/s",
      let exponent = Self.siExponent(siScaleCode)
    else { return nil }
    return pow(10, Double(exponent - 3))
  }

  static func siExponent(_ code: String?) -> Int? {
    switch code {
    case nil, "none": 0
    case "p": -12
    case "n": -9
    case "micro": -6
    case "m": -3
    case "c": -2
    case "d": -1
    case "k": 3
    case "M": 6
    case "G": 9
    case "T": 12
    default: nil
    }
  }
}

/// One `oadr:oadrReportRequest`: what the VTN wants reported, how often.
public struct ReportRequest: Sendable, Equatable {
  public var reportRequestID: String
  /// The VEN's report (its `reportSpecifierID` in oadrRegisterReport) this request is about.
  public var reportSpecifierID: String
  /// Sampling interval (`xcal:granularity`).
  public var granularitySeconds: Double?
  /// How often to send oadrUpdateReport (`reportBackDuration`).
  public var reportBackDurationSeconds: Double?
  /// `reportInterval`: when to report (absent: from now on, until cancelled).
  public var intervalStart: Date?
  public var intervalDurationSeconds: Double?
  /// The data points wanted (`specifierPayload/rID`), in order.
  public var rIDs: [String]

  public init(
    reportRequestID: String, reportSpecifierID: String, granularitySeconds: Double? = nil,
    reportBackDurationSeconds: Double? = nil, intervalStart: Date? = nil, intervalDurationSeconds: Double? = nil,
    rIDs: [String] = []
  ) {
    self.reportRequestID = reportRequestID
    self.reportSpecifierID = reportSpecifierID
    self.granularitySeconds = granularitySeconds
    self.reportBackDurationSeconds = reportBackDurationSeconds
    self.intervalStart = intervalStart
    self.intervalDurationSeconds = intervalDurationSeconds
    self.rIDs = rIDs
  }
}

public struct RegisteredReport: Sendable, Equatable {
  public var response: Response
  public var reportRequests: [ReportRequest]

  public init(response: Response, reportRequests: [ReportRequest] = []) {
    self.response = response
    self.reportRequests = reportRequests
  }
}

public struct CreateReport: Sendable, Equatable {
  public var requestID: String
  public var reportRequests: [ReportRequest]
  public var venID: String?

  public init(requestID: String, reportRequests: [ReportRequest], venID: String? = nil) {
    self.requestID = requestID
    self.reportRequests = reportRequests
    self.venID = venID
  }
}

public struct CancelReport: Sendable, Equatable {
  public var requestID: String
  public var reportRequestIDs: [String]
  /// Whether the VEN sends one last report for each cancelled request.
  public var reportToFollow: Bool
  public var venID: String?

  public init(requestID: String, reportRequestIDs: [String], reportToFollow: Bool, venID: String? = nil) {
    self.requestID = requestID
    self.reportRequestIDs = reportRequestIDs
    self.reportToFollow = reportToFollow
    self.venID = venID
  }
}

public struct CancelPartyRegistration: Sendable, Equatable {
  public var requestID: String
  public var registrationID: String
  public var venID: String?

  public init(requestID: String, registrationID: String, venID: String? = nil) {
    self.requestID = requestID
    self.registrationID = registrationID
    self.venID = venID
  }
}

public struct CanceledPartyRegistration: Sendable, Equatable {
  public var response: Response
  public var registrationID: String?
  public var venID: String?

  public init(response: Response, registrationID: String? = nil, venID: String? = nil) {
    self.response = response
    self.registrationID = registrationID
    self.venID = venID
  }
}
