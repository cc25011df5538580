import Control
import Foundation
import SiteModel
import Store
import Synchronization

/// Turns what the appliance does into records for the central program: telemetry every
/// few seconds, events when something changes, panel commands with their outcome, and a
/// summary of every vehicle's plug-in session. It only drafts them; the outbox numbers
/// and writes them. See docs/store-and-forward.md for every record's members.
public final class Recorder: StepObserver {
  public struct Configuration: Sendable {
    /// Site seconds between telemetry records.
    public var telemetryEverySeconds: Double = 5
    /// Site seconds per real second: record times follow the site's timeline when it is
    /// simulated faster than real time, the wall clock otherwise.
    public var speed: Double = 1
    /// The site's IANA time zone and billing cycle, stated in the `site` record so that a
    /// report read from the records alone buckets months and periods as the utility does.
    public var timeZone = "Etc/UTC"
    public var billingCycleDay = 1
    public init() {}
  }

  private struct Telemetry {
    var start: Double
    var steps = 0
    var gridSum = 0.0
    var gridMax = -Double.infinity
    var gridMin = Double.infinity
    var buildingSum = 0.0
    var servedSum = 0.0
    var evSum = 0.0
  }

  private struct Session {
    var vehicleID: String
    var charger: String
    var pluggedIn: Date
    var arrivalKWh: Double
    var lastKWh: Double
    var needKWh: Double
    var inKWh = 0.0
    var outKWh = 0.0
    var minKWh: Double
  }

  private struct State {
    var telemetry: Telemetry?
    var mode: OperatingMode?
    var transferSwitch: TransferSwitchPosition?
    var switchCommand: TransferSwitchCommand = .hold
    var utility: Bool?
    var shed: Bool?
    var phase: (OutagePhase, Double)?
    var restoredGroups = 0
    var inputsFresh: Bool?
    var knownEvents: Set<String> = []
    var activeEvents: [String: (start: Date, gridSum: Double, steps: Int)] = [:]
    var sessions: [Int: Session] = [:]
    var anchor: (wall: Date, site: Double)?
    /// The local day and UTC offset the last `site` record stated.
    var siteStated: (day: Int, offsetSeconds: Int)?
  }

  public let site: SiteDescription
  public let configuration: Configuration
  private let outbox: Outbox
  private let state = Mutex(State())

  public init(site: SiteDescription, outbox: Outbox, configuration: Configuration = Configuration()) {
    self.site = site
    self.outbox = outbox
    self.configuration = configuration
  }

  // MARK: - Events, commands

  /// An event record: `{"event": name, ...members}`; members are JSON values.
  public func event(_ name: String, at time: Date = Date(), _ members: [(String, String)] = []) {
    outbox.submit(
      RecordDraft(
        kind: .event, time: time, body: RecordJSON.object([("event", RecordJSON.string(name))] + members)))
  }

  /// A panel command and what became of it.
  public func command(
    user: String, name: String?, requestID: String?, outcome: String, reason: String, at time: Date = Date()
  ) {
    outbox.submit(
      RecordDraft(
        kind: .command, time: time,
        body: RecordJSON.object([
          ("user", RecordJSON.string(user)),
          ("command", name.map(RecordJSON.string) ?? "null"),
          ("request_id", requestID.map(RecordJSON.string) ?? "null"),
          ("outcome", RecordJSON.string(outcome)),
          ("reason", RecordJSON.string(reason)),
          ("source", RecordJSON.string("mqtt")),
        ])))
  }

  // MARK: - Steps

  public func observe(_ step: StepRecord) {
    let drafts = state.withLock { s in record(step, &s) }
    for d in drafts { outbox.submit(d) }
  }

  private func time(of step: StepRecord, _ s: inout State) -> Date {
    guard configuration.speed != 1 else { return step.wallTime }
    if s.anchor == nil { s.anchor = (step.wallTime, step.snapshot.time) }
    return s.anchor!.wall.addingTimeInterval(step.snapshot.time - s.anchor!.site)
  }

