import Foundation
import SiteModel

/// Reads one site's records in seq order and keeps only what its report needs: one
/// entry per demand interval, per event, per outage and per session, never the records
/// themselves, so memory stays bounded however long the records run (a year of 5-second
/// telemetry is 6 million records and about 9,000 hours).
///
/// Time: record times are UTC; the site's calendar is UTC plus the offset its latest
/// `site` record states. Every figure is recomputed from the records alone, so that the
/// appliance's own store and the program's uploaded copy give the same report.
struct SiteAccumulator {
  let site: String
  let source: String
  let range: ReportRange
  /// Records after the range's end are still read this far, for sessions that began in it.
  static let sessionTailSeconds = 4.0 * 86_400

  private(set) var facts = SiteFacts()
  private var sawFacts = false
  private var bounds: (from: Double, to: Double) = (-.infinity, .infinity)
  private var boundsResolved = false

  // Seqs and problems.
  private var lastSeq: Int64?
  private var seqFirst: Int64?
  private var seqLast: Int64?
  private var gaps: [SiteReport.SeqGap] = []
  private var covered: [ClosedRange<Int64>] = []
  private var recordsInRange = 0
  private var problems: [String] = []
  private var problemCount = 0
  private static let problemsKept = 40
  private var extent: (first: Double, last: Double)?

  // Telemetry, by demand interval (key: local start ÷ interval length).
  struct Interval {
    var weight = 0.0
    var grid = 0.0
    var building = 0.0
    /// What the building drew from the utility without V2X, before its vehicles: the
    /// building's load while the utility was there, nothing while it was away.
    var withoutV2X = 0.0
    var ev = 0.0
    /// Charge-on-arrival, kW over the interval (filled at the end).
    var unmanagedEV = 0.0
  }
  private var intervals: [Int: Interval] = [:]
  private var currentKey: Int?
  private var current = Interval()
  private var intervalSeconds = 900.0
  private var lastTelemetryUTC: Double?

  // Events, outages, sessions.
  struct Event {
    var id: String
    var start: Double  // UTC seconds
    var end: Double
    var source: String
    var cancelled = false
    var delivered = 0.0
    var weight = 0.0
    var measuredSeconds = 0.0
  }
  private var events: [String: Event] = [:]
  private var eventOrder: [String] = []
  private var activeEventIDs: [String] = []
  private var opts: [String: (optedOut: Bool, reason: String?)] = [:]
  private var openADRIDs: Set<String> = []

  struct Outage {
    var start: Double  // UTC seconds
    var end: Double?
    var servedKWh = 0.0
    var unservedKWh = 0.0
    var vehicleKWh = 0.0
    var remainingKWh = 0.0
  }
  private var outages: [Outage] = []

  struct Session {
    var vehicle: String
    var charger: String
    var pluggedIn: Double  // UTC seconds
    var unplugged: Double
    var arrivalKWh: Double
    var departureKWh: Double
    var needKWh: Double
    var chargedKWh: Double
    var dischargedKWh: Double
    /// Still plugged in when the records end (no session record yet).
    var open = false
  }
  private var sessions: [Session] = []
  private struct Plugged {
    var charger: String
    var vehicle: String
    var chargerBytes: [UInt8]
    var vehicleBytes: [UInt8]
    var since: Double
    var arrivalKWh: Double
    var needKWh: Double?
    var lastKWh: Double
    var reserveKWh: Double
    var efficiency: Double
  }
  private var plugged: [Plugged?] = []
  /// Each vehicle's energy at the first telemetry of every local hour, for the chart.
  private var energySamples: [String: [(local: Double, kWh: Double)]] = [:]
  private var lastSampleHour = Int.min

  init(site: String, source: String, range: ReportRange) {
    self.site = site
    self.source = source
    self.range = range
  }

  // MARK: - Input

  mutating func problem(_ text: String) {
    problemCount += 1
    if problems.count < Self.problemsKept { problems.append(text) }
  }

  /// Seqs a store's thinning replaced by summaries: not lost.
  mutating func cover(_ seqs: ClosedRange<Int64>) { covered.append(seqs) }

