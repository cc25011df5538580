// What the controller sees at one control step. Adapters (the simulator's plant, GPIO, MQTT,
// OCPP) fill it in; the controller never reads anything else.

/// The transfer switch's confirmed position, from its auxiliary contacts.
public enum TransferSwitchPosition: String, Sendable, Hashable, Codable {
  /// The building is fed from the utility.
  case utility
  /// The building is isolated from the utility and may run as an island.
  case island
  /// Contacts disagree or the switch is moving.
  case unknown
}

/// A plug-in session as the charger reports it (OCPP NotifyEVChargingNeeds): what the
/// vehicle holds, and what it needs by when. Known from arrival, not earlier.
public struct PluggedVehicle: Sendable, Hashable {
  public var vehicleID: String
  public var batteryKWh: Double
  public var reserveKWh: Double
  public var energyKWh: Double
  /// What it held when it arrived: discharging never takes it below min(reserve, this).
  public var arrivalEnergyKWh: Double
  /// Seconds on the snapshot's timeline.
  public var departureTime: Double
  public var departureNeedKWh: Double
  /// Staff excluded this vehicle from discharging (a panel's "hold"): it may charge only.
  public var dischargeHeld: Bool

  public init(
    vehicleID: String, batteryKWh: Double, reserveKWh: Double, energyKWh: Double,
    arrivalEnergyKWh: Double, departureTime: Double, departureNeedKWh: Double, dischargeHeld: Bool = false
  ) {
    self.vehicleID = vehicleID
    self.batteryKWh = batteryKWh
    self.reserveKWh = reserveKWh
    self.energyKWh = energyKWh
    self.arrivalEnergyKWh = arrivalEnergyKWh
    self.departureTime = departureTime
    self.departureNeedKWh = departureNeedKWh
    self.dischargeHeld = dischargeHeld
  }

  /// The floor that ordinary discharging (peak shaving, events) never goes below.
  public var reserveFloorKWh: Double { min(reserveKWh, arrivalEnergyKWh) }
}

/// One charger's state this step, in the order of `SiteDescription.chargers`.
public struct ChargerReading: Sendable, Hashable {
  /// The charger answers and follows setpoints. An offline charger is given nothing.
  public var online: Bool
  public var vehicle: PluggedVehicle?
  /// Measured power at the building side, + charging.
  public var measuredKW: Double
  /// What the charger and its vehicle accept now, when below the installed ratings (an
  /// OCPP charger's V2X limits, a vehicle that only charges, an edition without discharge).
  /// Nil: the ratings in `ChargerSpec`.
  public var maxChargeKW: Double?
  public var maxDischargeKW: Double?

  public init(
    online: Bool = true, vehicle: PluggedVehicle? = nil, measuredKW: Double = 0, maxChargeKW: Double? = nil,
    maxDischargeKW: Double? = nil
  ) {
    self.online = online
    self.vehicle = vehicle
    self.measuredKW = measuredKW
    self.maxChargeKW = maxChargeKW
    self.maxDischargeKW = maxDischargeKW
  }
}

/// An announced demand-response event.
public struct DemandResponseEvent: Sendable, Hashable, Codable {
  public var id: String
  public var notifyTime: Double
  public var startTime: Double
  public var endTime: Double

  public init(id: String, notifyTime: Double, startTime: Double, endTime: Double) {
    self.id = id
    self.notifyTime = notifyTime
    self.startTime = startTime
    self.endTime = endTime
  }

  public func isActive(at t: Double) -> Bool { t >= startTime && t < endTime }
}

/// The revenue meter's view of the demand interval and the billing period (`DemandMeter`).
public struct DemandMeterReading: Sendable, Hashable {
  /// Highest completed-interval mean grid import this billing period, kW (0 at its start;
  /// the period is the calendar month unless the site's billing cycle starts on another day).
  public var monthPeakKW: Double
  /// Grid import so far in the current demand interval, kWh (export counts negative).
  public var intervalImportKWh: Double
  /// Seconds elapsed in the current demand interval.
  public var intervalElapsedSeconds: Double
  /// Day of the billing period, 1 on its first day; nil: the calendar month's day.
  public var periodDay: Int?
  /// The grid import now, kW, as the site's demand meter counts it (nil: not measured
  /// this step, or simulated): the one figure panels, records and logs show.
  public var gridImportKW: Double?
  /// Where `gridImportKW` came from (`grid-meter main`, `pulse-meter`, ...).
  public var gridImportSource: String?

