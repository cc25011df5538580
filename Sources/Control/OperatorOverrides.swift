import SiteModel

/// What facilities staff can ask of the controller from a panel. The wire format (MQTT
/// JSON) is the panel adapter's business; this is the meaning.
public enum OperatorCommand: Sendable, Hashable {
  /// Hold grid import at or under this many kW; nil hands the target back to the plan.
  case setDemandTarget(kW: Double?)
  /// Exclude a vehicle from discharging until released.
  case holdVehicle(String)
  case releaseVehicle(String)
  /// Override the departure time (site local time) and/or need of a plugged-in vehicle.
  case setDeparture(vehicle: String, departure: LocalTime?, needKWh: Double?)
  case pauseV2X
  case resumeV2X
  case startIslandTest
  case endIslandTest
  /// A demand-response event the utility told staff about (site local times); an id
  /// that is already announced amends that event.
  case announceEvent(id: String, start: LocalTime, end: LocalTime)
  case cancelEvent(id: String)

  /// The name panels use.
  public var name: String {
    switch self {
    case .setDemandTarget: "set_demand_target"
    case .holdVehicle: "hold_vehicle"
    case .releaseVehicle: "release_vehicle"
    case .setDeparture: "set_departure"
    case .pauseV2X: "pause_v2x"
    case .resumeV2X: "resume_v2x"
    case .startIslandTest: "start_island_test"
    case .endIslandTest: "end_island_test"
    case .announceEvent: "announce_event"
    case .cancelEvent: "cancel_event"
    }
  }
}

/// Staff's standing instructions, laid over every snapshot before the controller sees it.
/// Pure: commands are checked against the site and the latest snapshot, and either change
/// this value or are refused with a reason a person can act on.
public struct OperatorOverrides: Sendable, Hashable, Codable {
  public enum IslandTest: String, Sendable, Hashable, Codable {
    /// No test.
    case none
    /// Asked for; waiting for the controller to open the switch.
    case requested
    /// The building is islanded for the test.
    case running
  }

  public struct DepartureOverride: Sendable, Hashable, Codable {
    /// On the snapshot timeline.
    public var departureTime: Double?
    public var needKWh: Double?
    /// Who set it, for panels.
    public var setBy: String
  }

  public enum Outcome: Sendable, Hashable {
    case applied(String)
    case refused(String)
  }

  public private(set) var demandTargetKW: Double?
  public private(set) var heldVehicles: Set<String> = []
  public private(set) var departures: [String: DepartureOverride] = [:]
  public private(set) var dischargePaused = false
  public private(set) var islandTest = IslandTest.none
  /// Demand-response events staff announced, with who did, by id.
  public private(set) var events: [String: AnnouncedEvent] = [:]

  public struct AnnouncedEvent: Sendable, Hashable, Codable {
    /// Times on the snapshot timeline.
    public var event: DemandResponseEvent
    public var announcedBy: String
  }

  /// How far ahead an event may be announced, and how long it may run.
  public static let maximumEventAheadSeconds = 14 * 86_400.0
  public static let maximumEventSeconds = 12 * 3600.0

  /// How far ahead a departure may be set.
  public static let maximumDepartureAheadSeconds = 7 * 86_400.0

  public init() {}

