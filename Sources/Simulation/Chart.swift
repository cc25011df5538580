import SiteModel

/// A self-contained HTML page (inline SVG, no scripts, no network) a planner can open:
/// monthly demand peaks with and without the appliance, and the worst week's building
/// load, grid power and vehicle power.
public enum Chart {
  public static func html(
    scenario: Scenario, managed: Trace, managedCost: CostBreakdown, unmanagedCost: CostBreakdown
  ) -> String {
    var page = """
      <!doctype html>
      <html lang="en"><head><meta charset="utf-8">
      <title>Microgrid Edge: \(escape(scenario.name))</title>
      <style>
      body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1000px}
      h1{font-size:1.4em} h2{font-size:1.1em;margin-top:2em}
      table{border-collapse:collapse} td,th{padding:.2em .8em;text-align:right;border-bottom:1px solid #ddd}
      th:first-child,td:first-child{text-align:left}
      .legend span{display:inline-block;margin-right:1.5em}
      .sw{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:middle}
      svg text{font-size:11px;fill:#444}
      </style></head><body>
      <h1>\(escape(scenario.name)): a year with Microgrid Edge</h1>
      <p>\(scenario.site.chargers.count) bidirectional chargers, \(scenario.site.vehicles.count) vehicles,
      \(scenario.events.count) demand-response events, \(scenario.outages.count) outages.</p>

      """
    page += costTable(managedCost, unmanagedCost)
    page += "<h2>Monthly demand peak (15-minute interval), kW</h2>\n"
    page += legend([
      ("#bbb", "unmanaged (charge on arrival)"), ("#1f77b4", "with Microgrid Edge"), ("#d62728", "building alone"),
    ])
    page += monthlyPeaks(managedCost, unmanagedCost)
    if let week = worstWeek(managed, intervalMinutes: scenario.intervalMinutes) {
      let date = (scenario.start + Double(managed.intervals[week.lowerBound].minute) * 60).date
      page += "<h2>The week with the year's highest grid peak, from \(date)</h2>\n"
      page += legend([
        ("#d62728", "building load"), ("#1f77b4", "grid import"), ("#2ca02c", "vehicles (+ charging, − discharging)"),
      ])
      page += weekPlot(Array(managed.intervals[week]), intervalMinutes: scenario.intervalMinutes)
    }
    page += "</body></html>\n"
    return page
  }

