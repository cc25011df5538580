import Foundation
import SiteModel

/// report.html: one self-contained page (inline CSS and SVG, nothing fetched) that a
/// facilities manager can mail to a school committee, and the program can put in its
/// guidebook.
enum ReportPage {
  static func html(_ report: Report) -> String {
    var page = """
      <!DOCTYPE html>
      <html lang="en"><head><meta charset="utf-8">
      <meta name="viewport" content="width=device-width, initial-scale=1">
      <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
      <title>What V2X did — Microgrid Edge report</title>
      <style>\(style)</style></head><body>
      <h1>What V2X did for the building</h1>

      """
    let (from, to) = (report.from, report.to)
    page +=
      "<p class=\"meta\">Generated \(HTML.escape(RecordTime.iso(ms: Int64(report.generated.timeIntervalSince1970 * 1000))))"
    page +=
      from.map { " · from \(HTML.escape($0)) to \(HTML.escape(to ?? "")) (local, end exclusive)" } ?? " · all records"
    page += " · \(report.sites.count) site\(report.sites.count == 1 ? "" : "s")</p>\n"
    if report.sites.count > 1 || !report.program.events.isEmpty { page += program(report) }
    for (site, charts) in zip(report.sites, report.charts) { page += section(site, charts) }
    page += methods
    page += "</body></html>\n"
    return page
  }

  // MARK: Program

  static func program(_ report: Report) -> String {
    let p = report.program
    var s = "<section class=\"program\"><h2>The program: all sites together</h2>\n"
    if !p.flaggedSites.isEmpty {
      s +=
        "<p class=\"warn\">Records are missing for \(p.flaggedSites.map(HTML.escape).joined(separator: ", ")): "
        + "their figures may be low and are marked ⚠.</p>\n"
    }
    if !p.events.isEmpty {
      var chart = SVGChart(
        kind: "program", title: "Delivered across sites per event against the \(Int(p.goalKW)) kW goal")
      chart.xMin = 0
      chart.xMax = Double(p.events.count)
      chart.fitY(p.events.map(\.totalKW) + [p.goalKW])
      for (i, e) in p.events.enumerated() {
        chart.rect(
          x0: Double(i) + 0.15, x1: Double(i) + 0.85, y0: 0, y1: e.totalKW, cls: e.goalMet ? "met" : "delivered",
          tip: "\(e.id): \(fmt(e.totalKW)) kW")
        if p.events.count <= 24 { chart.xLabel(Double(i) + 0.5, e.id) }
      }
      chart.hline(p.goalKW, cls: "goal", label: "goal \(Int(p.goalKW)) kW")
      s += chart.svg(legend: [("delivered", "delivered (kW)"), ("met", "goal met")])
      s +=
        "<table><tr><th>event</th><th>start (UTC)</th><th>end</th><th>total kW</th><th>goal met</th><th>by site</th></tr>\n"
      for e in p.events {
        let flagged = e.flaggedSites.isEmpty ? "" : " ⚠ incomplete: \(e.flaggedSites.joined(separator: ", "))"
        s +=
          "<tr><td>\(HTML.escape(e.id))</td><td>\(e.start)</td><td>\(e.end)</td><td class=\"num\">\(fmt(e.totalKW))</td>"
          + "<td>\(e.goalMet ? "yes" : "no")</td><td>"
          + HTML.escape(
            e.sites.sorted { $0.key < $1.key }.map { "\($0.key) \(fmt($0.value))" }.joined(separator: " · "))
          + HTML.escape(flagged) + "</td></tr>\n"
      }
      s += "</table>\n"
    }
    let sitesOpting = Set(p.optedOut.map(\.site))
    s += "<p>\(sitesOpting.count) of \(report.sites.count) sites opted out of at least one event.</p>\n"
    if !p.optedOut.isEmpty {
      s += "<table><tr><th>site</th><th>event</th><th>why</th></tr>\n"
      for o in p.optedOut {
        s +=
          "<tr><td>\(HTML.escape(o.site))</td><td>\(HTML.escape(o.event))</td><td>\(HTML.escape(o.reason))</td></tr>\n"
      }
      s += "</table>\n"
    }
    s +=
      "<table><tr><th>site</th><th>periods</th><th>demand charge saved</th><th>events</th><th>mean kW per event</th>"
      + "<th>outages</th><th>departures missed</th><th>records</th></tr>\n"
    for site in report.sites {
      let events = site.periods.flatMap(\.events)
      let mean = events.isEmpty ? 0 : events.reduce(0) { $0 + $1.meanDeliveredKW } / Double(events.count)
      s +=
        "<tr><td>\(HTML.escape(site.site))\(site.flagged ? " ⚠" : "")</td><td class=\"num\">\(site.periods.count)</td>"
        + "<td class=\"num\">\(money(site.periods.reduce(0) { $0 + $1.demandChargeSaved }))</td>"
        + "<td class=\"num\">\(events.count)</td><td class=\"num\">\(fmt(mean))</td>"
        + "<td class=\"num\">\(site.periods.reduce(0) { $0 + $1.outages.count })</td>"
        + "<td class=\"num\">\(site.periods.reduce(0) { $0 + $1.departuresMissed.count })</td>"
        + "<td class=\"num\">\(site.records)\(site.flagged ? " (\(site.seqGaps.reduce(0) { $0 + $1.count }) lost)" : "")</td></tr>\n"
    }
    return s + "</table></section>\n"
  }