  /// Whether records at `utcMS` and after can still matter (a reader may stop once false).
  func wants(utcMS: Int64) -> Bool {
    !boundsResolved || Double(utcMS) / 1000 + facts.utcOffsetSeconds < bounds.to + Self.sessionTailSeconds
  }

  /// One record. `body` holds its members (for an uploaded line, `seq`, `kind` and `time`
  /// too); `location` names it in messages.
  mutating func add(seq: Int64, kind: Substring, timeMS: Int64, body o: JSONObjectView, location: () -> String) {
    checkSeq(seq, location: location)
    if o.stringEquals("event", "site") {
      facts.update(from: o)
      sawFacts = true
      intervalSeconds = facts.demandIntervalSeconds
    }
    // A billing period's dates need the site's cycle day, which its first `site` record says.
    if !boundsResolved && (sawFacts || !Self.needsCycleDay(range)) {
      bounds = range.resolved(billingCycleDay: facts.billingCycleDay)
      boundsResolved = true
    }
    let utc = Double(timeMS) / 1000
    let local = utc + facts.utcOffsetSeconds
    extent = (min(extent?.first ?? local, local), max(extent?.last ?? local, local))
    let inRange = local >= bounds.from && local < bounds.to
    if inRange {
      recordsInRange += 1
      seqFirst = seqFirst ?? seq
      seqLast = seq
    }
    switch kind {
    case "telemetry": if inRange { telemetry(o, utc: utc, local: local) }
    case "event": event(o, utc: utc, location: location)
    case "session": session(o, location: location)
    case "command": break
    default:
      problem("\(location()): a record of kind '\(kind)' (not telemetry, event, command or session); skipped")
    }
  }

  private static func needsCycleDay(_ r: ReportRange) -> Bool {
    if case .billingPeriod = r { return true }
    return false
  }

  private mutating func checkSeq(_ seq: Int64, location: () -> String) {
    defer { lastSeq = max(lastSeq ?? seq, seq) }
    guard let last = lastSeq else { return }
    if seq == last + 1 { return }
    if seq <= last {
      problem("\(location()): seq \(seq) after \(last): a duplicate or out of order")
      return
    }
    // Seqs a summary stands for are not lost.
    var missingFrom = last + 1
    for c in covered.sorted(by: { $0.lowerBound < $1.lowerBound }) where c.upperBound >= missingFrom {
      if c.lowerBound <= missingFrom { missingFrom = c.upperBound + 1 }
    }
    if missingFrom < seq { gaps.append(.init(from: missingFrom, to: seq - 1)) }
  }

