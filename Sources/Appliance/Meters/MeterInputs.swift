import Foundation
import SiteModel
import Synchronization

/// The building's meters, as configured under `meters:`: readings come in (from the MQTT
/// network thread), the control loop reads the latest of each. A reading that cannot be
/// understood is refused with an error naming the meter, the topic and the problem, and
/// changes nothing; a meter with no recent reading makes the inputs stale.
public final class MeterInputs: SnapshotOverlay {
  public let meters: [MeterSpec]
  private let byTopic: [String: [Int]]
  private let paths: [JSONPath?]
  private let state: Mutex<[Reading]>
  private let trigger: StepTrigger?
  /// When the appliance began listening: the start of every meter's start-up grace.
  private let startedAt: ContinuousClock.Instant

  struct Reading {
    /// kW for power meters, volts or hertz for the utility's.
    var value: Double?
    var at: ContinuousClock.Instant?
    /// The last energy register value and when it came, for `kWh` meters.
    var register: (kWh: Double, at: ContinuousClock.Instant)?
  }

  /// One meter's condition, for the state and the alarms.
  public struct Status: Sendable, Hashable {
    public var id: String
    public var role: MeterSpec.Role
    public var topic: String
    /// The reading in its unit: kW for power meters, V or Hz for the utility's.
    public var value: Double?
    /// The reading of a power meter, kW (nil for voltage and frequency).
    public var kW: Double? { role.isPower ? value : nil }
    /// Seconds since its last usable reading; nil if none yet.
    public var ageSeconds: Double?
    public var stale: Bool
    public var staleAfterSeconds: Double
    /// No reading yet, but none was due: the appliance started less than
    /// `staleAfterSeconds` ago. The inputs are stale (no discharge on a guess), but no
    /// alarm is raised for a meter that has not yet had its chance to report.
    public var awaitingFirstReading: Bool
    /// Stale, and past the start-up grace: worth an alarm.
    public var alarming: Bool { stale && !awaitingFirstReading }
  }

  /// `trigger` is signalled on every accepted reading, so the loop can step at once.
  public init(meters: [MeterSpec], trigger: StepTrigger? = nil, startedAt: ContinuousClock.Instant = .now) {
    self.meters = meters
    self.startedAt = startedAt
    var byTopic: [String: [Int]] = [:]
    for (i, m) in meters.enumerated() { byTopic[m.topic, default: []].append(i) }
    self.byTopic = byTopic
    self.paths = meters.map { $0.value.flatMap(JSONPath.init) }
    self.state = Mutex(meters.map { _ in Reading() })
    self.trigger = trigger
  }

  public var topics: [String] { Array(Set(meters.map(\.topic))).sorted() }
  public func isMeterTopic(_ topic: String) -> Bool { byTopic[topic] != nil }

  /// Takes one message. Returns the problems (one per meter on that topic that refused it);
  /// empty when every meter on the topic took it.
  @discardableResult
  public func ingest(topic: String, payload: [UInt8], at now: ContinuousClock.Instant = .now) -> [MeterInputError] {
    guard let indices = byTopic[topic] else { return [] }
    var problems: [MeterInputError] = []
    var accepted = false
    for i in indices {
      let meter = meters[i]
      func refuse(_ problem: String) {
        problems.append(MeterInputError(meter: meter.id, topic: topic, problem: problem, payload: payload))
      }
      let raw: Double
      switch Self.number(in: payload, path: paths[i]) {
      case .success(let v): raw = v
      case .failure(let problem):
        refuse(problem.text)
        continue
      }
      let value = raw * meter.scale
      guard value.isFinite else {
        refuse("\(raw) × scale \(meter.scale) is not a finite number")
        continue
      }
      let problem: String? = state.withLock { readings in
        var r = readings[i]
        switch meter.unit {
        case .watt, .kilowatt:
          let kW = meter.unit == .watt ? value / 1000 : value
          // No building draws a terawatt: a reading this far out is a broken gateway.
          guard abs(kW) < 1e6 else { return "\(kW) kW is not a plausible reading" }
          r.value = kW
          r.at = now
        case .volt, .hertz:
          guard value >= 0 && value < (meter.unit == .volt ? 1e6 : 1000) else {
            return "\(value) \(meter.unit.rawValue) is not a plausible reading"
          }
          r.value = value
          r.at = now
        case .kilowattHour:
          if let last = r.register {
            let seconds = Self.seconds(now - last.at)
            guard value >= last.kWh else {
              return "the energy register went backwards, from \(last.kWh) to \(value) kWh"
            }
            // Registers tick in whole steps; rate over at least 0.5 s so one tick between two
            // close messages does not read as a megawatt.
            if seconds >= 0.5 {
              r.value = (value - last.kWh) / (seconds / 3600)
              r.at = now
              r.register = (value, now)
            }
          } else {
            r.register = (value, now)
          }
        }
        readings[i] = r
        return nil
      }
      if let problem {
        refuse(problem)
      } else {
        accepted = true
      }
    }
    if accepted { trigger?.signal() }
    return problems
  }