  // MARK: One site

  static func section(_ site: SiteReport, _ charts: SiteCharts) -> String {
    var s = "<section class=\"site\"><h2>\(HTML.escape(site.name ?? site.site))"
    s += site.name != nil && site.name != site.site ? " <small>(\(HTML.escape(site.site)))</small>" : ""
    s += "</h2>\n"
    if site.flagged {
      s +=
        "<p class=\"warn\">⚠ Records are missing: "
        + site.seqGaps.map { "seq \($0.from)–\($0.to) (\($0.count))" }.joined(separator: ", ")
        + ". Figures that depend on them may be low; nothing missing is counted as zero delivered.</p>\n"
    }
    if !site.problems.isEmpty {
      s +=
        "<details class=\"problems\"><summary>\(site.problems.count) problem\(site.problems.count == 1 ? "" : "s") "
        + "with the records</summary><ul>"
        + site.problems.map { "<li>\(HTML.escape($0))</li>" }.joined() + "</ul></details>\n"
    }
    guard !site.periods.isEmpty else { return s + "<p>No records in this range.</p></section>\n" }
    s += peaksChart(site)
    s +=
      "<table><tr><th>period</th><th>peak with V2X</th><th>without V2X</th><th>building alone</th>"
      + "<th>demand charge saved</th><th>events</th><th>outages</th><th>departures met / missed</th></tr>\n"
    for p in site.periods {
      let partial =
        p.intervalsMeasured < p.intervalsInSpan
        ? " <span class=\"note\">(\(p.intervalsMeasured) of \(p.intervalsInSpan) intervals recorded)</span>" : ""
      s +=
        "<tr><td>\(p.period)\(partial)</td><td class=\"num\">\(fmt(p.peakKW)) kW</td>"
        + "<td class=\"num\">\(fmt(p.peakWithoutV2XKW)) kW</td><td class=\"num\">\(fmt(p.buildingPeakKW)) kW</td>"
        + "<td class=\"num\">\(money(p.demandChargeSaved))</td><td class=\"num\">\(p.events.count)</td>"
        + "<td class=\"num\">\(p.outages.count)</td><td class=\"num\">\(p.departuresMet) / \(p.departuresMissed.count)</td></tr>\n"
    }
    s += "</table>\n"

    let events = site.periods.flatMap(\.events)
    if !events.isEmpty {
      s +=
        "<h3>Demand-response events</h3>\n<table><tr><th>event</th><th>source</th><th>start (UTC)</th>"
        + "<th>end</th><th>mean delivered</th><th>expected payment</th><th>opted out</th></tr>\n"
      for e in events {
        s +=
          "<tr><td>\(HTML.escape(e.id))</td><td>\(HTML.escape(e.source))</td>"
          + "<td>\(e.start)</td><td>\(e.end)</td><td class=\"num\">\(fmt(e.meanDeliveredKW)) kW</td>"
          + "<td class=\"num\">\(money(e.expectedPayment))</td>"
          + "<td>\(e.optedOut ? "yes: " + HTML.escape(e.optReason ?? "no reason given") : "no")</td></tr>\n"
      }
      s += "</table>\n<div class=\"charts\">\n"
      for e in charts.events { s += eventChart(e, interval: charts.intervalSeconds) }
      s += "</div>\n"
    }
    if let day = charts.day, !charts.dayIntervals.isEmpty { s += dayChart(day, charts) }

    let outages = site.periods.flatMap(\.outages)
    if !outages.isEmpty {
      s +=
        "<h3>Outages</h3>\n<table><tr><th>start (UTC)</th><th>end</th><th>hours</th><th>critical load carried</th>"
        + "<th>left unserved</th><th>vehicles' energy used</th><th>could have carried on for</th></tr>\n"
      for o in outages {
        s +=
          "<tr><td>\(o.start)</td><td>\(o.end ?? "still out")</td><td class=\"num\">\(fmt(o.hours, 2))</td>"
          + "<td class=\"num\">\(fmt(o.criticalLoadKWh)) kWh</td><td class=\"num\">\(fmt(o.criticalUnservedKWh)) kWh</td>"
          + "<td class=\"num\">\(fmt(o.vehicleEnergyKWh)) kWh</td>"
          + "<td class=\"num\">\(o.couldHaveCarriedHours.map { fmt($0, 1) + " h" } ?? "–")</td></tr>\n"
      }
      s += "</table>\n"
    }

    s += "<h3>Vehicles</h3>\n<div class=\"charts\">\n"
    for v in charts.vehicleEnergy where !v.lines.isEmpty { s += vehicleChart(v) }
    s +=
      "</div>\n<table><tr><th>period</th><th>vehicle</th><th>sessions</th><th>charged</th><th>discharged</th>"
      + "<th>battery throughput</th><th>equivalent full cycles</th></tr>\n"
    for p in site.periods {
      for v in p.vehicles {
        s +=
          "<tr><td>\(p.period)</td><td>\(HTML.escape(v.vehicle))</td><td class=\"num\">\(v.sessions)</td>"
          + "<td class=\"num\">\(fmt(v.chargedKWh)) kWh</td><td class=\"num\">\(fmt(v.dischargedKWh)) kWh</td>"
          + "<td class=\"num\">\(fmt(v.throughputKWh)) kWh</td>"
          + "<td class=\"num\">\(v.equivalentFullCycles.map { fmt($0, 2) } ?? "–")</td></tr>\n"
      }
    }
    s += "</table>\n"
    let missed = site.periods.flatMap { p in p.departuresMissed.map { (p.period, $0) } }
    let met = site.periods.reduce(0) { $0 + $1.departuresMet }
    s += "<h3>Departures</h3>\n<p>\(met) met their need, \(missed.count) left short.</p>\n"
    if !missed.isEmpty {
      s += "<table><tr><th>vehicle</th><th>left (UTC)</th><th>needed</th><th>had</th><th>short</th><th>why</th></tr>\n"
      for (_, d) in missed {
        s +=
          "<tr><td>\(HTML.escape(d.vehicle))</td><td>\(d.time)</td><td class=\"num\">\(fmt(d.needKWh)) kWh</td>"
          + "<td class=\"num\">\(fmt(d.energyKWh)) kWh</td><td class=\"num\">\(fmt(d.shortKWh)) kWh</td>"
          + "<td>\(HTML.escape(d.cause))</td></tr>\n"
      }
      s += "</table>\n"
    }
    return s + "</section>\n"
  }