  private mutating func telemetry(_ o: JSONObjectView, utc: Double, local: Double) {
    // A thinned interval's summary stands for its records; a detail record for its steps.
    var weight = o.number("steps") ?? 1
    var seconds = 0.0
    if case .object(let r)? = o["summary"], let s = try? JSONObjectView(bytes: o.bytes, range: r) {
      weight = max(1, s.number("records") ?? 1)
      if let a = s.timeMS("from"), let b = s.timeMS("to"), b > a { seconds = Double(b - a) / 1000 }
    } else if let last = lastTelemetryUTC, utc > last {
      seconds = min(utc - last, 120)  // a longer gap is time the appliance was not recording
    }
    lastTelemetryUTC = utc
    guard weight > 0, let grid = o.number("grid_kw") else { return }
    let building = o.number("building_kw") ?? grid
    let utility = o.bool("utility") ?? true
    let served = o.number("served_kw")

    // The chargers: who is plugged in, with how much. Kept by position in the array (the
    // Recorder lists the site's chargers in order), so that a line costs no hashing.
    var evSum = 0.0
    var remaining = 0.0
    let hour = Int((local / 3600).rounded(.down))
    let sampleHour = hour != lastSampleHour
    if sampleHour { lastSampleHour = hour }
    var index = 0
    forEachCharger(o) { c in
      defer { index += 1 }
      evSum += c.kW ?? 0
      if index >= plugged.count { plugged.append(nil) }
      guard let idRange = c.id, let vehicleRange = c.vehicle, let kWh = c.energyKWh else {
        plugged[index] = nil
        return
      }
      // Names are compared as bytes; Strings are made only when a vehicle arrives.
      guard var p = plugged[index], o.bytes(vehicleRange, equal: p.vehicleBytes),
        o.bytes(idRange, equal: p.chargerBytes)
      else {
        let id = o.string(.string(idRange, escaped: false)) ?? ""
        let vehicle = o.string(.string(vehicleRange, escaped: false)) ?? ""
        plugged[index] = Plugged(
          charger: id, vehicle: vehicle, chargerBytes: Array(o.bytes[idRange]),
          vehicleBytes: Array(o.bytes[vehicleRange]),
          since: utc, arrivalKWh: kWh, needKWh: c.needKWh, lastKWh: kWh,
          reserveKWh: facts.vehicles[vehicle]?.reserveKWh ?? 0, efficiency: facts.chargers[id]?.efficiency ?? 1)
        remaining += max(0, kWh - plugged[index]!.reserveKWh) * plugged[index]!.efficiency
        if sampleHour { energySamples[vehicle, default: []].append((local, kWh)) }
        return
      }
      p.lastKWh = kWh
      if let n = c.needKWh { p.needKWh = n }
      remaining += max(0, kWh - p.reserveKWh) * p.efficiency
      if sampleHour { energySamples[p.vehicle, default: []].append((local, kWh)) }
      plugged[index] = p
    }
    if index < plugged.count { for i in index..<plugged.count { plugged[i] = nil } }
    let ev = o.number("ev_kw") ?? evSum

    // Into the demand interval: the one under way is kept aside, not looked up per line.
    let key = Int((local / intervalSeconds).rounded(.down))
    if key != currentKey {
      closeCurrentInterval()
      currentKey = key
      current = intervals[key] ?? Interval()
    }
    current.weight += weight
    current.grid += grid * weight
    current.building += building * weight
    current.withoutV2X += (utility ? building : 0) * weight
    current.ev += ev * weight

    // The utility's presence, when no event said it (the first record, a lost event).
    if !utility && outages.last.map({ $0.end != nil }) ?? true { outages.append(Outage(start: utc)) }
    if utility, let i = outages.indices.last, outages[i].end == nil { outages[i].end = utc }
    if let i = outages.indices.last, outages[i].end == nil, seconds > 0 {
      let h = seconds / 3600
      let servedKW = served ?? (utility ? building : max(0, -ev))
      outages[i].servedKWh += servedKW * h
      outages[i].unservedKWh += max(0, building * facts.criticalLoadFraction - servedKW) * h
      outages[i].vehicleKWh += max(0, -ev) * h
      outages[i].remainingKWh = remaining
    }

    // Demand-response windows under way.
    if !activeEventIDs.isEmpty {
      activeEventIDs.removeAll { events[$0].map { $0.end <= utc || $0.cancelled } ?? true }
      for id in activeEventIDs where events[id]!.start <= utc {
        events[id]!.delivered += -ev * weight
        events[id]!.weight += weight
        events[id]!.measuredSeconds += seconds > 0 ? seconds : 0
      }
    }
  }

  private mutating func closeCurrentInterval() {
    if let k = currentKey { intervals[k] = current }
  }

  struct ChargerFields: DefaultInitializable {
    /// The names' bytes (between the quotes) in the line.
    var id: Range<Int>?
    var vehicle: Range<Int>?
    var energyKWh: Double?
    var needKWh: Double?
    var kW: Double?
  }

  /// The `chargers` array's objects, member by member, without building views.
  private func forEachCharger(_ o: JSONObjectView, _ body: (ChargerFields) -> Void) {
    guard case .array(let r)? = o["chargers"] else { return }
    var scanner = JSONScanner(bytes: o.bytes, position: r.lowerBound, end: r.upperBound)
    // One pass over each charger's members, no view built: this runs on every line.
    try? scanner.objectsInArray { key, value, c in
      if case .string(let r, false) = value {
        if o.key(key, is: "id") {
          c.id = r
        } else if o.key(key, is: "vehicle") {
          c.vehicle = r
        }
      } else if case .number(let v) = value {
        if o.key(key, is: "kw") {
          c.kW = v
        } else if o.key(key, is: "energy_kwh") {
          c.energyKWh = v
        } else if o.key(key, is: "need_kwh") {
          c.needKWh = v
        }
      }
    } element: {
      body($0)
    }
  }

