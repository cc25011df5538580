import Foundation
import OpenADR

/// The events the VTN has sent, as the VEN keeps them: one entry per event id, at its
/// latest modification, with the site's answer to it. Pure: what a distribution changes,
/// when each event's window is, what to answer; no clock, no I/O (times are UTC seconds
/// passed in). Kept across restarts (`Codable`), so a VTN that cannot be reached never
/// cancels an event the appliance already knows.
///
/// How OpenADR's events become the appliance's (docs/openadr.md, "Mapping"):
/// - an interval asks the site to deliver when its signal says so: SIMPLE level 1 to 3
///   (moderate, high, special), LOAD_DISPATCH `delta` above 0 kW or any `setpoint`, and
///   LOAD_CONTROL offsets above 0 or a capacity under 1. Level 0 (normal) asks nothing;
/// - the intervals that ask, run together, are the event's delivery window(s) on the
///   appliance's event list, shifted by the start randomisation (`startafter`) the VEN
///   drew once for that modification;
/// - the kW a dispatch asks for is kept for panels and reports; the controller delivers
///   what the vehicles can, up to `site.event_export_limit_kw`, as for every event;
/// - price, bid and other signals are not followed: the event is answered with 460
///   (signal not supported) and opted out.
public struct EventBook: Sendable, Hashable, Codable {
  public enum Opt: String, Sendable, Hashable, Codable {
    case optIn
    case optOut
  }

  /// One window in which the site is asked to deliver, UTC seconds.
  public struct Window: Sendable, Hashable, Codable {
    public var start: Double
    public var end: Double
    /// What the signal asked, for people: "SIMPLE level 2", "LOAD_DISPATCH delta 50 kW".
    public var asked: String
    /// The reduction asked, kW, when the signal says one.
    public var requestedKW: Double?
  }

  public struct Entry: Sendable, Hashable, Codable {
    public var eventID: String
    public var modificationNumber: Int
    /// The VTN's eventStatus as last sent (far, near, active, completed, cancelled).
    public var vtnStatus: String
    public var cancelled: Bool
    /// The event's active period, UTC seconds, before randomisation.
    public var start: Double
    public var durationSeconds: Double
    /// The start randomisation drawn for this modification, seconds (0 without startafter).
    public var startOffsetSeconds: Double
    public var rampUpSeconds: Double?
    public var recoverySeconds: Double?
    public var notificationSeconds: Double?
    public var windows: [Window]
    public var signals: String
    public var marketContext: String?
    public var testEvent: Bool
    public var responseRequired: Bool
    /// The requestID of the distribution that brought this modification: the answer's.
    public var requestID: String
    /// When this modification first arrived, UTC seconds.
    public var receivedAt: Double
    /// When the event first arrived (any modification), UTC seconds.
    public var firstReceivedAt: Double
    /// Why the appliance will not follow it at all (code and reason): unsupported signals,
    /// absurd data. nil: it follows it.
    public var refusal: Refusal?
    /// Staff opted out from a panel (who, and why), across modifications.
    public var staffOptOut: StaffOptOut?
    /// The appliance's own reason not to deliver, as last judged (nil: it can).
    public var siteReason: String?
    /// The answer the VTN has confirmed, if any: the modification and opt it was for.
    public var answered: Answer?

    /// The opt the appliance stands by now, and why.
    public var opt: Opt { optReason == nil && !cancelled ? .optIn : .optOut }
    public var optReason: String? {
      if let refusal { return refusal.reason }
      if let staffOptOut { return "staff opted out (\(staffOptOut.by)): \(staffOptOut.reason)" }
      return siteReason
    }
    /// The start and end the site follows (the whole active period, randomised), UTC.
    public var siteStart: Double { start + startOffsetSeconds }
    public var siteEnd: Double { start + startOffsetSeconds + durationSeconds }
    public func isOver(at now: Double) -> Bool { cancelled || (durationSeconds > 0 && now >= siteEnd) }
    /// far, near, active or completed by the VEN's own clock (the VTN does not push these),
    /// or cancelled.
    public func status(at now: Double) -> String {
      if cancelled { return "cancelled" }
      if durationSeconds > 0 && now >= siteEnd { return "completed" }
      if now >= siteStart { return "active" }
      if let ramp = rampUpSeconds, now >= siteStart - ramp { return "near" }
      return "far"
    }
    /// The response the VTN should have, if it does not have it yet.
    public var answerDue: Bool {
      responseRequired && answered != Answer(modificationNumber: modificationNumber, opt: opt)
    }
  }

  public struct Refusal: Error, Sendable, Hashable, Codable {
    /// The eventResponse code: 460 signal not supported, 454 invalid data.
    public var code: Int
    public var reason: String
  }