  private func record(_ step: StepRecord, _ s: inout State) -> [RecordDraft] {
    let snap = step.snapshot
    let d = step.decisions
    let now = time(of: step, &s)
    var out: [RecordDraft] = []
    func event(_ name: String, _ members: [(String, String)]) {
      out.append(
        RecordDraft(
          kind: .event, time: now, body: RecordJSON.object([("event", RecordJSON.string(name))] + members)))
    }
    let n = RecordJSON.number
    // A step with no demand measurement counts as 0 here; the demand meter flags it.
    let grid = PanelJSON.gridImport(step) ?? 0

    // What the site is, for reports read from the records alone: at the first step, at
    // every local midnight and when the clock's offset from UTC changes (summer time; a
    // quarter of an hour at least, so that a wall clock drifting against the loop's does
    // not count).
    let offset = Int(((snap.localTime.seconds - now.timeIntervalSince1970) / 60).rounded()) * 60
    if s.siteStated?.day != snap.localTime.dayNumber || abs((s.siteStated?.offsetSeconds ?? offset) - offset) >= 900
      || s.siteStated == nil
    {
      s.siteStated = (snap.localTime.dayNumber, offset)
      out.append(siteDraft(offsetSeconds: offset, at: now))
    }

    // Changes of state, as events: the cause (the utility) before the effect (the mode).
    if s.utility != snap.utilityAvailable {
      if s.utility != nil { event(snap.utilityAvailable ? "utility_restored" : "utility_lost", []) }
      s.utility = snap.utilityAvailable
    }
    if s.mode != d.mode {
      event(
        "mode",
        [
          ("from", s.mode.map { RecordJSON.string($0.rawValue) } ?? "null"), ("to", RecordJSON.string(d.mode.rawValue)),
          ("grid_kw", n(grid, 1)), ("target_kw", n(d.demandTargetKW, 1)),
        ])
      s.mode = d.mode
    }
    // The controller repeats its command every step until the contacts confirm it: one
    // event per new command.
    if d.transferSwitch != s.switchCommand {
      if d.transferSwitch != .hold {
        event("transfer_switch_command", [("command", RecordJSON.string(d.transferSwitch.rawValue))])
      }
      s.switchCommand = d.transferSwitch
    }
    if s.transferSwitch != snap.transferSwitch {
      if s.transferSwitch != nil {
        event(
          "transfer_switch",
          [
            ("from", RecordJSON.string(s.transferSwitch!.rawValue)),
            ("to", RecordJSON.string(snap.transferSwitch.rawValue)),
          ])
      }
      s.transferSwitch = snap.transferSwitch
    }
    if s.shed != d.shedNonCriticalLoads {
      if s.shed != nil || d.shedNonCriticalLoads {
        event(d.shedNonCriticalLoads ? "loads_shed" : "loads_restored", [])
      }
      s.shed = d.shedNonCriticalLoads
    }
    // The outage sequence, each step with how long the one before lasted.
    if s.phase?.0 != d.phase {
      if let (from, since) = s.phase {
        event(
          "outage_phase",
          [
            ("from", RecordJSON.string(from.rawValue)), ("to", RecordJSON.string(d.phase.rawValue)),
            ("after_s", n(snap.time - since, 1)),
          ])
      }
      s.phase = (d.phase, snap.time)
    }
    if s.restoredGroups != d.restoredLoadGroups {
      event(
        "load_groups_restored",
        [
          ("groups", n(Double(d.restoredLoadGroups), 0)),
          (
            "ids",
            "["
              + site.sheddableLoads.prefix(d.restoredLoadGroups).map { RecordJSON.string($0.id) }.joined(separator: ",")
              + "]"
          ),
        ])
      s.restoredGroups = d.restoredLoadGroups
    }
    if s.inputsFresh != snap.inputsFresh {
      if s.inputsFresh != nil || !snap.inputsFresh {
        event(snap.inputsFresh ? "inputs_fresh" : "inputs_stale", [])
      }
      s.inputsFresh = snap.inputsFresh
    }

    // Demand-response events: announced, and the site's participation.
    for e in snap.events where !s.knownEvents.contains(e.id) && e.endTime > snap.time {
      s.knownEvents.insert(e.id)
      event(
        "dr_event_announced",
        [
          ("id", RecordJSON.string(e.id)),
          ("starts_in_s", n(e.startTime - snap.time, 0)), ("lasts_s", n(e.endTime - e.startTime, 0)),
          ("start", RecordJSON.time(now.addingTimeInterval(e.startTime - snap.time))),
          ("end", RecordJSON.time(now.addingTimeInterval(e.endTime - snap.time))),
        ])
    }
    for e in snap.events where e.isActive(at: snap.time) {
      if s.activeEvents[e.id] == nil {
        s.activeEvents[e.id] = (now, 0, 0)
        event("dr_event_started", [("id", RecordJSON.string(e.id)), ("mode", RecordJSON.string(d.mode.rawValue))])
      }
      s.activeEvents[e.id]!.gridSum += grid
      s.activeEvents[e.id]!.steps += 1
    }
    for (id, active) in s.activeEvents where !snap.events.contains(where: { $0.id == id && $0.isActive(at: snap.time) })
    {
      s.activeEvents[id] = nil
      event(
        "dr_event_ended",
        [
          ("id", RecordJSON.string(id)), ("mean_grid_kw", n(active.gridSum / Double(max(1, active.steps)), 1)),
          ("seconds", n(now.timeIntervalSince(active.start), 0)),
        ])
    }

    // Sessions: one record when a vehicle leaves its charger.
    for (i, charger) in site.chargers.enumerated() {
      let reading = i < snap.chargers.count ? snap.chargers[i] : ChargerReading(online: false)
      let kw = i < step.applied.chargerKW.count ? step.applied.chargerKW[i] : 0
      if let ended = s.sessions[i], reading.vehicle?.vehicleID != ended.vehicleID {
        out.append(sessionDraft(ended, unplugged: now))
        s.sessions[i] = nil
      }
      guard let v = reading.vehicle else { continue }
      if s.sessions[i] == nil {
        s.sessions[i] = Session(
          vehicleID: v.vehicleID, charger: charger.id, pluggedIn: now, arrivalKWh: v.energyKWh, lastKWh: v.energyKWh,
          needKWh: v.departureNeedKWh, minKWh: v.energyKWh)
      }
      let hours = snap.periodSeconds / 3600
      s.sessions[i]!.lastKWh = v.energyKWh
      s.sessions[i]!.needKWh = v.departureNeedKWh
      s.sessions[i]!.minKWh = min(s.sessions[i]!.minKWh, v.energyKWh)
      if kw > 0 { s.sessions[i]!.inKWh += kw * hours } else { s.sessions[i]!.outKWh -= kw * hours }
    }

    // Telemetry: means over the window, the latest setpoints.
    if s.telemetry == nil { s.telemetry = Telemetry(start: snap.time) }
    s.telemetry!.steps += 1
    s.telemetry!.gridSum += grid
    s.telemetry!.gridMax = max(s.telemetry!.gridMax, grid)
    s.telemetry!.gridMin = min(s.telemetry!.gridMin, grid)
    s.telemetry!.buildingSum += snap.buildingDemandKW
    s.telemetry!.servedSum += step.applied.servedKW.isFinite ? step.applied.servedKW : 0
    s.telemetry!.evSum += step.applied.chargerKW.reduce(0) { $0 + ($1.isFinite ? $1 : 0) }
    if snap.time + snap.periodSeconds - s.telemetry!.start >= configuration.telemetryEverySeconds - 1e-9 {
      out.append(telemetryDraft(step, s.telemetry!, at: now))
      s.telemetry = Telemetry(start: snap.time + snap.periodSeconds)
    }
    return out
  }

