import SiteModel

/// How far one vehicle on one charger may charge or discharge this step without putting
/// its departure at risk. The planner and the safety filter use the same arithmetic; the
/// filter with no margin (physics), the planner with the margins in `ControlSettings`.
public struct VehicleEnvelope: Sendable, Hashable {
  /// Charging below this now leaves too little time to reach the departure need, kW >= 0.
  public var mustChargeKW: Double
  /// The most it can charge this step: charger rating and room in the battery, kW >= 0.
  public var maxChargeKW: Double
  /// The most it may discharge this step (a positive number of kW), 0 when it must charge.
  public var maxDischargeKW: Double
  /// The steady power that would bring it to its departure need just in time (by the
  /// departure less the margin), kW >= 0. Charging at this pace spreads a need over the
  /// whole stay instead of leaving it to a full-power rush before departure.
  public var paceKW: Double
  /// When the pace means to have the departure need in the battery, on the timeline: the
  /// departure less the margin and, with the ride-through rule, less the stop from which
  /// the rule would ask for full power.
  public var paceDeadline: Double
  /// The most it may lend for peak shaving: down to its floor, and below its departure
  /// need only as far as a gentle recharge (`margins.shavingRechargeFraction` of the
  /// charger's power) can put back before it leaves.
  public var surplusDischargeKW: Double

  /// Margins that make a plan robust; `.physical` has none.
  public struct Margins: Sendable, Hashable {
    public var departureMarginSeconds: Double
    public var chargeRateFraction: Double
    public var shavingRechargeFraction: Double
    /// Charging may stop this long from any moment (an outage, and the enter-service delay
    /// after it): the departure need must stay reachable without it, or the vehicle
    /// charges at full rate now.
    public var rideThroughSeconds: Double
    public static let physical = Margins(
      departureMarginSeconds: 0, chargeRateFraction: 1, shavingRechargeFraction: 0, rideThroughSeconds: 0)
    public init(
      departureMarginSeconds: Double, chargeRateFraction: Double, shavingRechargeFraction: Double,
      rideThroughSeconds: Double = 0
    ) {
      self.departureMarginSeconds = departureMarginSeconds
      self.chargeRateFraction = chargeRateFraction
      self.shavingRechargeFraction = shavingRechargeFraction
      self.rideThroughSeconds = rideThroughSeconds
    }

    /// When a need should be in the battery: the departure less the margin or, if earlier,
    /// the time from which the ride-through rule asks for full power. `reclosingSeconds`
    /// is the idle step that recloses the switch after a stop, and the step under way
    /// (the envelope's period; 0 for the plan, which works in whole intervals).
    public func needReadyBy(departure: Double, reclosingSeconds: Double) -> Double {
      guard rideThroughSeconds > 0 else { return departure - departureMarginSeconds }
      return min(departure - departureMarginSeconds, departure - rideThroughSeconds - 2 * reclosingSeconds)
    }
  }

  /// - Parameters:
  ///   - floorKWh: the battery energy discharging must not go below (reserve, or an
  ///     outage floor); the departure need is applied on top.
  ///   - noChargeUntil: seconds on the timeline before which the vehicle cannot be charged
  ///     (used in outages: the utility is assumed to stay away until then).
  public init(
    vehicle v: PluggedVehicle, charger c: ChargerSpec, time t: Double, periodSeconds: Double,
    margins: Margins, floorKWh: Double, noChargeUntil: Double? = nil
  ) {
    let h = periodSeconds / 3600
    let eta = c.efficiency
    // What can still go in after this step, at the planning margins (a share of the
    // charger's rate, by the departure less a margin), from a known time in an outage.
    let chargeFrom = max(t + periodSeconds, noChargeUntil ?? 0)
    let hoursAfter = max(0, (v.departureTime - margins.departureMarginSeconds - chargeFrom) / 3600)
    var laterIntoBattery = c.maxChargeKW * eta * margins.chargeRateFraction * hoursAfter
    // The ride-through rule: should charging stop for the ride-through from the end of this
    // step (and for the step that recloses the switch after it, which charges nothing),
    // what is sure to go in after that, at the full rate until the departure itself. It is
    // measured as charge-on-arrival would do it, with no margin on top of a hypothetical
    // outage: the margins above still hold on their own.
    let stop = margins.rideThroughSeconds > 0 ? margins.rideThroughSeconds + periodSeconds : 0
    if stop > 0 {
      let hoursAfterStop = max(0, (v.departureTime - (t + periodSeconds + stop)) / 3600)
      laterIntoBattery = min(laterIntoBattery, c.maxChargeKW * eta * hoursAfterStop)
    }
    let deficitNow = v.departureNeedKWh - v.energyKWh
    let roomKWh = max(0, v.batteryKWh - v.energyKWh)

    maxChargeKW = max(0, min(c.maxChargeKW, roomKWh / (eta * h)))
    let must = (deficitNow - laterIntoBattery) / (eta * h)
    mustChargeKW = min(maxChargeKW, max(0, must))

    // The pace aims at the time from which the ride-through rule would ask for full power.
    paceDeadline = margins.needReadyBy(departure: v.departureTime, reclosingSeconds: periodSeconds)
    let hoursToDeadline = max(h, (paceDeadline - t) / 3600)
    paceKW = min(maxChargeKW, max(0, deficitNow / (eta * hoursToDeadline)))

    if mustChargeKW > 0 {
      maxDischargeKW = 0
      surplusDischargeKW = 0
    } else {
      // Lowest energy the battery may end this step at.
      let lowest = max(floorKWh, v.departureNeedKWh - laterIntoBattery, 0)
      maxDischargeKW = max(0, min(c.maxDischargeKW, (v.energyKWh - lowest) * eta / h))
      let gentleRecharge = c.maxChargeKW * eta * margins.shavingRechargeFraction * hoursAfter
      let keep = max(floorKWh, v.departureNeedKWh - gentleRecharge, lowest)
      surplusDischargeKW = max(0, min(maxDischargeKW, (v.energyKWh - keep) * eta / h))
    }
  }
}
