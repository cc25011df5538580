import Foundation

/// Small inline-SVG charts: no script, no font files, no network; they draw from a file://
/// URL on a laptop with no connection. Colours come from the page's stylesheet classes.
struct SVGChart {
  let kind: String
  let title: String
  var width = 760.0
  var height = 260.0
  let margin = (left: 58.0, right: 14.0, top: 26.0, bottom: 38.0)
  var yMin = 0.0
  var yMax = 1.0
  var xMin = 0.0
  var xMax = 1.0
  var yUnit = "kW"
  private var body = ""

  init(kind: String, title: String) {
    self.kind = kind
    self.title = title
  }

  var plotWidth: Double { width - margin.left - margin.right }
  var plotHeight: Double { height - margin.top - margin.bottom }
  func x(_ v: Double) -> Double { margin.left + (v - xMin) / max(1e-9, xMax - xMin) * plotWidth }
  func y(_ v: Double) -> Double { margin.top + (yMax - v) / max(1e-9, yMax - yMin) * plotHeight }

  /// Sets the y range to nice round bounds around `values` (0 always included).
  mutating func fitY(_ values: [Double]) {
    let lo = min(0, values.min() ?? 0)
    let hi = max(values.max() ?? 1, lo + 1)
    let step = Self.niceStep((hi - lo) / 5)
    yMin = (lo / step).rounded(.down) * step
    yMax = (hi / step).rounded(.up) * step
  }

  static func niceStep(_ raw: Double) -> Double {
    let p = pow(10, (log10(max(raw, 1e-9))).rounded(.down))
    for m in [1.0, 2, 2.5, 5, 10] where raw <= m * p { return m * p }
    return 10 * p
  }

  mutating func rect(x0: Double, x1: Double, y0: Double, y1: Double, cls: String, tip: String? = nil) {
    let top = min(y(y0), y(y1))
    let h = abs(y(y0) - y(y1))
    body +=
      "<rect class=\"\(cls)\" x=\"\(f(x(x0)))\" y=\"\(f(top))\" width=\"\(f(max(0.5, x(x1) - x(x0))))\" "
      + "height=\"\(f(max(0.5, h)))\">\(tip.map { "<title>\(HTML.escape($0))</title>" } ?? "")</rect>"
  }

  mutating func band(x0: Double, x1: Double, cls: String, label: String? = nil) {
    body +=
      "<rect class=\"\(cls)\" x=\"\(f(x(x0)))\" y=\"\(f(margin.top))\" width=\"\(f(max(1, x(x1) - x(x0))))\" "
      + "height=\"\(f(plotHeight))\"/>"
    if let label {
      body +=
        "<text class=\"band-label\" x=\"\(f(x(x0) + 3))\" y=\"\(f(margin.top + 12))\">\(HTML.escape(label))</text>"
    }
  }

  mutating func polyline(_ points: [(Double, Double)], cls: String, tip: String? = nil) {
    guard !points.isEmpty else { return }
    let p = points.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " ")
    body +=
      "<polyline class=\"\(cls)\" points=\"\(p)\">\(tip.map { "<title>\(HTML.escape($0))</title>" } ?? "")</polyline>"
  }

  /// A filled area between two curves sampled at the same x.
  mutating func area(_ xs: [Double], lower: [Double], upper: [Double], cls: String) {
    guard xs.count >= 2 else { return }
    var d = "M\(f(x(xs[0]))),\(f(y(upper[0])))"
    for i in 1..<xs.count { d += " L\(f(x(xs[i]))),\(f(y(upper[i])))" }
    for i in stride(from: xs.count - 1, through: 0, by: -1) { d += " L\(f(x(xs[i]))),\(f(y(lower[i])))" }
    body += "<path class=\"\(cls)\" d=\"\(d) Z\"/>"
  }

  mutating func hline(_ v: Double, cls: String, label: String? = nil) {
    body +=
      "<line class=\"\(cls)\" x1=\"\(f(margin.left))\" x2=\"\(f(margin.left + plotWidth))\" "
      + "y1=\"\(f(y(v)))\" y2=\"\(f(y(v)))\"/>"
    if let label {
      body +=
        "<text class=\"line-label\" x=\"\(f(margin.left + plotWidth - 4))\" y=\"\(f(y(v) - 4))\" "
        + "text-anchor=\"end\">\(HTML.escape(label))</text>"
    }
  }

  mutating func xLabel(_ v: Double, _ text: String) {
    body +=
      "<text class=\"tick\" x=\"\(f(x(v)))\" y=\"\(f(margin.top + plotHeight + 16))\" "
      + "text-anchor=\"middle\">\(HTML.escape(text))</text>"
  }

  /// The finished element, with its axes and a legend of (class, label).
  func svg(legend: [(String, String)]) -> String {
    var axes = ""
    let step = Self.niceStep((yMax - yMin) / 5)
    var v = yMin
    while v <= yMax + step / 2 {
      axes +=
        "<line class=\"gridline\" x1=\"\(f(margin.left))\" x2=\"\(f(margin.left + plotWidth))\" "
        + "y1=\"\(f(y(v)))\" y2=\"\(f(y(v)))\"/>"
      axes +=
        "<text class=\"tick\" x=\"\(f(margin.left - 6))\" y=\"\(f(y(v) + 4))\" text-anchor=\"end\">"
        + "\(Self.label(v))</text>"
      v += step
    }
    axes +=
      "<text class=\"tick\" x=\"\(f(margin.left - 6))\" y=\"\(f(margin.top - 10))\" text-anchor=\"end\">"
      + "\(HTML.escape(yUnit))</text>"
    var keys = ""
    var lx = margin.left
    for (cls, label) in legend {
      keys += "<rect class=\"\(cls) key\" x=\"\(f(lx))\" y=\"\(f(height - 14))\" width=\"12\" height=\"10\"/>"
      keys += "<text class=\"tick\" x=\"\(f(lx + 16))\" y=\"\(f(height - 5))\">\(HTML.escape(label))</text>"
      lx += 28 + Double(label.count) * 6.2
    }
    return "<svg class=\"chart\" data-chart=\"\(kind)\" role=\"img\" viewBox=\"0 0 \(f(width)) \(f(height))\" "
      + "width=\"\(f(width))\" height=\"\(f(height))\" xmlns=\"http://www.w3.org/2000/svg\">"
      + "<title>\(HTML.escape(title))</title>"
      + "<text class=\"chart-title\" x=\"\(f(margin.left))\" y=\"14\">\(HTML.escape(title))</text>"
      + axes + body
      + "<line class=\"axis\" x1=\"\(f(margin.left))\" x2=\"\(f(margin.left + plotWidth))\" y1=\"\(f(y(0)))\" "
      + "y2=\"\(f(y(0)))\"/>" + keys + "</svg>"
  }

  static func label(_ v: Double) -> String {
    abs(v) >= 1000 ? String(format: "%.0f", v) : (v == v.rounded() ? String(Int(v)) : String(format: "%.1f", v))
  }

  private func f(_ v: Double) -> String { String(format: "%.1f", v) }
}

enum HTML {
  static func escape(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.count)
    for c in s {
      switch c {
      case "&": out += "&amp;"
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "\"": out += "&quot;"
      case "'": out += "&#39;"
      default: out.append(c)
      }
    }
    return out
  }
}
