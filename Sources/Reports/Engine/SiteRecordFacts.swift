import SiteModel

/// What the appliance says of its site in the `site` record (at start, every local midnight
/// and when the clock's offset changes): enough to bill and to judge the records alone.
struct SiteFacts: Sendable {
  struct Charger: Sendable {
    var maxChargeKW: Double
    var maxDischargeKW: Double
    var efficiency: Double
  }
  struct Vehicle: Sendable {
    var batteryKWh: Double
    var reserveKWh: Double
  }

  var name: String?
  var timeZone = "Etc/UTC"
  /// Local time minus UTC, seconds.
  var utcOffsetSeconds = 0.0
  var demandIntervalSeconds = 900.0
  var billingCycleDay = 1
  var criticalLoadFraction = 0.35
  var demandChargePerKWMonth = 0.0
  var demandResponsePaymentPerKW = 0.0
  var chargers: [String: Charger] = [:]
  var vehicles: [String: Vehicle] = [:]

  /// Reads a `site` record; members it lacks keep what was known.
  mutating func update(from o: JSONObjectView) {
    if let v = o.string("name") { name = v }
    if let v = o.string("time_zone") { timeZone = v }
    if let v = o.number("utc_offset_s") { utcOffsetSeconds = v }
    if let v = o.number("demand_interval_s"), v >= 60, 86_400.truncatingRemainder(dividingBy: v) == 0 {
      demandIntervalSeconds = v
    }
    if let v = o.number("billing_cycle_day"), (1...28).contains(Int(v)) { billingCycleDay = Int(v) }
    if let v = o.number("critical_load_fraction"), (0...1).contains(v) { criticalLoadFraction = v }
    if case .object(let r)? = o["tariff"], let t = try? JSONObjectView(bytes: o.bytes, range: r) {
      if let v = t.number("demand_charge_per_kw_month") { demandChargePerKWMonth = v }
      if let v = t.number("dr_payment_per_kw") { demandResponsePaymentPerKW = v }
    }
    for c in o.objects("chargers") {
      guard let id = c.string("id") else { continue }
      chargers[id] = Charger(
        maxChargeKW: c.number("max_charge_kw") ?? 0, maxDischargeKW: c.number("max_discharge_kw") ?? 0,
        efficiency: c.number("efficiency").flatMap { $0 > 0 && $0 <= 1 ? $0 : nil } ?? 1)
    }
    for v in o.objects("vehicles") {
      guard let id = v.string("id") else { continue }
      vehicles[id] = Vehicle(batteryKWh: v.number("battery_kwh") ?? 0, reserveKWh: v.number("reserve_kwh") ?? 0)
    }
  }
}

/// The "doing nothing" reference a report bills against: a vehicle charges at its
/// charger's full rate from plug-in until it holds its departure need, never discharges,
/// and nothing charges while the utility is away. The simulator's unmanaged reference
/// (UnmanagedPolicy) does exactly this, which is why the two agree.
enum ChargeOnArrival {
  /// The spans `[start, end)` (seconds) a vehicle would charge at `kW` under that rule.
  static func charging(
    from pluggedIn: Double, to unplugged: Double, arrivalKWh: Double, needKWh: Double, maxChargeKW: Double,
    efficiency: Double, outages: [(start: Double, end: Double)]
  ) -> [(start: Double, end: Double)] {
    guard maxChargeKW > 0, needKWh > arrivalKWh + 1e-9, unplugged > pluggedIn else { return [] }
    var remainingSeconds = (needKWh - arrivalKWh) / (maxChargeKW * efficiency) * 3600
    var spans: [(start: Double, end: Double)] = []
    var t = pluggedIn
    for o in outages where o.end > t && o.start < unplugged {
      guard remainingSeconds > 0 else { break }
      if o.start > t {
        let run = min(o.start - t, remainingSeconds, unplugged - t)
        spans.append((t, t + run))
        remainingSeconds -= run
      }
      t = max(t, o.end)
      if t >= unplugged { return spans }
    }
    if remainingSeconds > 0 && t < unplugged { spans.append((t, min(unplugged, t + remainingSeconds))) }
    return spans
  }
}
