import Control
import Foundation
import SiteModel

/// The panel API's JSON (docs/mqtt-api.md): state and setpoints out, commands in, replies.
enum PanelJSON {
  // MARK: - Out

  struct StateBody {
    /// The published text.
    var json: String
    /// The same without the clock, to tell whether anything changed.
    var comparable: String
  }

  static func state(view: SiteStatus.View, site: SiteDescription, meters: [MeterInputs.Status]?, inputErrors: Int)
    -> StateBody
  {
    guard let last = view.last else { return StateBody(json: "{}", comparable: "{}") }
    let s = last.snapshot
    let d = last.decisions
    var body: [String: Any] = [
      "schema": "microgrid-edge/state/1",
      "site": site.name,
      "site_time": "\(s.localTime)",
      "mode": d.mode.rawValue,
      "grid_import_kw": gridImport(last).map { round($0) as Any } ?? NSNull(),
      "building_load_kw": round(s.buildingDemandKW),
      "demand_target_kw": demandTarget(d).map { round($0) as Any } ?? NSNull(),
      "demand_target_source": view.overrides.demandTargetKW == nil ? "auto" : "operator",
      "month_peak_kw": round(s.meter.monthPeakKW),
      "demand": [
        "period_peak_kw": round(s.meter.monthPeakKW),
        "interval_import_kwh": round(s.meter.intervalImportKWh),
        "interval_measured_s": round(s.meter.intervalElapsedSeconds),
        "period_day": s.meter.periodDay as Any? ?? NSNull(),
        "source": s.meter.gridImportSource as Any? ?? NSNull(),
      ] as [String: Any],
      "clock_synchronized": !s.wallClockUnsynchronized,
      "utility_available": s.utilityAvailable,
      "transfer_switch": s.transferSwitch.rawValue,
      "loads_shed": d.shedNonCriticalLoads,
      "outage_phase": d.phase.rawValue,
      "load_groups": site.sheddableLoads.enumerated().map { i, g -> [String: Any] in
        ["id": g.id, "priority": g.priority, "kw": g.kW, "on": !d.shedNonCriticalLoads || i < d.restoredLoadGroups]
      },
      "emergency_stop": s.emergencyStop,
      "v2x_paused": view.overrides.dischargePaused,
      "held_vehicles": view.overrides.heldVehicles.sorted(),
      "announced_events": view.overrides.events.values.sorted { $0.event.startTime < $1.event.startTime }.map {
        a -> [String: Any] in
        [
          "id": a.event.id, "start": "\(s.localTime + (a.event.startTime - s.time))",
          "end": "\(s.localTime + (a.event.endTime - s.time))", "announced_by": a.announcedBy,
        ]
      },
      "history": ["load_intervals": last.historyLoadIntervals, "sessions": last.historySessions],
      "island_test": view.overrides.islandTest.rawValue,
      "inputs_fresh": s.inputsFresh,
      "mqtt": ["input_errors": inputErrors, "commands": view.commandsHandled],
    ]
    body["meters"] = (meters ?? []).map { m -> [String: Any] in
      [
        "id": m.id, "role": m.role.rawValue, "kw": m.kW.map { round($0) as Any } ?? NSNull(),
        "value": m.value.map { round($0) as Any } ?? NSNull(),
        "age_s": m.ageSeconds.map { (($0 * 10).rounded() / 10) as Any } ?? NSNull(), "stale": m.stale,
      ]
    }
    body["chargers"] = site.chargers.indices.map { i -> [String: Any] in
      let reading = i < s.chargers.count ? s.chargers[i] : ChargerReading(online: false)
      var vehicle: Any = NSNull()
      if let v = reading.vehicle {
        vehicle =
          [
            "id": v.vehicleID, "energy_kwh": round(v.energyKWh), "battery_kwh": v.batteryKWh,
            "departure": "\(s.localTime + (v.departureTime - s.time))", "need_kwh": round(v.departureNeedKWh),
            "held": v.dischargeHeld, "set_by": view.overrides.departures[v.vehicleID]?.setBy as Any? ?? NSNull(),
          ] as [String: Any]
      }
      return [
        "id": site.chargers[i].id, "online": reading.online,
        "setpoint_kw": round(i < d.setpointsKW.count ? d.setpointsKW[i] : 0),
        "power_kw": round(i < last.applied.chargerKW.count ? last.applied.chargerKW[i] : 0),
        "vehicle": vehicle,
      ]
    }
    let next = s.events.filter { $0.endTime > s.time }.min { $0.startTime < $1.startTime }
    body["next_event"] =
      next.map { e -> Any in
        [
          "id": e.id, "start": "\(s.localTime + (e.startTime - s.time))",
          "end": "\(s.localTime + (e.endTime - s.time))", "active": e.isActive(at: s.time),
        ]
      } ?? NSNull()
    body["alarms"] = view.alarms.map { a -> [String: Any] in
      [
        "id": a.id, "severity": a.severity.rawValue, "active": a.active, "message": a.message,
        "since": isoUTC(a.since), "acknowledged_by": a.acknowledgedBy as Any? ?? NSNull(),
      ]
    }
    if let records = view.records { body["records"] = recordsBody(records) }
    if let openADR = view.openADR { body["openadr"] = openADRBody(openADR, now: last.wallTime) }
    if let p = view.period {
      body["period"] =
        [
          "start": p.periodStart, "peak_kw": round(p.peakKW), "peak_without_v2x_kw": round(p.peakWithoutV2XKW),
          "demand_charge_saved": (p.demandChargeSaved * 100).rounded() / 100,
          "last_event": p.lastEvent.map { e -> Any in
            ["id": e.id, "mean_delivered_kw": round(e.meanDeliveredKW), "active": e.active] as [String: Any]
          } ?? NSNull(),
        ] as [String: Any]
    }
    let comparable = text(body)
    body["time"] = isoUTC(last.wallTime)
    return StateBody(json: text(body), comparable: comparable)
  }