  static func peaksChart(_ site: SiteReport) -> String {
    var chart = SVGChart(kind: "peaks", title: "Billed peak per period: with V2X against without")
    chart.xMin = 0
    chart.xMax = Double(site.periods.count)
    chart.fitY(site.periods.flatMap { [$0.peakKW, $0.peakWithoutV2XKW, $0.buildingPeakKW] })
    for (i, p) in site.periods.enumerated() {
      let x = Double(i)
      chart.rect(
        x0: x + 0.1, x1: x + 0.48, y0: 0, y1: p.peakWithoutV2XKW, cls: "without",
        tip: "\(p.period) without V2X: \(fmt(p.peakWithoutV2XKW)) kW")
      chart.rect(
        x0: x + 0.52, x1: x + 0.9, y0: 0, y1: p.peakKW, cls: "grid",
        tip: "\(p.period) with V2X: \(fmt(p.peakKW)) kW, saved \(money(p.demandChargeSaved))")
      chart.xLabel(x + 0.5, site.periods.count > 14 ? String(p.period.suffix(2)) : p.period)
    }
    return chart.svg(legend: [("without", "without V2X"), ("grid", "with V2X")])
  }

  static func eventChart(_ e: SiteCharts.EventSeries, interval: Double) -> String {
    var chart = SVGChart(kind: "events", title: "\(e.id): \(fmt(e.deliveredKW)) kW mean over the window")
    chart.width = 370
    chart.height = 200
    chart.xMin = e.windowStart - 3600
    chart.xMax = e.windowEnd + 3600
    chart.fitY(e.intervals.map(\.deliveredKW) + [e.deliveredKW])
    chart.band(x0: e.windowStart, x1: e.windowEnd, cls: "window", label: "event window")
    for i in e.intervals {
      chart.rect(
        x0: i.local, x1: i.local + interval * 0.92, y0: 0, y1: i.deliveredKW,
        cls: i.deliveredKW >= 0 ? "v2x" : "charge",
        tip: "\(RecordTime.local(i.local)): \(fmt(i.deliveredKW)) kW")
    }
    chart.hline(e.deliveredKW, cls: "mean", label: "mean \(fmt(e.deliveredKW)) kW")
    chart.xLabel(e.windowStart, String(RecordTime.local(e.windowStart).suffix(5)))
    chart.xLabel(e.windowEnd, String(RecordTime.local(e.windowEnd).suffix(5)))
    return chart.svg(legend: [("v2x", "vehicles delivering"), ("window", "window")])
  }