  private func telemetryDraft(_ step: StepRecord, _ t: Telemetry, at now: Date) -> RecordDraft {
    let snap = step.snapshot
    let d = step.decisions
    let n = RecordJSON.number
    let steps = Double(max(1, t.steps))
    let chargers = site.chargers.indices.map { i -> String in
      let reading = i < snap.chargers.count ? snap.chargers[i] : ChargerReading(online: false)
      var members: [(String, String)] = [
        ("id", RecordJSON.string(site.chargers[i].id)),
        ("kw", n(i < step.applied.chargerKW.count ? step.applied.chargerKW[i] : 0, 2)),
        ("setpoint_kw", n(i < d.setpointsKW.count ? d.setpointsKW[i] : 0, 2)),
        ("online", reading.online ? "true" : "false"),
      ]
      if let v = reading.vehicle {
        members.append(("vehicle", RecordJSON.string(v.vehicleID)))
        members.append(("energy_kwh", n(v.energyKWh, 2)))
        members.append(("need_kwh", n(v.departureNeedKWh, 2)))
      }
      return RecordJSON.object(members)
    }
    let body = RecordJSON.object([
      ("mode", RecordJSON.string(d.mode.rawValue)),
      ("grid_kw", n(t.gridSum / steps, 2)), ("grid_kw_max", n(t.gridMax, 2)), ("grid_kw_min", n(t.gridMin, 2)),
      ("building_kw", n(t.buildingSum / steps, 2)),
      ("served_kw", n(t.servedSum / steps, 2)), ("ev_kw", n(t.evSum / steps, 2)),
      ("target_kw", n(d.demandTargetKW, 1)), ("month_peak_kw", n(snap.meter.monthPeakKW, 1)),
      ("utility", snap.utilityAvailable ? "true" : "false"),
      ("switch", RecordJSON.string(snap.transferSwitch.rawValue)),
      ("shed", d.shedNonCriticalLoads ? "true" : "false"),
      ("inputs_fresh", snap.inputsFresh ? "true" : "false"),
      ("steps", String(t.steps)),
      ("chargers", "[" + chargers.joined(separator: ",") + "]"),
    ])
    return RecordDraft(kind: .telemetry, time: now, body: body)
  }