  public struct StaffOptOut: Sendable, Hashable, Codable {
    public var by: String
    public var reason: String
    public init(by: String, reason: String) {
      self.by = by
      self.reason = reason
    }
  }

  public struct Answer: Sendable, Hashable, Codable {
    public var modificationNumber: Int
    public var opt: Opt
  }

  /// What one distribution changed, for the log and the records.
  public enum Change: Sendable, Hashable {
    case added(String, modificationNumber: Int)
    case modified(String, from: Int, to: Int)
    case cancelled(String, modificationNumber: Int)
    /// No longer distributed: completed, or its cancellation confirmed.
    case removed(String)
    /// An older modification than the one kept: ignored.
    case stale(String, received: Int, kept: Int)
    /// Followed not at all: why.
    case refused(String, Refusal)
    case notForThisVEN(String)
  }

  public private(set) var entries: [String: Entry] = [:]

  /// Limits on what an event may ask (an absurd one is refused with 454, never followed).
  public struct Limits: Sendable, Hashable, Codable {
    public var maximumDurationSeconds = 12 * 3600.0
    public var maximumAheadSeconds = 14 * 86_400.0
    public init() {}
  }

  public init() {}

  /// Takes in a distribution: every event the VTN has for this VEN (one it no longer
  /// lists is gone). `draw` gives a number in 0..<1 for start randomisation.
  public mutating func take(
    _ events: [OpenADR.Event], unreadable: [UnreadableEvent] = [], requestID: String?, venID: String?, now: Double,
    limits: Limits = Limits(), draw: () -> Double
  ) -> [Change] {
    var changes: [Change] = []
    var seen = Set<String>()
    // Events the VEN could not read whole: answered 454 and not followed (a version kept
    // from before is not followed either: the VTN has changed it to something unreadable).
    for bad in unreadable {
      seen.insert(bad.eventID)
      let old = entries[bad.eventID]
      if let old, bad.modificationNumber < old.modificationNumber {
        changes.append(.stale(bad.eventID, received: bad.modificationNumber, kept: old.modificationNumber))
        continue
      }
      if let old, bad.modificationNumber == old.modificationNumber, old.refusal != nil { continue }
      let refusal = Refusal(code: 454, reason: "the event cannot be read: \(bad.problem.message)")
      entries[bad.eventID] = Entry(
        eventID: bad.eventID, modificationNumber: bad.modificationNumber, vtnStatus: "unknown", cancelled: false,
        start: now, durationSeconds: 0, startOffsetSeconds: 0, windows: [], signals: "", testEvent: false,
        responseRequired: bad.responseRequired, requestID: requestID ?? "", receivedAt: now,
        firstReceivedAt: old?.firstReceivedAt ?? now, refusal: refusal, staffOptOut: old?.staffOptOut)
      changes.append(.refused(bad.eventID, refusal))
    }
    for event in events {
      if let venID, !event.targetVenIDs.isEmpty, !event.targetVenIDs.contains(venID) {
        changes.append(.notForThisVEN(event.eventID))
        continue
      }
      seen.insert(event.eventID)
      let old = entries[event.eventID]
      if let old, event.modificationNumber < old.modificationNumber {
        changes.append(.stale(event.eventID, received: event.modificationNumber, kept: old.modificationNumber))
        continue
      }
      if let old, event.modificationNumber == old.modificationNumber {
        // The same version again (every distribution lists every event): only the VTN's
        // status may have moved on.
        entries[event.eventID]?.vtnStatus = event.status
        if event.status == "cancelled" && !old.cancelled {
          entries[event.eventID]?.cancelled = true
          changes.append(.cancelled(event.eventID, modificationNumber: event.modificationNumber))
        }
        continue
      }
      var entry = Self.entry(for: event, requestID: requestID ?? "", now: now, limits: limits, draw: draw)
      if let old {
        entry.firstReceivedAt = old.firstReceivedAt
        entry.staffOptOut = old.staffOptOut
        entry.siteReason = old.siteReason
        // A modification that does not move the start keeps the draw, so the site's
        // window does not jump about with every change of a far-off detail.
        if old.start == entry.start, let after = event.startAfterSeconds, old.startOffsetSeconds <= after {
          entry.startOffsetSeconds = old.startOffsetSeconds
        }
      }
      entries[event.eventID] = entry
      if entry.cancelled {
        changes.append(.cancelled(event.eventID, modificationNumber: entry.modificationNumber))
      } else if let old {
        changes.append(.modified(event.eventID, from: old.modificationNumber, to: entry.modificationNumber))
      } else {
        changes.append(.added(event.eventID, modificationNumber: entry.modificationNumber))
      }
      if let refusal = entry.refusal { changes.append(.refused(event.eventID, refusal)) }
    }
    for id in entries.keys.sorted() where !seen.contains(id) {
      entries[id] = nil
      changes.append(.removed(id))
    }
    return changes
  }