  private mutating func event(_ o: JSONObjectView, utc: Double, location: () -> String) {
    guard case .string? = o["event"] else {
      problem("\(location()): an event record without its event name; skipped")
      return
    }
    if o.stringEquals("event", "utility_lost") {
      if outages.last.map({ $0.end != nil }) ?? true { outages.append(Outage(start: utc)) }
    } else if o.stringEquals("event", "utility_restored") {
      if let i = outages.indices.last, outages[i].end == nil { outages[i].end = utc }
    } else if o.stringEquals("event", "dr_event_announced") {
      guard let id = o.string("id") else { return }
      var start = o.timeMS("start").map { Double($0) / 1000 }
      var end = o.timeMS("end").map { Double($0) / 1000 }
      if start == nil, let s = o.number("starts_in_s"), let l = o.number("lasts_s") {
        start = utc + s
        end = utc + s + l
      }
      guard let start, let end, end > start else {
        problem("\(location()): dr_event_announced \(id) without a window; skipped")
        return
      }
      window(id: id, start: start, end: end, source: "announced")
    } else if o.stringEquals("event", "openadr_event") {
      guard let id = o.string("event_id") else { return }
      openADRIDs.insert(id)
      if o.stringEquals("change", "cancelled") {
        events[id]?.cancelled = true
        return
      }
      if let s = o.timeMS("start"), let e = o.timeMS("end"), e > s {
        window(id: id, start: Double(s) / 1000, end: Double(e) / 1000, source: "utility")
      }
    } else if o.stringEquals("event", "openadr_opt") {
      guard let id = o.string("event_id") else { return }
      let out = o.stringEquals("opt", "optOut")
      let reason = o.string("reason").flatMap { $0.isEmpty ? nil : $0 }
      opts[id] = (out, out ? reason : nil)
    } else if o.stringEquals("event", "records_lost") {
      problem("\(location()): the appliance reported records lost (records_lost)")
    }
  }

  private mutating func window(id: String, start: Double, end: Double, source: String) {
    if events[id] == nil { eventOrder.append(id) }
    let delivered = events[id]
    var e = Event(id: id, start: start, end: end, source: delivered?.source == "utility" ? "utility" : source)
    if let d = delivered, d.start == start, d.end == end {
      e = d  // announced again: keep what was measured
    }
    events[id] = e
    if !activeEventIDs.contains(id) { activeEventIDs.append(id) }
  }

  private mutating func session(_ o: JSONObjectView, location: () -> String) {
    guard let vehicle = o.string("vehicle"), let a = o.timeMS("plugged_in"), let b = o.timeMS("unplugged") else {
      problem("\(location()): a session record without vehicle, plugged_in or unplugged; skipped")
      return
    }
    sessions.append(
      Session(
        vehicle: vehicle, charger: o.string("charger") ?? "", pluggedIn: Double(a) / 1000,
        unplugged: Double(b) / 1000, arrivalKWh: o.number("energy_at_arrival_kwh") ?? 0,
        departureKWh: o.number("energy_at_departure_kwh") ?? 0, needKWh: o.number("departure_need_kwh") ?? 0,
        chargedKWh: o.number("charged_kwh") ?? 0, dischargedKWh: o.number("discharged_kwh") ?? 0))
  }

  // MARK: - Output

  struct Result {
    var report: SiteReport
    var charts: SiteCharts
    /// Events of the range (for the program's roll-up), with their delivery.
    var events: [EventReport]
  }