  static func dayChart(_ day: CivilDate, _ charts: SiteCharts) -> String {
    let rows = charts.dayIntervals
    var chart = SVGChart(kind: "day", title: "\(day): where the building's power came from, per demand interval")
    let lo = Double(day.dayNumber) * 86_400
    chart.xMin = lo
    chart.xMax = lo + 86_400
    let xs = rows.flatMap { [$0.local, $0.local + charts.intervalSeconds] }
    let grid = rows.flatMap { [max(0, $0.gridKW), max(0, $0.gridKW)] }
    let v2x = rows.flatMap { r in [max(0, r.gridKW) + max(0, -r.evKW), max(0, r.gridKW) + max(0, -r.evKW)] }
    let charge = rows.flatMap { [-max(0, $0.evKW), -max(0, $0.evKW)] }
    chart.fitY(v2x + charge + rows.map(\.withoutV2XKW) + rows.map(\.buildingKW))
    chart.area(xs, lower: Array(repeating: 0, count: xs.count), upper: grid, cls: "grid")
    chart.area(xs, lower: grid, upper: v2x, cls: "v2x")
    chart.area(xs, lower: charge, upper: Array(repeating: 0, count: xs.count), cls: "charge")
    chart.polyline(rows.map { ($0.local + charts.intervalSeconds / 2, $0.buildingKW) }, cls: "building-line")
    chart.polyline(rows.map { ($0.local + charts.intervalSeconds / 2, $0.withoutV2XKW) }, cls: "without-line")
    for h in stride(from: 0, through: 24, by: 3) { chart.xLabel(lo + Double(h) * 3600, "\(RecordTime.two(h)):00") }
    return "<h3>One day: \(day)</h3>\n"
      + chart.svg(legend: [
        ("grid", "from the utility"), ("v2x", "from the vehicles"), ("charge", "into the vehicles"),
        ("building-key", "building load"), ("without-key", "without V2X"),
      ])
  }

  static func vehicleChart(
    _ v: (period: String, from: Double, to: Double, lines: [String: [(local: Double, kWh: Double)]])
  ) -> String {
    var chart = SVGChart(kind: "vehicles", title: "\(v.period): each vehicle's energy while plugged in (kWh)")
    chart.yUnit = "kWh"
    chart.xMin = v.from
    chart.xMax = v.to
    chart.fitY(v.lines.values.flatMap { $0.map(\.kWh) })
    var legend: [(String, String)] = []
    for (i, name) in v.lines.keys.sorted().enumerated() {
      let cls = "vehicle-\(i % 6)"
      // A gap of over two hours is a drive: the line breaks there.
      var run: [(Double, Double)] = []
      for p in v.lines[name]! {
        if let last = run.last, p.local - last.0 > 7200 {
          chart.polyline(run, cls: "line \(cls)", tip: name)
          run = []
        }
        run.append((p.local, p.kWh))
      }
      chart.polyline(run, cls: "line \(cls)", tip: name)
      if legend.count < 8 { legend.append((cls, name)) }
    }
    var d = v.from
    while d < v.to {
      chart.xLabel(d, String(LocalTime(seconds: d).date.description.suffix(5)))
      d += 7 * 86_400
    }
    return chart.svg(legend: legend)
  }

  static func fmt(_ v: Double, _ decimals: Int = 1) -> String { String(format: "%.\(decimals)f", v) }
  static func money(_ v: Double) -> String {
    let s = String(format: "%.0f", abs(v))
    var grouped = ""
    for (i, c) in s.reversed().enumerated() {
      if i > 0 && i % 3 == 0 { grouped.append(",") }
      grouped.append(c)
    }
    return (v < -0.5 ? "−$" : "$") + String(grouped.reversed())
  }

