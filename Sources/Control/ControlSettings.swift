/// How the controller behaves, with defaults a site can leave alone. Every value here can
/// be set in the site configuration's `control:` section.
public struct ControlSettings: Sendable, Hashable, Codable {
  /// IEEE 1547-2018 enter-service delay: the utility must have been available and in range
  /// this long before the site reconnects or exports. 300 s is the standard's default.
  public var enterServiceDelaySeconds: Double = 300
  /// IEEE 1547-2018 enter-service ramp: after the delay, discharge onto the grid rises from
  /// 0 to full over this long (the standard's default is 300 s; 0: no ramp).
  public var enterServiceRampSeconds: Double = 300
  /// A commanded transfer the switch's contacts do not confirm within this long is a stuck
  /// switch: alarm, and the chargers stay off while it is between sources.
  public var transferConfirmSeconds: Double = 10
  /// A transfer back to the utility that got stuck is tried again this often; the island
  /// carries the building in between.
  public var transferRetrySeconds: Double = 60
  /// On the island, shed load groups come back one at a time, at most one per this long,
  /// so the grid-forming charger takes each inrush on its own.
  public var loadRestoreStepSeconds: Double = 30
  /// A shed group comes back only if the vehicles could carry the island with it for this
  /// many hours; if they no longer can, the last group restored is shed again.
  public var loadRestoreHours: Double = 2
  /// Plan to have each vehicle's departure need in the battery this long before it leaves.
  public var departureMarginSeconds: Double = 1800
  /// Plan recharging at this share of a charger's rated power, leaving room for tapering
  /// and for meter error.
  public var plannedChargeRateFraction: Double = 0.9
  /// In an outage, assume the utility stays away at least this much longer when deciding
  /// how deep a vehicle may discharge for critical load and still meet its departure. A
  /// kWh missing at departure costs about fifty times a kWh of critical load unserved, so
  /// this is long: a vehicle leaving within it keeps its whole departure need.
  public var outageAssumedRemainingSeconds: Double = 24 * 3600
  /// In the first week of a month the demand target is at least this share of the highest
  /// interval of building load seen over the past week (and never below the month's peak
  /// so far); after that it is the month's peak.
  public var initialTargetFraction: Double = 0.85
  /// Before an announced demand-response event, vehicles that will still be plugged in
  /// when it starts are charged to hold this many hours of their charger's discharge power
  /// above their departure need.
  public var eventPrechargeHours: Double = 3
  /// Event pre-charge the headroom does not cover is paced at this share of the pace that
  /// would complete it by the event's start (0: headroom only; 1: whatever the peak).
  public var eventPaceShare: Double = 0.5
  /// Peak shaving may take a vehicle below its departure need only as far as recharging at
  /// this share of its charger's power can put back before it leaves (0: never below).
  public var shavingRechargeFraction: Double = 0.25
  /// How much of the headroom that last week's load promises before a departure the
  /// controller counts on; the rest of a need is charged at a steady pace from now.
  public var valleyConfidence: Double = 0.2
  /// Hold enough energy above departure needs, on vehicles staying past the release
  /// window, to carry the critical load this many hours if the utility fails.
  public var outageReserveHours: Double = 2
  /// Every stay is planned to survive an outage this long beginning at any moment of it:
  /// at all times either the vehicle's departure need can still be reached if charging
  /// stops for this long (plus the enter-service delay before the building recloses), or
  /// the vehicle charges at full rate. No vehicle then leaves shorter than plain
  /// charge-on-arrival would have left it, for outages up to this long. 0: off.
  ///
  /// 2 h by default, not 4: measured on the shared scenarios, 4 h costs a school whose buses
  /// park five hours at midday about $22,000 a year in demand charges (their need must
  /// then go in at full rate on arrival, on the building's morning peak); 2 h costs $3,200.
  /// Even the perfect-foresight optimum pays $20,700 for 4 h there: the price is the
  /// rule's, not the planner's (docs/architecture.md, "Outage ride-through").
  public var outageRideThroughHours: Double = 2
  /// In the last this-many hours of a stay, energy above the departure need goes back to
  /// the building rather than leaving with the vehicle.
  public var reserveReleaseHours: Double = 3
  /// How far ahead the rolling plan looks.
  public var planHorizonHours: Double = 24
  /// The demand target sits this share above the plan's peak, for forecast error.
  public var planMarginFraction: Double = 0.02
  /// How long the forecast keeps the last hour's deviation from last week.
  public var forecastCorrectionHours: Double = 12

  public init() {}

  /// How long charging may stop from any moment, in the ride-through rule: the outage
  /// itself, the enter-service delay before the building recloses onto the utility, and
  /// the switch's confirmation.
  public var rideThroughSeconds: Double {
    outageRideThroughHours > 0
      ? outageRideThroughHours * 3600 + enterServiceDelaySeconds + transferConfirmSeconds : 0
  }

  enum CodingKeys: String, CodingKey {
    case enterServiceDelaySeconds = "enter_service_delay_seconds"
    case enterServiceRampSeconds = "enter_service_ramp_seconds"
    case transferConfirmSeconds = "transfer_confirm_seconds"
    case transferRetrySeconds = "transfer_retry_seconds"
    case loadRestoreStepSeconds = "load_restore_step_seconds"
    case loadRestoreHours = "load_restore_hours"
    case departureMarginSeconds = "departure_margin_seconds"
    case plannedChargeRateFraction = "planned_charge_rate_fraction"
    case outageAssumedRemainingSeconds = "outage_assumed_remaining_seconds"
    case initialTargetFraction = "initial_target_fraction"
    case eventPrechargeHours = "event_precharge_hours"
    case shavingRechargeFraction = "shaving_recharge_fraction"
    case eventPaceShare = "event_pace_share"
    case valleyConfidence = "valley_confidence"
    case outageReserveHours = "outage_reserve_hours"
    case outageRideThroughHours = "outage_ride_through_hours"
    case reserveReleaseHours = "reserve_release_hours"
    case planHorizonHours = "plan_horizon_hours"
    case planMarginFraction = "plan_margin_fraction"
    case forecastCorrectionHours = "forecast_correction_hours"
  }