  /// `{"event":"site",...}`: the tariff, the calendar and the equipment a report needs.
  private func siteDraft(offsetSeconds: Int, at now: Date) -> RecordDraft {
    let n = RecordJSON.number
    let chargers = site.chargers.map { c in
      RecordJSON.object([
        ("id", RecordJSON.string(c.id)), ("max_charge_kw", n(c.maxChargeKW, 2)),
        ("max_discharge_kw", n(c.maxDischargeKW, 2)), ("efficiency", n(c.efficiency, 4)),
      ])
    }
    let vehicles = site.vehicles.map { v in
      RecordJSON.object([
        ("id", RecordJSON.string(v.id)), ("battery_kwh", n(v.batteryKWh, 2)), ("reserve_kwh", n(v.reserveKWh, 2)),
      ])
    }
    return RecordDraft(
      kind: .event, time: now,
      body: RecordJSON.object([
        ("event", RecordJSON.string("site")), ("name", RecordJSON.string(site.name)),
        ("time_zone", RecordJSON.string(configuration.timeZone)), ("utc_offset_s", String(offsetSeconds)),
        ("demand_interval_s", n(site.demandIntervalSeconds, 0)),
        ("billing_cycle_day", String(configuration.billingCycleDay)),
        ("critical_load_fraction", n(site.criticalLoadFraction, 4)),
        (
          "tariff",
          RecordJSON.object([
            ("demand_charge_per_kw_month", n(site.tariff.demandChargePerKWMonth, 4)),
            ("energy_price_per_kwh", n(site.tariff.energyPricePerKWh, 4)),
            ("dr_payment_per_kw", n(site.tariff.demandResponsePaymentPerKW, 4)),
          ])
        ),
        ("chargers", "[" + chargers.joined(separator: ",") + "]"),
        ("vehicles", "[" + vehicles.joined(separator: ",") + "]"),
      ]))
  }

  private func sessionDraft(_ s: Session, unplugged: Date) -> RecordDraft {
    let n = RecordJSON.number
    return RecordDraft(
      kind: .session, time: unplugged,
      body: RecordJSON.object([
        ("vehicle", RecordJSON.string(s.vehicleID)), ("charger", RecordJSON.string(s.charger)),
        ("plugged_in", RecordJSON.time(s.pluggedIn)),
        ("unplugged", RecordJSON.time(unplugged)),
        ("energy_at_arrival_kwh", n(s.arrivalKWh, 2)), ("energy_at_departure_kwh", n(s.lastKWh, 2)),
        ("lowest_energy_kwh", n(s.minKWh, 2)),
        ("charged_kwh", n(s.inKWh, 2)), ("discharged_kwh", n(s.outKWh, 2)),
        ("departure_need_kwh", n(s.needKWh, 2)),
        ("need_met", s.lastKWh + 1e-6 >= s.needKWh ? "true" : "false"),
      ]))
  }
}