  static let style = """
    body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2530;max-width:1100px;margin:24px auto;padding:0 16px}
    h1{font-size:26px;margin:0 0 4px}h2{margin-top:36px;border-bottom:2px solid #dde3ea;padding-bottom:4px}
    .meta,.note{color:#5d6b7a}.warn{background:#fff4e0;border-left:4px solid #e59a1a;padding:8px 12px}
    table{border-collapse:collapse;margin:10px 0 18px;font-size:14px}th,td{padding:4px 10px;border-bottom:1px solid #e6eaef;text-align:left}
    th{background:#f3f6f9}.num{text-align:right;font-variant-numeric:tabular-nums}
    .charts{display:flex;flex-wrap:wrap;gap:10px}svg.chart{background:#fff;border:1px solid #e6eaef;margin:6px 0}
    .chart-title{font-size:13px;font-weight:600;fill:#1d2530}.tick,.band-label,.line-label{font-size:11px;fill:#5d6b7a}
    .gridline{stroke:#eef1f4}.axis{stroke:#8a96a3}
    .grid{fill:#4a78c2}.without{fill:#b9c0c8}.v2x{fill:#36a15a}.charge{fill:#f0b44c}.met{fill:#36a15a}.delivered{fill:#4a78c2}
    .window{fill:#36a15a;fill-opacity:.10}.goal,.mean{stroke:#c43d3d;stroke-dasharray:5 3;stroke-width:1.5}
    .building-line{fill:none;stroke:#1d2530;stroke-width:1.5}.without-line{fill:none;stroke:#8a96a3;stroke-width:1.5;stroke-dasharray:4 3}
    .building-key{fill:#1d2530}.without-key{fill:#8a96a3}
    .line{fill:none;stroke-width:1.5}.vehicle-0{stroke:#4a78c2;fill:#4a78c2}.vehicle-1{stroke:#36a15a;fill:#36a15a}
    .vehicle-2{stroke:#e07b39;fill:#e07b39}.vehicle-3{stroke:#8e5bb5;fill:#8e5bb5}.vehicle-4{stroke:#c43d3d;fill:#c43d3d}
    .vehicle-5{stroke:#2a9d9d;fill:#2a9d9d}rect.key{stroke:none}polyline.line{fill:none}
    details.problems{margin:8px 0;color:#6b3d00}
    @media print{.charts{display:block}}
    """

  static let methods = """
    <section class="methods"><h2>How these figures are made</h2>
    <ul>
    <li><b>Units and signs.</b> Power in kW, energy in kWh, money in dollars. Grid power is + importing from the utility.
    Vehicle power is seen from the building: + charging, − discharging; “delivered” is discharge, shown positive.</li>
    <li><b>Peak with V2X.</b> The highest demand interval (the utility's interval, 15 minutes unless the site says otherwise)
    of mean grid import in the billing period, from the appliance's telemetry.</li>
    <li><b>Peak without V2X.</b> What the utility would have billed had the chargers been plain chargers: the building's own
    metered load, plus every vehicle charged from plug-in at its charger's full rate until it held its departure need,
    never discharging, and nothing drawn while the utility was away. The demand charge saved is the tariff's rate times the
    difference.</li>
    <li><b>Demand-response events.</b> The mean net vehicle discharge over the event window, the program's payment basis.
    The expected payment is the program's rate per kW times that mean, divided by the number of events in the range the site
    did not opt out of (the program pays on the average over its events).</li>
    <li><b>Outages.</b> From the utility's loss to its return. Critical load carried is what the island served; the vehicles'
    energy is what they discharged into it; “could have carried on for” is the plugged vehicles' energy above their reserves
    at the end, divided by the outage's mean load.</li>
    <li><b>Vehicles.</b> From each plug-in session's summary, counted in the period it ended in. Throughput is energy into
    plus out of the battery (after charger losses); equivalent full cycles is throughput over twice the battery's capacity.</li>
    <li><b>Departures.</b> A departure is met when the vehicle left with at least its departure need. A missed one gives its
    most likely cause from the records.</li>
    <li><b>Missing records.</b> Every record carries a sequence number; a gap means records were lost. A site with gaps is
    flagged, and nothing missing is counted as zero.</li>
    <li><b>Time.</b> Record times are UTC; billing periods and days are in the site's local time, from the offset the
    appliance states in its daily <code>site</code> record.</li>
    </ul></section>

    """
}