  /// The report, once every record is in. `day`: the day drawn as stacked power (default:
  /// the first event's day, else the day of the highest peak).
  mutating func finish(day: CivilDate?) -> Result {
    if !boundsResolved { bounds = range.resolved(billingCycleDay: facts.billingCycleDay) }
    let offset = facts.utcOffsetSeconds
    var report = SiteReport(site: site, source: source, name: facts.name, timeZone: facts.timeZone)
    report.records = recordsInRange
    report.seqFirst = seqFirst
    report.seqLast = seqLast
    report.seqGaps = gaps
    if !sawFacts {
      problem(
        "\(source): no site record (the appliance states its tariff and calendar at start and daily); "
          + "times read as UTC and demand charges as $0/kW")
    }
    if let e = extent, recordsInRange == 0 {
      let (f, t) = range.describe(billingCycleDay: facts.billingCycleDay)
      problem(
        "\(source): no records from \(f ?? "the start") to \(t ?? "the end"); the records run from "
          + "\(RecordTime.local(e.first)) to \(RecordTime.local(e.last)) local time")
    } else if extent == nil {
      problem("\(source): no records at all")
    }
    for g in gaps {
      problem("\(source): seqs \(g.from)–\(g.to) are missing (\(g.count) records lost); figures may be low")
    }

    closeCurrentInterval()
    currentKey = nil
    // Vehicles still plugged in: charged on arrival until the records end.
    for case let p? in plugged {
      guard let need = p.needKWh, let end = lastTelemetryUTC else { continue }
      sessions.append(
        Session(
          vehicle: p.vehicle, charger: p.charger, pluggedIn: p.since, unplugged: end, arrivalKWh: p.arrivalKWh,
          departureKWh: p.lastKWh, needKWh: need, chargedKWh: 0, dischargedKWh: 0, open: true))
    }
    // Charge-on-arrival, interval by interval.
    let outageSpans = outages.map { (start: $0.start, end: $0.end ?? .infinity) }
    for s in sessions {
      guard let c = facts.chargers[s.charger] else { continue }
      let spans = ChargeOnArrival.charging(
        from: s.pluggedIn, to: s.unplugged, arrivalKWh: s.arrivalKWh, needKWh: s.needKWh, maxChargeKW: c.maxChargeKW,
        efficiency: c.efficiency, outages: outageSpans)
      for span in spans {
        let a = span.start + offset
        let b = span.end + offset
        var k = Int((a / intervalSeconds).rounded(.down))
        while Double(k) * intervalSeconds < b {
          let lo = max(a, Double(k) * intervalSeconds)
          let hi = min(b, Double(k + 1) * intervalSeconds)
          if hi > lo, intervals[k] != nil { intervals[k]!.unmanagedEV += c.maxChargeKW * (hi - lo) / intervalSeconds }
          k += 1
        }
      }
    }

    // Billing periods.
    var periods: [CivilDate: PeriodReport] = [:]
    var starts: [CivilDate: (Double, Double)] = [:]
    func periodOf(local: Double) -> CivilDate {
      DemandMeter.billingPeriodStart(of: LocalTime(seconds: local).date, cycleDay: facts.billingCycleDay)
    }
    func period(_ p: CivilDate) -> PeriodReport {
      if let r = periods[p] { return r }
      let startLocal = max(Double(p.dayNumber) * 86_400, bounds.from)
      let endLocal = min(Double(ReportRange.nextMonth(p).dayNumber) * 86_400, bounds.to)
      starts[p] = (startLocal, endLocal)
      var r = PeriodReport(
        period: "\(p.year)-\(RecordTime.two(p.month))", from: RecordTime.local(startLocal),
        to: RecordTime.local(endLocal))
      r.intervalsInSpan = Int(((endLocal - startLocal) / intervalSeconds).rounded())
      r.demandChargePerKWMonth = facts.demandChargePerKWMonth
      return r
    }
    var series: [(local: Double, building: Double, grid: Double, ev: Double, without: Double)] = []
    for (k, i) in intervals.sorted(by: { $0.key < $1.key }) where i.weight > 0 {
      let local = Double(k) * intervalSeconds
      guard local >= bounds.from && local < bounds.to else { continue }
      let p = periodOf(local: local)
      var r = period(p)
      let grid = i.grid / i.weight
      let without = i.withoutV2X / i.weight + i.unmanagedEV
      let building = i.building / i.weight
      r.intervalsMeasured += 1
      r.importedKWh += max(0, grid) * intervalSeconds / 3600
      if grid > r.peakKW || r.peakAt == nil {
        r.peakKW = grid
        r.peakAt = RecordTime.local(local)
      }
      if without > r.peakWithoutV2XKW || r.peakWithoutV2XAt == nil {
        r.peakWithoutV2XKW = without
        r.peakWithoutV2XAt = RecordTime.local(local)
      }
      r.buildingPeakKW = max(r.buildingPeakKW, building)
      periods[p] = r
      series.append((local, building, grid, i.ev / i.weight, without))
    }

    // Events.
    let inRange = eventOrder.compactMap { events[$0] }.filter {
      !$0.cancelled && $0.start + offset >= bounds.from && $0.start + offset < bounds.to
    }
    func opt(_ id: String) -> (optedOut: Bool, reason: String?)? {
      if let o = opts[id] { return o }
      // A VTN event of several windows is followed as id-1, id-2...
      if let dash = id.lastIndex(of: "-"), Int(id[id.index(after: dash)...]) != nil { return opts[String(id[..<dash])] }
      return nil
    }
    let counted = inRange.filter { !(opt($0.id)?.optedOut ?? false) }.count
    var eventReports: [EventReport] = []
    for e in inRange {
      let o = opt(e.id)
      var r = EventReport(
        id: e.id, start: RecordTime.iso(ms: Int64(e.start * 1000)), end: RecordTime.iso(ms: Int64(e.end * 1000)),
        source: e.source == "utility" || openADRIDs.contains(e.id) ? "utility" : e.source)
      r.meanDeliveredKW = e.weight > 0 ? e.delivered / e.weight : 0
      r.measuredShare = min(1, e.measuredSeconds / (e.end - e.start))
      r.optedOut = o?.optedOut ?? false
      r.optReason = o?.reason
      if !r.optedOut && counted > 0 {
        r.expectedPayment = facts.demandResponsePaymentPerKW * r.meanDeliveredKW / Double(counted)
      }
      eventReports.append(r)
      let p = periodOf(local: e.start + offset)
      var pr = period(p)
      pr.events.append(r)
      periods[p] = pr
    }

    // Outages.
    for o in outages where o.start + offset < bounds.to && (o.end ?? .infinity) + offset > bounds.from {
      let end = o.end ?? lastTelemetryUTC ?? o.start
      let hours = max(0, end - o.start) / 3600
      let meanKW = hours > 0 ? o.servedKWh / hours : 0
      let r = OutageReport(
        start: RecordTime.iso(ms: Int64(o.start * 1000)), end: o.end.map { RecordTime.iso(ms: Int64($0 * 1000)) },
        hours: hours, criticalLoadKWh: o.servedKWh, criticalUnservedKWh: o.unservedKWh, vehicleEnergyKWh: o.vehicleKWh,
        couldHaveCarriedHours: meanKW > 0.01 ? o.remainingKWh / meanKW : nil)
      let p = periodOf(local: max(o.start + offset, bounds.from))
      var pr = period(p)
      pr.outages.append(r)
      periods[p] = pr
    }

    // Sessions that ended in the range: energy per vehicle, departures met and missed.
    var vehicleTotals: [CivilDate: [String: VehicleReport]] = [:]
    for s in sessions where !s.open && s.unplugged + offset >= bounds.from && s.unplugged + offset < bounds.to {
      let p = periodOf(local: s.unplugged + offset)
      var pr = period(p)
      let eta = facts.chargers[s.charger]?.efficiency ?? 1
      var v = vehicleTotals[p]?[s.vehicle] ?? VehicleReport(vehicle: s.vehicle)
      v.sessions += 1
      v.chargedKWh += s.chargedKWh
      v.dischargedKWh += s.dischargedKWh
      v.throughputKWh += s.chargedKWh * eta + s.dischargedKWh / eta
      if let battery = facts.vehicles[s.vehicle]?.batteryKWh, battery > 0 {
        v.equivalentFullCycles = v.throughputKWh / (2 * battery)
      }
      vehicleTotals[p, default: [:]][s.vehicle] = v
      if s.departureKWh + 0.01 >= s.needKWh {
        pr.departuresMet += 1
      } else {
        pr.departuresMissed.append(
          MissedDeparture(
            vehicle: s.vehicle, time: RecordTime.iso(ms: Int64(s.unplugged * 1000)), needKWh: s.needKWh,
            energyKWh: s.departureKWh, cause: cause(of: s, outages: outageSpans)))
      }
      periods[p] = pr
    }
    for (p, vehicles) in vehicleTotals {
      periods[p]?.vehicles = vehicles.values.sorted { $0.vehicle < $1.vehicle }
    }

    report.periods = periods.keys.sorted { $0.dayNumber < $1.dayNumber }.map { periods[$0]! }
    if problemCount > problems.count {
      problems.append("… and \(problemCount - problems.count) more problems of the same kinds")
    }
    report.problems = problems

    // Charts.
    var charts = SiteCharts()
    charts.intervalSeconds = intervalSeconds
    let chosenDay =
      day ?? eventReports.first.map {
        LocalTime(seconds: (RecordTime.parseMS($0.start).map { Double($0) / 1000 } ?? 0) + offset).date
      }
      ?? series.max(by: { $0.grid < $1.grid }).map { LocalTime(seconds: $0.local).date }
    if let chosenDay {
      charts.day = chosenDay
      let lo = Double(chosenDay.dayNumber) * 86_400
      charts.dayIntervals = series.filter { $0.local >= lo && $0.local < lo + 86_400 }.map {
        .init(local: $0.local, buildingKW: $0.building, gridKW: $0.grid, evKW: $0.ev, withoutV2XKW: $0.without)
      }
    }
    for e in eventReports {
      guard let s = RecordTime.parseMS(e.start), let t = RecordTime.parseMS(e.end) else { continue }
      let a = Double(s) / 1000 + offset
      let b = Double(t) / 1000 + offset
      let around = series.filter { $0.local >= a - 3600 && $0.local < b + 3600 }
      charts.events.append(
        .init(
          id: e.id, windowStart: a, windowEnd: b, deliveredKW: e.meanDeliveredKW,
          intervals: around.map { (local: $0.local, deliveredKW: -$0.ev) }))
    }
    for p in report.periods {
      guard let from = CivilDate.parseLocalDateTime(p.from)?.seconds,
        let to = CivilDate.parseLocalDateTime(p.to)?.seconds
      else { continue }
      var lines: [String: [(local: Double, kWh: Double)]] = [:]
      for (vehicle, samples) in energySamples {
        let inPeriod = samples.filter { $0.local >= from && $0.local < to }
        if !inPeriod.isEmpty { lines[vehicle] = inPeriod }
      }
      charts.vehicleEnergy.append((period: p.period, from: from, to: to, lines: lines))
    }
    return Result(report: report, charts: charts, events: eventReports)
  }