  /// The number a payload holds: the whole payload, or the value at `path` in its JSON.
  static func number(in payload: [UInt8], path: JSONPath?) -> Result<Double, Problem> {
    guard !payload.isEmpty else { return .failure(Problem("the payload is empty")) }
    guard let path else {
      guard payload.count <= 64, let text = String(validating: payload, as: UTF8.self),
        let v = Double(text.trimmingCharacters(in: .whitespacesAndNewlines))
      else { return .failure(Problem("the payload is not a plain number")) }
      return .success(v)
    }
    let document: Any
    do {
      document = try JSONSerialization.jsonObject(with: Data(payload), options: [.fragmentsAllowed])
    } catch {
      return .failure(Problem("the payload is not JSON"))
    }
    switch path.value(in: document) {
    case .failure(let e): return .failure(Problem(e.description))
    case .success(let v):
      if let n = jsonNumber(v) { return .success(n) }
      if let s = v as? String, let d = Double(s.trimmingCharacters(in: .whitespaces)) { return .success(d) }
      return .failure(Problem("the value at \(path) is not a number"))
    }
  }

  struct Problem: Error {
    var text: String
    init(_ text: String) { self.text = text }
  }

  /// Every meter's condition now.
  public func statuses(at now: ContinuousClock.Instant = .now) -> [Status] {
    state.withLock { readings in
      meters.indices.map { i in
        let m = meters[i]
        let age = readings[i].at.map { Self.seconds(now - $0) }
        return Status(
          id: m.id, role: m.role, topic: m.topic, value: readings[i].value, ageSeconds: age,
          stale: readings[i].value == nil || (age ?? .infinity) > m.staleAfterSeconds,
          staleAfterSeconds: m.staleAfterSeconds,
          awaitingFirstReading: readings[i].at == nil && Self.seconds(now - startedAt) <= m.staleAfterSeconds)
      }
    }
  }

  static func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
  }

  /// Puts the meters' view of the building into the snapshot: its load from the meters
  /// (a grid meter minus the chargers), and stale inputs when any meter is stale.
  public func overlay(_ s: inout Snapshot) { overlay(&s, at: .now) }

  public func overlay(_ s: inout Snapshot, at now: ContinuousClock.Instant) {
    guard !meters.isEmpty else { return }
    let metered = building(chargers: s.chargers, at: now)
    if metered.stale { s.inputsFresh = false }
    // When stale, the last known load is still the best guess for logs and panels.
    if let kW = metered.kW { s.buildingDemandKW = kW }
  }

  /// The building's load as the meters give it (a grid meter minus the chargers' own
  /// readings), nil before any meter has read; `stale` when any meter is stale.
  public func building(chargers: [ChargerReading], at now: ContinuousClock.Instant = .now) -> (
    kW: Double?, stale: Bool
  ) {
    let all = statuses(at: now)
    var building = 0.0
    var anyReading = false
    var anyGrid = false
    for status in all where status.role.isPower {
      guard let kW = status.kW else { continue }
      building += kW
      anyReading = true
      if status.role == .gridImport { anyGrid = true }
    }
    if anyGrid { building -= chargers.reduce(0) { $0 + $1.measuredKW } }
    return (anyReading ? building : nil, all.contains(where: \.stale))
  }
}

/// A JSON number as Foundation parsed it, or nil: JSON true/false also come back as an
/// NSNumber (a boolean one), and are not numbers.
func jsonNumber(_ value: Any) -> Double? {
  guard let n = value as? NSNumber, String(describing: type(of: n)) != "__NSCFBoolean" else { return nil }
  return n.doubleValue
}

/// A meter message that could not be used.
public struct MeterInputError: Error, Sendable, CustomStringConvertible {
  public var meter: String
  public var topic: String
  public var problem: String
  public var payload: [UInt8]
  public var description: String {
    "meter \(meter) (topic \(topic)): \(problem); reading ignored (payload: \(preview(payload)))"
  }
}

/// The first bytes of a payload, printable, for logs.
func preview(_ payload: [UInt8], limit: Int = 48) -> String {
  let head = payload.prefix(limit)
  let text: String
  if let s = String(validating: head, as: UTF8.self), !s.unicodeScalars.contains(where: { $0.value < 0x20 }) {
    text = "\"\(s)\""
  } else {
    text = head.map { b in
      let h = String(b, radix: 16)
      return h.count == 1 ? "0\(h)" : h
    }.joined(separator: " ")
  }
  return payload.count > limit ? "\(text)… (\(payload.count) bytes)" : text
}