  public init(monthPeakKW: Double = 0, intervalImportKWh: Double = 0, intervalElapsedSeconds: Double = 0) {
    self.monthPeakKW = monthPeakKW
    self.intervalImportKWh = intervalImportKWh
    self.intervalElapsedSeconds = intervalElapsedSeconds
  }
}

/// Everything the controller knows at one instant.
public struct Snapshot: Sendable, Hashable {
  /// Seconds on a monotonic timeline (durations are differences of these).
  public var time: Double
  /// The same instant on the local wall clock, for the calendar.
  public var localTime: LocalTime
  /// How long the decisions of this step will hold, seconds.
  public var periodSeconds: Double
  /// The building's own demand, without the chargers, kW.
  public var buildingDemandKW: Double
  /// Utility voltage and frequency present and in range (meter, contacts or both).
  public var utilityAvailable: Bool
  public var transferSwitch: TransferSwitchPosition
  public var chargers: [ChargerReading]
  /// Events announced so far (past, running and upcoming).
  public var events: [DemandResponseEvent]
  public var meter: DemandMeterReading
  /// False when any input the controller relies on is stale or missing: it then holds
  /// the safe state (no discharge, charging only where a departure requires it).
  public var inputsFresh: Bool
  /// Discharging (V2X) paused by staff: vehicles only charge.
  public var dischargePaused: Bool
  /// A demand target staff set on a panel, kW; nil: the controller's own.
  public var operatorDemandTargetKW: Double?
  /// Staff asked for a planned island test: island with the utility still there.
  public var islandTestRequested: Bool
  /// The emergency-stop input is pressed: every charger off, nothing switched.
  public var emergencyStop: Bool
  /// The utility contact has just dropped and its debounce is still running: export stops
  /// at once, the transfer waits for the loss to be confirmed (`utilityAvailable`).
  public var utilityLossPending: Bool
  /// Setpoints an upstream charging platform asked for, by charger (nil: none), kW. The
  /// controller follows them on the grid; its safety filter keeps the site within limits.
  public var platformSetpointsKW: [Double?] = []
  /// The wall clock at this instant, seconds since 1970 UTC, at a site that has one (nil in
  /// simulation): what converts wall-clock times (events, departures) onto `time`.
  public var utcSeconds: Double?
  /// The site's wall clock is not known to be right (no NTP yet): nothing starts by wall
  /// time (announced events wait), and the demand meter keeps no intervals.
  public var wallClockUnsynchronized = false

  public init(
    time: Double, localTime: LocalTime, periodSeconds: Double, buildingDemandKW: Double,
    utilityAvailable: Bool = true, transferSwitch: TransferSwitchPosition = .utility,
    chargers: [ChargerReading], events: [DemandResponseEvent] = [],
    meter: DemandMeterReading = DemandMeterReading(), inputsFresh: Bool = true,
    dischargePaused: Bool = false, operatorDemandTargetKW: Double? = nil, islandTestRequested: Bool = false,
    emergencyStop: Bool = false, utilityLossPending: Bool = false
  ) {
    self.time = time
    self.localTime = localTime
    self.periodSeconds = periodSeconds
    self.buildingDemandKW = buildingDemandKW
    self.utilityAvailable = utilityAvailable
    self.transferSwitch = transferSwitch
    self.chargers = chargers
    self.events = events
    self.meter = meter
    self.inputsFresh = inputsFresh
    self.dischargePaused = dischargePaused
    self.operatorDemandTargetKW = operatorDemandTargetKW
    self.islandTestRequested = islandTestRequested
    self.emergencyStop = emergencyStop
    self.utilityLossPending = utilityLossPending
  }
}