  static func entry(
    for event: OpenADR.Event, requestID: String, now: Double, limits: Limits, draw: () -> Double
  ) -> Entry {
    let start = event.start.timeIntervalSince1970
    let after = max(0, event.startAfterSeconds ?? 0)
    var entry = Entry(
      eventID: event.eventID, modificationNumber: event.modificationNumber, vtnStatus: event.status,
      cancelled: event.status == "cancelled", start: start, durationSeconds: event.durationSeconds,
      startOffsetSeconds: after > 0 ? min(after, max(0, draw()) * after) : 0,
      rampUpSeconds: event.rampUpSeconds, recoverySeconds: event.recoverySeconds,
      notificationSeconds: event.notificationSeconds, windows: [],
      signals: event.signals.map { "\($0.name)/\($0.type)" }.joined(separator: ", "),
      marketContext: event.marketContext, testEvent: Self.isTest(event.testEvent),
      responseRequired: event.responseRequired, requestID: requestID, receivedAt: now, firstReceivedAt: now)
    switch Self.windows(of: event, limits: limits, now: now) {
    case .success(let windows):
      entry.windows = windows.map { w in
        var w = w
        w.start += entry.startOffsetSeconds
        w.end += entry.startOffsetSeconds
        return w
      }
    case .failure(let refusal):
      entry.refusal = refusal
    }
    return entry
  }

  static func isTest(_ text: String?) -> Bool {
    guard let text = text?.trimmingCharacters(in: .whitespaces).lowercased() else { return false }
    return !text.isEmpty && text != "false"
  }

  /// The delivery windows an event asks for (before randomisation), or why it is refused.
  static func windows(of event: OpenADR.Event, limits: Limits, now: Double) -> Result<[Window], Refusal> {
    let start = event.start.timeIntervalSince1970
    guard event.durationSeconds > 0 else {
      return .failure(Refusal(code: 454, reason: "the event has no duration (open-ended events are not followed)"))
    }
    guard event.durationSeconds <= limits.maximumDurationSeconds else {
      return .failure(
        Refusal(
          code: 454,
          reason:
            "the event lasts \(Self.hours(event.durationSeconds)) h, over the \(Self.hours(limits.maximumDurationSeconds)) h the appliance follows"
        ))
    }
    guard start - now <= limits.maximumAheadSeconds else {
      return .failure(
        Refusal(code: 454, reason: "the event starts more than \(Int(limits.maximumAheadSeconds / 86_400)) days ahead"))
    }
    let followed = event.signals.filter { Self.followedSignals.contains($0.name.uppercased()) }
    guard !followed.isEmpty else {
      let names = Set(event.signals.map(\.name)).sorted().joined(separator: ", ")
      return .failure(
        Refusal(
          code: 460,
          reason:
            "no signal the appliance follows (it follows SIMPLE, LOAD_DISPATCH and LOAD_CONTROL; the event has \(names.isEmpty ? "none" : names))"
        ))
    }
    var asks: [Window] = []
    for signal in followed {
      for interval in signal.intervals {
        guard interval.durationSeconds >= 0, interval.offsetSeconds >= 0 else {
          return .failure(Refusal(code: 454, reason: "signal \(signal.name) has an interval with a negative time"))
        }
        guard let ask = Self.ask(signal, value: interval.value) else { continue }
        var end = start + interval.offsetSeconds + interval.durationSeconds
        // An interval of no duration runs to the end of the event.
        if interval.durationSeconds == 0 { end = start + event.durationSeconds }
        let from = start + interval.offsetSeconds
        let to = min(end, start + event.durationSeconds)
        guard to > from else { continue }
        asks.append(Window(start: from, end: to, asked: ask.text, requestedKW: ask.kW))
      }
      if case .failure(let refusal) = Self.checkType(signal) { return .failure(refusal) }
    }
    // Intervals that follow on from each other are one window.
    var merged: [Window] = []
    for w in asks.sorted(by: { $0.start < $1.start }) {
      if var last = merged.last, w.start <= last.end {
        last.end = max(last.end, w.end)
        if last.asked != w.asked && !last.asked.contains(w.asked) { last.asked += "; " + w.asked }
        last.requestedKW = [last.requestedKW, w.requestedKW].compactMap { $0 }.max()
        merged[merged.count - 1] = last
      } else {
        merged.append(w)
      }
    }
    return .success(merged)
  }

  static let followedSignals: Set<String> = ["SIMPLE", "LOAD_DISPATCH", "LOAD_CONTROL"]