  /// The VEN's link with the utility's VTN and the events it sent, with the site's answers.
  /// An event's status is told at the state's time, not at the VEN's last poll (up to a
  /// poll interval ago): an event that has begun shows active from its first second.
  static func openADRBody(_ v: SiteStatus.OpenADRView, now: Date) -> [String: Any] {
    func status(_ e: SiteStatus.OpenADRView.Event) -> String {
      guard e.status == "far" || e.status == "near" || e.status == "active" else { return e.status }
      if e.end > e.start && now >= e.end { return "completed" }
      return now >= e.start ? "active" : e.status
    }
    return [
      "link": v.link, "ven_id": v.venID as Any? ?? NSNull(), "vtn_id": v.vtnID as Any? ?? NSNull(),
      "last_contact": v.lastContact.map { isoUTC($0) as Any } ?? NSNull(),
      "last_error": v.lastError as Any? ?? NSNull(),
      "events": v.events.map { e -> [String: Any] in
        [
          "id": e.id, "modification": e.modificationNumber, "status": status(e), "start": isoUTC(e.start),
          "end": isoUTC(e.end), "opt": e.opt, "reason": e.reason as Any? ?? NSNull(), "asks": e.asks,
          "requested_kw": e.requestedKW.map { round($0) as Any } ?? NSNull(), "test": e.testEvent,
        ]
      },
    ]
  }

  static func recordsBody(_ r: RecordsView) -> [String: Any] {
    let c = r.store.counters
    var store: [String: Any] = [
      "last_seq": c?.lastSeq ?? 0,
      "backlog": c?.backlog ?? 0,
      "used_mb": round(Double(c?.usedBytes ?? 0) / 1_048_576),
      "budget_mb": round(Double(r.store.budgetBytes) / 1_048_576),
      "budget_phase": r.store.phase.rawValue,
      "pending_in_memory": r.store.pending,
      "telemetry_dropped": r.store.telemetryDropped,
      "write_problem": r.store.writeProblem as Any? ?? NSNull(),
    ]
    store["oldest_unuploaded"] =
      c?.oldestUnuploadedMS.map { isoUTC(Date(timeIntervalSince1970: Double($0) / 1000)) as Any } ?? NSNull()
    var body: [String: Any] = ["store": store]
    if let u = r.upload {
      body["upload"] =
        [
          "state": u.state.rawValue,
          "since": isoUTC(u.since),
          "accepted_through": c?.acceptedThrough ?? 0,
          "last_success": u.lastSuccess.map { isoUTC($0) as Any } ?? NSNull(),
          "last_error": u.lastError as Any? ?? NSNull(),
          "next_attempt": u.nextAttempt.map { isoUTC($0) as Any } ?? NSNull(),
          "batch_max_records": u.maxRecords,
        ] as [String: Any]
    } else {
      body["upload"] = ["state": "not-configured", "accepted_through": c?.acceptedThrough ?? 0] as [String: Any]
    }
    return body
  }

