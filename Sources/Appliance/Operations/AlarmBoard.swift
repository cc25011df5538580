import Foundation

/// An alarm staff should see: raised by the appliance, cleared when the cause goes away,
/// acknowledged by a person.
public struct Alarm: Sendable, Hashable {
  public enum Severity: String, Sendable, Hashable {
    case warning, critical
  }
  public var id: String
  public var severity: Severity
  public var message: String
  public var since: Date
  public var active: Bool
  public var acknowledgedBy: String?
  /// A latching alarm stays listed after it clears until someone acknowledges it: a fault
  /// that came and went at night is still seen in the morning. A standing condition that
  /// staff themselves cause and end (instructions kept in memory only) does not latch.
  public var latches = true
}

/// The appliance's alarms. An alarm is listed while it is active, and (if it latches) after
/// it clears until someone acknowledges it: a problem that came and went at night is still
/// seen.
public struct AlarmBoard: Sendable, Hashable {
  public private(set) var alarms: [Alarm] = []

  public init() {}

  /// Listed alarms, oldest first.
  public var listed: [Alarm] { alarms.filter { $0.active || $0.acknowledgedBy == nil } }

  /// Raises (or keeps) an alarm. True if it was not active before.
  @discardableResult
  public mutating func raise(
    _ id: String, _ severity: Alarm.Severity, _ message: String, at now: Date, latches: Bool = true
  ) -> Bool {
    let alarm = Alarm(
      id: id, severity: severity, message: message, since: now, active: true, acknowledgedBy: nil, latches: latches)
    if let i = alarms.firstIndex(where: { $0.id == id }) {
      if alarms[i].active {
        alarms[i].message = message
        return false
      }
      alarms[i] = alarm
      return true
    }
    alarms.append(alarm)
    return true
  }

  /// Clears an active alarm. True if it was active.
  @discardableResult
  public mutating func clear(_ id: String) -> Bool {
    guard let i = alarms.firstIndex(where: { $0.id == id && $0.active }) else { return false }
    alarms[i].active = false
    if alarms[i].acknowledgedBy != nil || !alarms[i].latches { alarms.remove(at: i) }
    return true
  }

  public enum AcknowledgeOutcome: Sendable, Hashable {
    case acknowledged, alreadyAcknowledged, unknown
  }

  public mutating func acknowledge(_ id: String, by user: String) -> AcknowledgeOutcome {
    guard let i = alarms.firstIndex(where: { $0.id == id }) else { return .unknown }
    if alarms[i].acknowledgedBy != nil { return .alreadyAcknowledged }
    alarms[i].acknowledgedBy = user
    if !alarms[i].active { alarms.remove(at: i) }
    return .acknowledged
  }
}
