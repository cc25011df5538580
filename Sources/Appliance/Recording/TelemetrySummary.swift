import Foundation
import Store

/// What thinned telemetry keeps of an interval (see `RecordStore.maintain`): the means,
/// extremes and modes of the records it replaces, in the same members as a telemetry
/// record, plus `summary` saying what it stands for.
public struct TelemetrySummary: TelemetrySummarizer {
  public init() {}

  public func summarize(_ records: [(timeMS: Int64, body: String)], intervalStartMS: Int64, intervalEndMS: Int64)
    -> String
  {
    var count = 0
    var sums: [String: Double] = [:]
    var maxima: [String: Double] = [:]
    var minima: [String: Double] = [:]
    var modes: [String] = []
    var last: [String: Any] = [:]
    var chargerSums: [String: (kw: Double, n: Int)] = [:]
    var chargerOrder: [String] = []
    for record in records {
      guard let object = try? JSONSerialization.jsonObject(with: Data(record.body.utf8)) as? [String: Any] else {
        continue  // a body this build did not write: it is counted out, not guessed at
      }
      count += 1
      for key in ["grid_kw", "building_kw", "served_kw", "ev_kw"] {
        if let v = (object[key] as? NSNumber)?.doubleValue { sums[key, default: 0] += v }
      }
      for (key, source) in [("grid_kw_max", "grid_kw_max"), ("building_kw_max", "building_kw")] {
        if let v = (object[source] as? NSNumber)?.doubleValue { maxima[key] = max(maxima[key] ?? v, v) }
      }
      if let v = (object["grid_kw_min"] as? NSNumber)?.doubleValue {
        minima["grid_kw_min"] = min(minima["grid_kw_min"] ?? v, v)
      }
      if let mode = object["mode"] as? String, !modes.contains(mode) { modes.append(mode) }
      for key in ["target_kw", "month_peak_kw", "utility", "switch"] { if let v = object[key] { last[key] = v } }
      for charger in object["chargers"] as? [[String: Any]] ?? [] {
        guard let id = charger["id"] as? String, let kw = (charger["kw"] as? NSNumber)?.doubleValue else { continue }
        if chargerSums[id] == nil { chargerOrder.append(id) }
        chargerSums[id, default: (0, 0)].kw += kw
        chargerSums[id, default: (0, 0)].n += 1
      }
    }
    let n = RecordJSON.number
    var members: [(String, String)] = [
      (
        "summary",
        RecordJSON.object([
          ("from", RecordJSON.time(Date(timeIntervalSince1970: Double(intervalStartMS) / 1000))),
          ("to", RecordJSON.time(Date(timeIntervalSince1970: Double(intervalEndMS) / 1000))),
          ("records", String(records.count)),
        ])
      ),
      ("modes", "[" + modes.map(RecordJSON.string).joined(separator: ",") + "]"),
    ]
    let mean = Double(max(1, count))
    for key in ["grid_kw", "building_kw", "served_kw", "ev_kw"] {
      if let v = sums[key] { members.append((key, n(v / mean, 2))) }
    }
    for key in ["grid_kw_max", "building_kw_max"] { if let v = maxima[key] { members.append((key, n(v, 2))) } }
    if let v = minima["grid_kw_min"] { members.append(("grid_kw_min", n(v, 2))) }
    for key in ["target_kw", "month_peak_kw"] {
      if let v = (last[key] as? NSNumber)?.doubleValue { members.append((key, n(v, 1))) }
    }
    let chargers = chargerOrder.map { id -> String in
      let s = chargerSums[id]!
      return RecordJSON.object([("id", RecordJSON.string(id)), ("kw", n(s.kw / Double(max(1, s.n)), 2))])
    }
    members.append(("chargers", "[" + chargers.joined(separator: ",") + "]"))
    return RecordJSON.object(members)
  }
}