  /// Grid import as the appliance knows it: the building (metered, or the plant's) and
  /// the chargers' own readings while the building is on the utility, none otherwise.
  /// The one grid-import figure: the site's demand meter (field site), or the simulated
  /// plant's revenue meter, which counts every charger, driven or simulated. Nil: no source
  /// could measure it this step.
  static func gridImport(_ step: StepRecord) -> Double? {
    if let kW = step.snapshot.meter.gridImportKW { return kW }
    return step.applied.gridKW.isFinite ? step.applied.gridKW : nil
  }

  /// The demand target in force, or nil when none applies: off the grid (islanded,
  /// reconnecting, blackout) the controller makes no target and the decisions carry 0,
  /// which is no target a panel can show or set (a target must be above 0).
  static func demandTarget(_ d: Decisions) -> Double? {
    switch d.mode {
    case .islanded, .reconnecting, .blackout: return nil
    case .gridConnected, .demandResponse, .safe, .emergencyStop:
      return d.demandTargetKW.isFinite && d.demandTargetKW > 0 ? d.demandTargetKW : nil
    }
  }

  static func setpoints(_ step: StepRecord, site: SiteDescription, rounded: [Double]) -> String {
    var byCharger: [String: Any] = [:]
    for (i, c) in site.chargers.enumerated() { byCharger[c.id] = i < rounded.count ? rounded[i] : 0 }
    return text([
      "time": isoUTC(Date(), milliseconds: true), "mode": step.decisions.mode.rawValue, "setpoints_kw": byCharger,
    ])
  }

  struct Reply {
    var requestID: String?
    var command: String?
    var user: String
    var outcome = "invalid"
    var reason = ""

    init(requestID: String?, command: String?, user: String) {
      self.requestID = requestID
      self.command = command
      self.user = user
    }

    func json() -> String {
      text([
        "request_id": requestID as Any? ?? NSNull(), "command": command as Any? ?? NSNull(), "outcome": outcome,
        "reason": reason, "user": user, "time": isoUTC(Date()),
      ])
    }
  }

  // MARK: - In

  struct Problem: Error {
    var text: String
    init(_ text: String) { self.text = text }
  }

  struct ParsedCommand {
    var requestID: String?
    var name: String?
    var result: Result<PanelCommand, Problem>
  }

  /// Largest command accepted; a command is a few hundred bytes.
  static let maximumCommandBytes = 4096