  /// Checks and applies one command. `snapshot` is the latest one the controller saw and
  /// `mode` its latest mode (nil before the first step: commands that depend on the site's
  /// state are refused until then).
  /// `utilityStable` says the utility has been there for the enter-service delay: a test
  /// may start only then, since it could not reclose earlier.
  public mutating func apply(
    _ command: OperatorCommand, by user: String, site: SiteDescription, snapshot: Snapshot?, mode: OperatingMode?,
    utilityStable: Bool = true, enterServiceDelaySeconds: Double = 300
  ) -> Outcome {
    switch command {
    case .setDemandTarget(let kW):
      guard let kW else {
        demandTargetKW = nil
        return .applied("demand target back to automatic")
      }
      guard kW.isFinite, kW > 0 else { return .refused("the target must be a number above 0 kW, not \(kW)") }
      guard kW <= site.importLimitKW else {
        return .refused("\(kW) kW is above the service's \(site.importLimitKW) kW import limit")
      }
      demandTargetKW = kW
      return .applied("grid import held at or under \(kW) kW until set back to automatic")

    case .holdVehicle(let id):
      guard site.vehicleIndex(id: id) != nil else { return .refused(unknownVehicle(id, site)) }
      heldVehicles.insert(id)
      return .applied("\(id) will not discharge until released")

    case .releaseVehicle(let id):
      guard site.vehicleIndex(id: id) != nil else { return .refused(unknownVehicle(id, site)) }
      guard heldVehicles.remove(id) != nil else { return .refused("\(id) is not held") }
      return .applied("\(id) may discharge again")

    case .setDeparture(let id, let departure, let need):
      guard let index = site.vehicleIndex(id: id) else { return .refused(unknownVehicle(id, site)) }
      guard departure != nil || need != nil else { return .refused("give a departure, a need_kwh, or both") }
      guard let s = snapshot else { return .refused("the controller has not run its first step yet") }
      guard let plugged = s.chargers.lazy.compactMap(\.vehicle).first(where: { $0.vehicleID == id }) else {
        return .refused("\(id) is not plugged in; a departure can be set for its current stay only")
      }
      var override = departures[id] ?? DepartureOverride(setBy: user)
      override.setBy = user
      if let departure {
        let t = s.time + (departure.seconds - s.localTime.seconds)
        guard t > s.time else { return .refused("the departure is in the past (site time is now \(s.localTime))") }
        guard t - s.time <= Self.maximumDepartureAheadSeconds else {
          return .refused("the departure is more than 7 days ahead")
        }
        override.departureTime = t
      }
      if let need {
        let battery = site.vehicles[index].batteryKWh
        guard need.isFinite, need >= 0 else { return .refused("need_kwh must be 0 or more, not \(need)") }
        guard need <= battery else { return .refused("\(need) kWh is more than \(id)'s \(battery) kWh battery") }
        override.needKWh = need
      }
      departures[id] = override
      let when = override.departureTime.map { "leaves at \(s.localTime + ($0 - s.time))" } ?? "departure as reported"
      let needText = "needs \(override.needKWh ?? plugged.departureNeedKWh) kWh"
      return .applied("\(id) \(when), \(needText)")

    case .pauseV2X:
      let already = dischargePaused
      dischargePaused = true
      return .applied(already ? "V2X was already paused" : "V2X paused: vehicles only charge")

    case .resumeV2X:
      let already = !dischargePaused
      dischargePaused = false
      return .applied(already ? "V2X was not paused" : "V2X resumed")

    case .startIslandTest:
      guard islandTest == .none else { return .refused("an island test is already \(islandTest.rawValue)") }
      guard let s = snapshot, let mode else { return .refused("the controller has not run its first step yet") }
      guard mode == .gridConnected else { return .refused("the site is \(mode.rawValue), not grid-connected") }
      guard s.inputsFresh else { return .refused("inputs are stale; the controller is in its safe state") }
      guard utilityStable else {
        return .refused(
          "the utility has not yet been seen stable for the \(Int(enterServiceDelaySeconds)) s enter-service delay (since start-up or its last return); the site could not reclose before then, so try again later"
        )
      }
      guard !s.events.contains(where: { $0.isActive(at: s.time) }) else {
        return .refused("a demand-response event is running")
      }
      let canForm = site.chargers.indices.contains { i in
        guard site.chargers[i].gridForming, i < s.chargers.count, s.chargers[i].online,
          let v = s.chargers[i].vehicle
        else { return false }
        return !heldVehicles.contains(v.vehicleID) && v.energyKWh > 0.5
      }
      guard canForm else {
        return .refused("no grid-forming charger has a vehicle that can discharge")
      }
      islandTest = .requested
      return .applied("island test requested: opening the transfer switch")

    case .endIslandTest:
      guard islandTest != .none else { return .refused("no island test is running") }
      islandTest = .none
      return .applied("island test ended: reclosing to the utility")

    case .announceEvent(let id, let start, let end):
      guard Self.validEventID(id) else {
        return .refused("the event id must be 1 to 64 letters, digits, '.', '_' or '-', not '\(id)'")
      }
      guard let s = snapshot else { return .refused("the controller has not run its first step yet") }
      guard !s.wallClockUnsynchronized else {
        return .refused("the system clock is not synchronized yet; events are kept by wall time")
      }
      guard start < end else { return .refused("the event must end after it starts (\(start) to \(end))") }
      let startTime = s.time + (start.seconds - s.localTime.seconds)
      let endTime = s.time + (end.seconds - s.localTime.seconds)
      guard endTime > s.time else { return .refused("the event is over already (site time is now \(s.localTime))") }
      guard endTime - startTime <= Self.maximumEventSeconds else {
        return .refused("an event may run 12 hours at most, not \(Int((endTime - startTime) / 60)) minutes")
      }
      guard startTime - s.time <= Self.maximumEventAheadSeconds else {
        return .refused("the event starts more than 14 days ahead")
      }
      if let existing = events[id], existing.event.isActive(at: s.time), startTime > s.time {
        return .refused("event \(id) is running; it can be ended earlier or later, not moved to start later")
      }
      let amended = events[id] != nil
      let notify = events[id]?.event.notifyTime ?? s.time
      events[id] = AnnouncedEvent(
        event: DemandResponseEvent(id: id, notifyTime: notify, startTime: startTime, endTime: endTime),
        announcedBy: user)
      return .applied("event \(id) \(amended ? "amended" : "announced"): \(start) to \(end)")

    case .cancelEvent(let id):
      guard let existing = events.removeValue(forKey: id) else {
        let known = events.keys.sorted()
        return .refused(
          "no announced event \(id)"
            + (known.isEmpty ? " (there are none)" : " (announced: \(known.joined(separator: ", ")))"))
      }
      let running = snapshot.map { existing.event.isActive(at: $0.time) } ?? false
      return .applied(running ? "event \(id) cancelled while running: V2X back to normal" : "event \(id) cancelled")
    }
  }