  /// Every key is optional in a file: what is left out keeps its default.
  public init(from decoder: any Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    let d = ControlSettings()
    func value(_ key: CodingKeys, _ fallback: Double) throws -> Double {
      try c.decodeIfPresent(Double.self, forKey: key) ?? fallback
    }
    enterServiceDelaySeconds = try value(.enterServiceDelaySeconds, d.enterServiceDelaySeconds)
    enterServiceRampSeconds = try value(.enterServiceRampSeconds, d.enterServiceRampSeconds)
    transferConfirmSeconds = try value(.transferConfirmSeconds, d.transferConfirmSeconds)
    transferRetrySeconds = try value(.transferRetrySeconds, d.transferRetrySeconds)
    loadRestoreStepSeconds = try value(.loadRestoreStepSeconds, d.loadRestoreStepSeconds)
    loadRestoreHours = try value(.loadRestoreHours, d.loadRestoreHours)
    departureMarginSeconds = try value(.departureMarginSeconds, d.departureMarginSeconds)
    plannedChargeRateFraction = try value(.plannedChargeRateFraction, d.plannedChargeRateFraction)
    outageAssumedRemainingSeconds = try value(
      .outageAssumedRemainingSeconds, d.outageAssumedRemainingSeconds)
    initialTargetFraction = try value(.initialTargetFraction, d.initialTargetFraction)
    eventPrechargeHours = try value(.eventPrechargeHours, d.eventPrechargeHours)
    shavingRechargeFraction = try value(.shavingRechargeFraction, d.shavingRechargeFraction)
    eventPaceShare = try value(.eventPaceShare, d.eventPaceShare)
    valleyConfidence = try value(.valleyConfidence, d.valleyConfidence)
    outageReserveHours = try value(.outageReserveHours, d.outageReserveHours)
    outageRideThroughHours = try value(.outageRideThroughHours, d.outageRideThroughHours)
    reserveReleaseHours = try value(.reserveReleaseHours, d.reserveReleaseHours)
    planHorizonHours = try value(.planHorizonHours, d.planHorizonHours)
    planMarginFraction = try value(.planMarginFraction, d.planMarginFraction)
    forecastCorrectionHours = try value(.forecastCorrectionHours, d.forecastCorrectionHours)
  }

  /// Range checks a decoder cannot express, as (key, problem) pairs.
  public var problems: [(key: String, message: String)] {
    var p: [(String, String)] = []
    if !(enterServiceDelaySeconds >= 0) {
      p.append(("enter_service_delay_seconds", "must be 0 or more (IEEE 1547 default: 300)"))
    }
    if !(enterServiceRampSeconds >= 0) {
      p.append(("enter_service_ramp_seconds", "must be 0 or more (IEEE 1547 default: 300)"))
    }
    if !(transferConfirmSeconds > 0) { p.append(("transfer_confirm_seconds", "must be above 0")) }
    if !(transferRetrySeconds > 0) { p.append(("transfer_retry_seconds", "must be above 0")) }
    if !(loadRestoreStepSeconds >= 0) { p.append(("load_restore_step_seconds", "must be 0 or more")) }
    if !(loadRestoreHours >= 0) { p.append(("load_restore_hours", "must be 0 or more")) }
    if !(departureMarginSeconds >= 0) { p.append(("departure_margin_seconds", "must be 0 or more")) }
    if !(plannedChargeRateFraction > 0 && plannedChargeRateFraction <= 1) {
      p.append(("planned_charge_rate_fraction", "must be above 0 and at most 1"))
    }
    if !(outageAssumedRemainingSeconds >= 0) {
      p.append(("outage_assumed_remaining_seconds", "must be 0 or more"))
    }
    if !(initialTargetFraction >= 0 && initialTargetFraction <= 2) {
      p.append(("initial_target_fraction", "must be between 0 and 2"))
    }
    if !(eventPaceShare >= 0 && eventPaceShare <= 1) { p.append(("event_pace_share", "must be between 0 and 1")) }
    if !(eventPrechargeHours >= 0) { p.append(("event_precharge_hours", "must be 0 or more")) }
    if !(valleyConfidence >= 0 && valleyConfidence <= 1) { p.append(("valley_confidence", "must be between 0 and 1")) }
    if !(shavingRechargeFraction >= 0 && shavingRechargeFraction <= 1) {
      p.append(("shaving_recharge_fraction", "must be between 0 and 1"))
    }
    if !(outageReserveHours >= 0) { p.append(("outage_reserve_hours", "must be 0 or more")) }
    if !(outageRideThroughHours >= 0 && outageRideThroughHours <= 48) {
      p.append(("outage_ride_through_hours", "must be between 0 and 48"))
    }
    if !(reserveReleaseHours >= 0) { p.append(("reserve_release_hours", "must be 0 or more")) }
    if !(planHorizonHours > 0 && planHorizonHours <= 167) {
      p.append(("plan_horizon_hours", "must be above 0 and under a week (the forecast's reach)"))
    }
    if !(planMarginFraction >= 0 && planMarginFraction <= 1) {
      p.append(("plan_margin_fraction", "must be between 0 and 1"))
    }
    if !(forecastCorrectionHours > 0) { p.append(("forecast_correction_hours", "must be above 0")) }
    return p
  }
}