  static func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
  }

  static func number(_ v: Double, _ decimals: Int = 0) -> String {
    var s = ""
    if decimals == 0 {
      let r = Int64(v.rounded())
      let digits = String(abs(r))
      var grouped = ""
      for (i, ch) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { grouped += "," }
        grouped.append(ch)
      }
      return (r < 0 ? "−" : "") + grouped
    }
    TraceFiles.appendFixed(v, to: &s)
    return s
  }

  static func legend(_ items: [(String, String)]) -> String {
    "<p class=\"legend\">"
      + items.map { "<span><i class=\"sw\" style=\"background:\($0.0)\"></i>\(escape($0.1))</span>" }.joined()
      + "</p>\n"
  }

  static func costTable(_ m: CostBreakdown, _ u: CostBreakdown) -> String {
    func row(_ name: String, _ a: Double, _ b: Double) -> String {
      "<tr><td>\(name)</td><td>$\(number(b))</td><td>$\(number(a))</td></tr>\n"
    }
    var t = "<table><tr><th>Year's cost</th><th>unmanaged</th><th>Microgrid Edge</th></tr>\n"
    t += row("Demand charges", m.demandCharge, u.demandCharge)
    t += row("Energy", m.energyCost - m.exportCredit, u.energyCost - u.exportCredit)
    t += row("Demand-response payments", -m.demandResponsePayment, -u.demandResponsePayment)
    t += row("Departure shortfall penalty", m.shortfallPenalty, u.shortfallPenalty)
    t += row("Unserved critical load penalty", m.unservedCriticalPenalty, u.unservedCriticalPenalty)
    t += "<tr><th>Total</th><th>$\(number(u.total))</th><th>$\(number(m.total))</th></tr></table>\n"
    t += "<p>Savings: <b>$\(number(u.total - m.total))</b> a year. "
    t +=
      "Critical load left unserved in outages: \(number(m.unservedCriticalKWh, 1)) kWh (unmanaged: \(number(u.unservedCriticalKWh, 1)) kWh). "
    t += "Energy missing at departures: \(number(m.shortfallKWh, 3)) kWh.</p>\n"
    return t
  }

  static func monthlyPeaks(_ m: CostBreakdown, _ u: CostBreakdown) -> String {
    let months = m.monthlyPeaksKW
    let width = 900.0
    let height = 260.0
    let left = 50.0
    let bottom = 30.0
    let top = max(1, (months + u.monthlyPeaksKW).map { max($0.peakKW, $0.buildingPeakKW) }.max() ?? 1) * 1.1
    let plotH = height - bottom - 10
    let slot = (width - left) / Double(max(1, months.count))
    func y(_ v: Double) -> Double { 10 + plotH * (1 - v / top) }
    var svg =
      "<svg width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\">\n"
    svg += axis(top: top, left: left, width: width, y: y)
    for (i, month) in months.enumerated() {
      let x = left + Double(i) * slot
      let unmanaged = i < u.monthlyPeaksKW.count ? u.monthlyPeaksKW[i].peakKW : 0
      let bw = slot * 0.35
      svg += rect(
        x + slot * 0.12, y(unmanaged), bw, y(0) - y(unmanaged), "#bbb",
        "\(month.month) unmanaged \(number(unmanaged)) kW")
      svg += rect(
        x + slot * 0.12 + bw, y(month.peakKW), bw, y(0) - y(month.peakKW), "#1f77b4",
        "\(month.month) with Microgrid Edge \(number(month.peakKW)) kW")
      svg +=
        "<line x1=\"\(f(x + slot * 0.08))\" x2=\"\(f(x + slot * 0.92))\" y1=\"\(f(y(month.buildingPeakKW)))\" y2=\"\(f(y(month.buildingPeakKW)))\" stroke=\"#d62728\" stroke-width=\"2\"><title>\(month.month) building alone \(number(month.buildingPeakKW)) kW</title></line>\n"
      svg += "<text x=\"\(f(x + slot / 2))\" y=\"\(f(height - 12))\" text-anchor=\"middle\">\(month.month)</text>\n"
    }
    return svg + "</svg>\n"
  }

  static func worstWeek(_ t: Trace, intervalMinutes: Int) -> Range<Int>? {
    guard let peak = t.intervals.indices.max(by: { t.intervals[$0].gridKW < t.intervals[$1].gridKW }) else {
      return nil
    }
    let perDay = 1440 / intervalMinutes
    let perWeek = perDay * 7
    var start = max(0, (peak / perDay - 3) * perDay)
    start = max(0, min(start, t.intervals.count - perWeek))
    return start..<min(t.intervals.count, start + perWeek)
  }

  static func weekPlot(_ rows: [Trace.IntervalRow], intervalMinutes: Int) -> String {
    let width = 900.0
    let height = 300.0
    let left = 50.0
    let bottom = 30.0
    let hi = max(1, rows.map { max($0.buildingKW, $0.gridKW, $0.evKW) }.max() ?? 1) * 1.1
    let lo = min(0, rows.map { min($0.evKW, $0.gridKW) }.min() ?? 0) * 1.1
    let plotH = height - bottom - 10
    func y(_ v: Double) -> Double { 10 + plotH * (hi - v) / (hi - lo) }
    func x(_ i: Int) -> Double { left + (width - left - 5) * Double(i) / Double(max(1, rows.count - 1)) }
    var svg =
      "<svg width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\">\n"
    svg += axis(top: hi, bottomValue: lo, left: left, width: width, y: y)
    let perDay = 1440 / intervalMinutes
    let names = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    for day in stride(from: 0, to: rows.count, by: perDay) {
      svg += "<line x1=\"\(f(x(day)))\" x2=\"\(f(x(day)))\" y1=\"10\" y2=\"\(f(height - bottom))\" stroke=\"#eee\"/>\n"
      let weekday = ((rows[day].minute / 1440) % 7 + 7) % 7
      svg += "<text x=\"\(f(x(day) + 4))\" y=\"\(f(height - 12))\">\(names[weekday])</text>\n"
    }
    for (color, value) in [("#d62728", \Trace.IntervalRow.buildingKW), ("#1f77b4", \.gridKW), ("#2ca02c", \.evKW)] {
      let points = rows.indices.map { "\(f(x($0))),\(f(y(rows[$0][keyPath: value])))" }.joined(separator: " ")
      svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.3\" points=\"\(points)\"/>\n"
    }
    return svg + "</svg>\n"
  }

  static func axis(top: Double, bottomValue: Double = 0, left: Double, width: Double, y: (Double) -> Double) -> String {
    var svg = ""
    let span = top - bottomValue
    let rawStep = span / 5
    let magnitude = pow10(floorLog10(rawStep))
    let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= rawStep } ?? rawStep
    var v = (bottomValue / step).rounded(.up) * step
    while v <= top {
      svg +=
        "<line x1=\"\(f(left))\" x2=\"\(f(width))\" y1=\"\(f(y(v)))\" y2=\"\(f(y(v)))\" stroke=\"\(v == 0 ? "#888" : "#eee")\"/>\n"
      svg += "<text x=\"\(f(left - 4))\" y=\"\(f(y(v) + 4))\" text-anchor=\"end\">\(number(v))</text>\n"
      v += step
    }
    return svg
  }

  static func rect(_ x: Double, _ y: Double, _ w: Double, _ h: Double, _ color: String, _ title: String) -> String {
    "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(w))\" height=\"\(f(max(0, h)))\" fill=\"\(color)\"><title>\(escape(title))</title></rect>\n"
  }

  static func f(_ v: Double) -> String {
    var s = ""
    TraceFiles.appendFixed((v * 10).rounded() / 10, to: &s)
    return String(s.dropLast(2))
  }

  static func floorLog10(_ v: Double) -> Int {
    var e = 0
    var x = max(v, 1e-9)
    while x >= 10 { x /= 10; e += 1 }
    while x < 1 { x *= 10; e -= 1 }
    return e
  }

  static func pow10(_ e: Int) -> Double {
    var r = 1.0
    if e >= 0 { for _ in 0..<e { r *= 10 } } else { for _ in 0..<(-e) { r /= 10 } }
    return r
  }
}