  static func validEventID(_ id: String) -> Bool {
    !id.isEmpty && id.count <= 64
      && id.unicodeScalars.allSatisfy {
        $0.isASCII
          && ($0.properties.isAlphabetic || $0.properties.numericType != nil || "._-".unicodeScalars.contains($0))
      }
  }

  /// Taken back after a restart: the standing instructions stay, a departure override
  /// stays for the vehicle it was set for (it ends when that vehicle leaves), and an island
  /// test in progress is not resumed (the appliance recloses first). Returns what was
  /// dropped, for the log and the alarm.
  public mutating func restoredAfterRestart() -> [String] {
    guard islandTest != .none else { return [] }
    let was = islandTest == .running ? "running" : "requested"
    islandTest = .none
    return ["an island test was \(was) when the appliance stopped; it is not resumed"]
  }

  /// The instructions in force, one phrase each ("V2X paused"), for what a restart would
  /// drop when nothing keeps them. Empty: nothing staff set is in force.
  public var standingInstructions: [String] {
    var out: [String] = []
    if let kW = demandTargetKW { out.append("demand target \(kW) kW") }
    out += heldVehicles.sorted().map { "\($0) held from discharging" }
    if dischargePaused { out.append("V2X paused") }
    out += departures.keys.sorted().map { "departure of \($0) set by \(departures[$0]!.setBy)" }
    out += events.keys.sorted().map { "event \($0) announced by \(events[$0]!.announcedBy)" }
    if islandTest != .none { out.append("island test \(islandTest.rawValue)") }
    return out
  }

  private func unknownVehicle(_ id: String, _ site: SiteDescription) -> String {
    "\(id) is not a configured vehicle (known: \(site.vehicles.map(\.id).joined(separator: ", ")))"
  }

  /// Lays the instructions over a snapshot.
  public func overlay(_ s: inout Snapshot) {
    s.operatorDemandTargetKW = demandTargetKW
    s.dischargePaused = s.dischargePaused || dischargePaused
    s.islandTestRequested = islandTest != .none
    // Nothing starts by wall time on a clock that is not known to be right.
    if !s.wallClockUnsynchronized {
      for e in events.values.map(\.event).sorted(by: { $0.startTime < $1.startTime })
      where !s.events.contains(where: { $0.id == e.id }) {
        s.events.append(e)
      }
    }
    guard !heldVehicles.isEmpty || !departures.isEmpty else { return }
    for i in s.chargers.indices {
      guard var v = s.chargers[i].vehicle else { continue }
      if heldVehicles.contains(v.vehicleID) { v.dischargeHeld = true }
      if let o = departures[v.vehicleID] {
        if let t = o.departureTime { v.departureTime = t }
        if let need = o.needKWh { v.departureNeedKWh = min(need, v.batteryKWh) }
      }
      s.chargers[i].vehicle = v
    }
  }

  /// Follows what happened: a departure override ends with the stay it was set for, and an
  /// island test moves from requested to running, and ends when the building is back on
  /// the utility (also when the controller ended it because the vehicles ran low).
  /// Returns a line for the log for each such change.
  public mutating func observe(_ s: Snapshot, _ d: Decisions) -> [String] {
    var notes: [String] = []
    if !departures.isEmpty {
      let plugged = Set(s.chargers.compactMap { $0.vehicle?.vehicleID })
      for id in departures.keys where !plugged.contains(id) {
        departures[id] = nil
        notes.append("\(id) left; its departure override is forgotten")
      }
    }
    for (id, e) in events where e.event.endTime < s.time - 86_400 {
      events[id] = nil
      notes.append("event \(id) ended a day ago; forgotten")
    }
    switch islandTest {
    case .none: break
    case .requested:
      if d.mode == .islanded { islandTest = .running }
    case .running:
      if d.mode == .gridConnected || d.mode == .demandResponse || d.mode == .safe {
        islandTest = .none
        notes.append("island test over: the building is back on the utility")
      }
    }
    return notes
  }
}