  static func command(_ payload: [UInt8], site: SiteDescription) -> ParsedCommand {
    func invalid(_ text: String, id: String? = nil, name: String? = nil) -> ParsedCommand {
      ParsedCommand(requestID: id, name: name, result: .failure(Problem(text)))
    }
    guard payload.count <= maximumCommandBytes else {
      return invalid("the command is \(payload.count) bytes; at most \(maximumCommandBytes)")
    }
    guard let object = try? JSONSerialization.jsonObject(with: Data(payload)), let fields = object as? [String: Any]
    else { return invalid("the payload is not a JSON object") }
    let requestID = fields["request_id"] as? String
    let name = fields["command"] as? String
    guard let id = requestID, !id.isEmpty, id.count <= 64 else {
      return invalid("request_id is missing or not a string of 1 to 64 characters", name: name)
    }
    guard let name else { return invalid("command is missing or not a string", id: id) }

    func string(_ key: String) -> Result<String, Problem> {
      guard let v = fields[key] as? String, !v.isEmpty else { return .failure(Problem("\(key) must be a string")) }
      return .success(v)
    }
    func number(_ key: String) -> Result<Double?, Problem> {
      guard let v = fields[key], !(v is NSNull) else { return .success(nil) }
      guard let n = jsonNumber(v), n.isFinite else { return .failure(Problem("\(key) must be a number")) }
      return .success(n)
    }
    let result: Result<PanelCommand, Problem>
    switch name {
    case "set_demand_target":
      guard fields.keys.contains("kw") else { return invalid("kw is missing (a number, or null)", id: id, name: name) }
      result = number("kw").map { .control(.setDemandTarget(kW: $0)) }
    case "hold_vehicle": result = string("vehicle").map { .control(.holdVehicle($0)) }
    case "release_vehicle": result = string("vehicle").map { .control(.releaseVehicle($0)) }
    case "set_departure":
      result = string("vehicle").flatMap { vehicle in
        number("need_kwh").flatMap { need -> Result<PanelCommand, Problem> in
          var departure: LocalTime?
          if let v = fields["departure"], !(v is NSNull) {
            guard let text = v as? String, let t = CivilDate.parseLocalDateTime(text) else {
              return .failure(Problem("departure must be a site local time like 2024-07-15T17:30"))
            }
            departure = t
          }
          return .success(.control(.setDeparture(vehicle: vehicle, departure: departure, needKWh: need)))
        }
      }
    case "pause_v2x": result = .success(.control(.pauseV2X))
    case "resume_v2x": result = .success(.control(.resumeV2X))
    case "start_island_test": result = .success(.control(.startIslandTest))
    case "end_island_test": result = .success(.control(.endIslandTest))
    case "acknowledge_alarm": result = string("alarm").map { .acknowledgeAlarm($0) }
    case "announce_event", "amend_event":
      func time(_ key: String) -> Result<LocalTime, Problem> {
        guard let text = fields[key] as? String, let t = CivilDate.parseLocalDateTime(text) else {
          return .failure(Problem("\(key) must be a site local time like 2026-07-15T14:00"))
        }
        return .success(t)
      }
      result = string("event").flatMap { event in
        time("start").flatMap { start in
          time("end").map { end in .control(.announceEvent(id: event, start: start, end: end)) }
        }
      }
    case "cancel_event": result = string("event").map { .control(.cancelEvent(id: $0)) }
    case "opt_out_event":
      let reason = fields["reason"] as? String
      guard fields["reason"] == nil || fields["reason"] is NSNull || (reason.map { $0.count <= 200 } ?? false) else {
        return invalid("reason must be a string of at most 200 characters", id: id, name: name)
      }
      result = string("event").map { .optOutEvent(id: $0, reason: reason?.isEmpty == false ? reason : nil) }
    case "opt_in_event": result = string("event").map { .optInEvent(id: $0) }
    case "set_period_peak":
      result = number("kw").flatMap { kW in
        kW.map { .success(.setPeriodPeak(kW: $0)) } ?? .failure(Problem("kw must be a number"))
      }
    default:
      return invalid(
        "unknown command '\(name.prefix(64))' (known: set_demand_target, hold_vehicle, release_vehicle, set_departure, pause_v2x, resume_v2x, start_island_test, end_island_test, announce_event, amend_event, cancel_event, opt_out_event, opt_in_event, set_period_peak, acknowledge_alarm)",
        id: id)
    }
    return ParsedCommand(requestID: id, name: name, result: result)
  }

  // MARK: - Helpers

  static func round(_ v: Double) -> Double { v.isFinite ? (v * 1000).rounded() / 1000 : 0 }

  static func text(_ object: [String: Any]) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return "{}" }
    return String(decoding: data, as: UTF8.self)
  }
}

/// `2026-11-27T14:03:05Z` (or with `.123` milliseconds): the appliance's clock, in UTC.
func isoUTC(_ date: Date, milliseconds: Bool = false) -> String {
  let t = date.timeIntervalSince1970
  let whole = t.rounded(.down)
  let day = Int((whole / 86_400).rounded(.down))
  let second = Int(whole) - day * 86_400
  func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
  var text = "\(CivilDate(dayNumber: day))T\(two(second / 3600)):\(two(second / 60 % 60)):\(two(second % 60))"
  if milliseconds {
    let ms = min(999, Int(((t - whole) * 1000).rounded(.down)))
    text += "." + (ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)")
  }
  return text + "Z"
}