  private func cause(of s: Session, outages: [(start: Double, end: Double)]) -> String {
    let during = outages.filter { $0.end > s.pluggedIn && $0.start < s.unplugged }
    if !during.isEmpty {
      let hours = during.reduce(0) { $0 + (min($1.end, s.unplugged) - max($1.start, s.pluggedIn)) } / 3600
      return "an outage of \(String(format: "%.1f", hours)) h during the stay: nothing charges off the grid"
    }
    if let c = facts.chargers[s.charger], c.maxChargeKW > 0 {
      let hoursNeeded = (s.needKWh - s.arrivalKWh) / (c.maxChargeKW * c.efficiency)
      let stay = (s.unplugged - s.pluggedIn) / 3600
      if hoursNeeded > stay + 1e-6 {
        return "the stay (\(String(format: "%.1f", stay)) h) was too short to charge the need even at the charger's "
          + "full rate (\(String(format: "%.1f", hoursNeeded)) h)"
      }
    }
    if s.dischargedKWh > 0.01 {
      return "discharged \(String(format: "%.1f", s.dischargedKWh)) kWh and did not charge it back before leaving"
    }
    return "charged too little before leaving: the charger fell short of its setpoints, or the vehicle left early"
  }
}

/// What the page draws for one site, beside the figures.
struct SiteCharts {
  struct DayInterval {
    var local: Double
    var buildingKW: Double
    var gridKW: Double
    var evKW: Double
    var withoutV2XKW: Double
  }
  struct EventSeries {
    var id: String
    var windowStart: Double
    var windowEnd: Double
    var deliveredKW: Double
    var intervals: [(local: Double, deliveredKW: Double)]
  }
  var intervalSeconds = 900.0
  var day: CivilDate?
  var dayIntervals: [DayInterval] = []
  var events: [EventSeries] = []
  var vehicleEnergy: [(period: String, from: Double, to: Double, lines: [String: [(local: Double, kWh: Double)]])] = []
}