  static func checkType(_ signal: OpenADR.Signal) -> Result<Void, Refusal> {
    let known: [String: Set<String>] = [
      "SIMPLE": ["level"],
      "LOAD_DISPATCH": ["delta", "setpoint"],
      "LOAD_CONTROL": [
        "x-loadControlCapacity", "x-loadControlLevelOffset", "x-loadControlPercentOffset", "x-loadControlSetpoint",
      ],
    ]
    let name = signal.name.uppercased()
    guard let types = known[name], types.contains(signal.type) else {
      return .failure(
        Refusal(
          code: 460,
          reason:
            "signal \(signal.name) of type \(signal.type) is not supported (\(name) types followed: \(known[name]?.sorted().joined(separator: ", ") ?? "none"))"
        ))
    }
    return .success(())
  }

  /// Whether an interval's value asks the site to deliver, and what it asks.
  static func ask(_ signal: OpenADR.Signal, value: Double) -> (text: String, kW: Double?)? {
    let scale = signal.itemBase?.kilowattMultiplier ?? 1
    switch (signal.name.uppercased(), signal.type) {
    case ("SIMPLE", _):
      let level = Int(value.rounded())
      return level >= 1 ? ("SIMPLE level \(min(level, 3))", nil) : nil
    case ("LOAD_DISPATCH", "delta"):
      let kW = value * scale
      return kW > 0 ? ("LOAD_DISPATCH delta \(Self.kW(kW)) kW", kW) : nil
    case ("LOAD_DISPATCH", "setpoint"):
      return ("LOAD_DISPATCH setpoint \(Self.kW(value * scale)) kW", nil)
    case ("LOAD_CONTROL", "x-loadControlCapacity"):
      return value < 1 ? ("LOAD_CONTROL capacity \(value)", nil) : nil
    case ("LOAD_CONTROL", "x-loadControlLevelOffset"), ("LOAD_CONTROL", "x-loadControlPercentOffset"):
      return value > 0 ? ("LOAD_CONTROL \(signal.type) \(value)", nil) : nil
    case ("LOAD_CONTROL", "x-loadControlSetpoint"):
      return ("LOAD_CONTROL setpoint \(value)", nil)
    default:
      return nil
    }
  }

  static func hours(_ seconds: Double) -> String { String(format: "%.1f", seconds / 3600) }
  static func kW(_ v: Double) -> String { String(format: "%.1f", v) }

  // MARK: - The site's answer

  /// Staff opted out of (or back into) an event from a panel.
  public mutating func setStaffOptOut(_ id: String, _ optOut: StaffOptOut?) -> Bool {
    guard entries[id] != nil else { return false }
    entries[id]!.staffOptOut = optOut
    return true
  }

  /// The appliance's own judgement of whether it can deliver, per event (nil: it can).
  /// Judged until the event starts; once running the opt stands, except that an outage
  /// (the site islanded) opts out at once.
  public mutating func judge(now: Double, reason: (Entry) -> String?) -> [String] {
    var changed: [String] = []
    for id in entries.keys.sorted() {
      let e = entries[id]!
      guard !e.isOver(at: now), e.refusal == nil else { continue }
      let judged = reason(e)
      let running = now >= e.siteStart
      if running && judged == nil && e.siteReason != nil { continue }
      if running && judged != nil && e.siteReason == nil && !(judged!.contains("islanded")) { continue }
      if judged != e.siteReason {
        entries[id]!.siteReason = judged
        changed.append(id)
      }
    }
    return changed
  }

  /// The VTN confirmed the answers sent for these events' current modifications.
  public mutating func answered(_ answers: [String: Answer]) {
    for (id, answer) in answers where entries[id] != nil { entries[id]!.answered = answer }
  }

  /// The events whose answer the VTN does not have yet.
  public var answersDue: [Entry] { entries.values.filter(\.answerDue).sorted { $0.eventID < $1.eventID } }

  /// Forgets events that ended long ago but are still listed (a VTN that never drops them).
  public mutating func forget(endedBefore t: Double) {
    for (id, e) in entries where e.isOver(at: t) && e.siteEnd < t && !e.answerDue { entries[id] = nil }
  }

  /// The windows the site delivers in: opted-in events, not over, sorted by start.
  public func deliveries(at now: Double) -> [(entry: Entry, window: Window, index: Int)] {
    var out: [(Entry, Window, Int)] = []
    for e in entries.values where e.opt == .optIn && !e.isOver(at: now) {
      for (i, w) in e.windows.enumerated() where w.end > now { out.append((e, w, i)) }
    }
    return out.sorted { $0.1.start < $1.1.start }
  }
}
