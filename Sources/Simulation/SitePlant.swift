import Control
import SiteModel

/// The physical site the controller acts on, as a model: the building following its load,
/// chargers and vehicles following the sessions, the utility following the outages, the
/// transfer switch, the load-shed relays and the revenue meter.
///
/// It reveals only what a real site would: the load now, a session from its arrival, an
/// event from its notice, an outage when it begins. The simulator and the daemon's
/// simulated backend both drive it.
public struct SitePlant: Sendable {
  public let scenario: Scenario
  public var site: SiteDescription { scenario.site }

  /// Seconds since the scenario start.
  public private(set) var time: Double = 0
  public private(set) var transferSwitch: TransferSwitchPosition = .utility
  /// Battery energy of each vehicle, kWh (set at each arrival from the scenario).
  public private(set) var energyKWh: [Double]
  /// The session on each charger now, by index into `scenario.sessions`.
  public private(set) var activeSession: [Int?]
  public private(set) var visibleEvents: [DemandResponseEvent] = []
  /// The revenue meter: the same accounting the field site keeps, on the scenario's clock
  /// (seconds since its start) with calendar-month billing periods.
  public private(set) var demandMeter: DemandMeter
  public var meter: DemandMeterReading { demandMeter.reading() }
  /// Safety breaches the plant itself saw (export into a dead grid, closing onto a dead
  /// utility). The controller's safety filter should keep this empty.
  public private(set) var violations: [String] = []
  /// What each charger did in the last step, kW (+ charging), as its meter would report.
  public private(set) var lastChargerKW: [Double]
  /// Sessions that ended, with the energy the vehicle left with.
  public private(set) var departures: [(session: Int, energyKWh: Double)] = []

  private var nextSession = 0
  private var nextEvent = 0
  private var loadIndex = 0

  /// A plant at `startMinute` (rounded down to a demand interval) with whatever is plugged
  /// in then; the meter starts the month's peak from there.
  public init(scenario: Scenario, startMinute: Int = 0) {
    self.scenario = scenario
    time = Double(max(0, startMinute) / scenario.intervalMinutes * scenario.intervalMinutes) * 60
    energyKWh = scenario.site.vehicles.map { _ in 0 }
    activeSession = Array(repeating: nil, count: scenario.site.chargers.count)
    lastChargerKW = Array(repeating: 0, count: scenario.site.chargers.count)
    demandMeter = DemandMeter(configuration: .init(intervalSeconds: scenario.intervalSeconds))
    let start = scenario.start
    demandMeter.record(kW: 0, seconds: 0, endingAt: time) { (start + $0).date }
    advanceCalendar()
  }

  /// What the chargers driven from outside the simulation (OCPP, MQTT adapters) measure,
  /// kW, + charging: counted at the grid meter with the rest of the building.
  public var externalChargerKW = 0.0

  public var minute: Int { Int(time / 60) }
  public var localTime: LocalTime { scenario.start + time }
  public var utilityAvailable: Bool { !scenario.outages.contains { $0.contains(minute: minute) } }
  public var buildingDemandKW: Double { buildingOverrideKW ?? scenario.load[loadIndex].kW }
  /// The building's load when it is measured rather than simulated (the daemon with
  /// meters): the plant then simulates only the chargers, vehicles, switch and utility.
  public var buildingOverrideKW: Double?
  public var finished: Bool { minute >= scenario.durationMinutes }

  /// What the controller may see now.
  public func snapshot(periodSeconds: Double) -> Snapshot {
    var chargers: [ChargerReading] = []
    chargers.reserveCapacity(activeSession.count)
    for (c, session) in activeSession.enumerated() {
      guard let index = session else {
        chargers.append(ChargerReading())
        continue
      }
      let s = scenario.sessions[index]
      let spec = site.vehicles[s.vehicle]
      chargers.append(
        ChargerReading(
          vehicle: PluggedVehicle(
            vehicleID: spec.id, batteryKWh: spec.batteryKWh, reserveKWh: spec.reserveKWh,
            energyKWh: energyKWh[s.vehicle], arrivalEnergyKWh: s.arriveKWh,
            departureTime: Double(s.departMinute) * 60, departureNeedKWh: s.departMinKWh),
          measuredKW: lastChargerKW[c]))
    }
    return Snapshot(
      time: time, localTime: localTime, periodSeconds: periodSeconds, buildingDemandKW: buildingDemandKW,
      utilityAvailable: utilityAvailable, transferSwitch: transferSwitch, chargers: chargers,
      events: visibleEvents, meter: meter)
  }

  /// Power flows of one step, mean kW over the step.
  public struct Flows: Sendable {
    public var buildingKW = 0.0
    public var servedKW = 0.0
    /// Chargers' net power at the building side, + charging.
    public var evKW = 0.0
    public var gridKW = 0.0
    /// Per charger, building side, + charging.
    public var chargerKW: [Double] = []
    /// Per charger, the plugged vehicle's battery energy at the end of the step, kWh.
    public var vehicleEnergyKWh: [Double] = []
    public var utilityAvailable = true
  }

  /// Applies the decisions for `seconds` and moves time on. Physics wins over commands:
  /// chargers clip to ratings and batteries, a dead grid takes nothing, an island carries
  /// no more than its grid-forming charger and followers can give.
  public mutating func advance(_ d: Decisions, seconds: Double) -> Flows {
    let h = seconds / 3600
    let utility = utilityAvailable
    var flows = Flows()
    flows.utilityAvailable = utility
    flows.buildingKW = buildingDemandKW
    flows.chargerKW = Array(repeating: 0, count: activeSession.count)

    switch d.transferSwitch {
    case .hold: break
    case .toIsland: transferSwitch = .island
    case .toUtility:
      if !utility { violations.append("minute \(minute): transfer switch closed onto a dead utility") }
      transferSwitch = .utility
    }

    let building = flows.buildingKW
    let critical = building * site.criticalLoadFraction
    // Shed: the critical load, and the groups restored so far (never more than the building).
    let load =
      d.shedNonCriticalLoads ? min(building, critical + site.restoredLoadKW(groups: d.restoredLoadGroups)) : building

    // What each charger would do alone: its setpoint clipped to rating and battery.
    func clipped(_ i: Int, _ setpoint: Double) -> Double {
      guard let index = activeSession[i], i < d.setpointsKW.count else { return 0 }
      let spec = site.chargers[i]
      let v = scenario.sessions[index].vehicle
      let e = energyKWh[v]
      let maxCharge = min(spec.maxChargeKW, max(0, site.vehicles[v].batteryKWh - e) / (spec.efficiency * h))
      let maxDischarge = min(spec.maxDischargeKW, max(0, e) * spec.efficiency / h)
      return min(maxCharge, max(-maxDischarge, setpoint.isFinite ? setpoint : 0))
    }

    if transferSwitch == .utility && utility {
      for i in flows.chargerKW.indices { flows.chargerKW[i] = clipped(i, d.setpointsKW[safe: i]) }
      flows.servedKW = load
    } else if transferSwitch == .island,
      let forming = d.gridFormingCharger, forming < activeSession.count, site.chargers[forming].gridForming,
      activeSession[forming] != nil
    {
      // The grid-forming charger holds voltage and follows the load; followers discharge
      // what they are told (never charge: there is nothing to charge from).
      var followers = 0.0
      for i in flows.chargerKW.indices where i != forming {
        flows.chargerKW[i] = min(0, clipped(i, d.setpointsKW[safe: i]))
        followers -= flows.chargerKW[i]
      }
      if followers > load, followers > 0 {
        let scale = load / followers
        for i in flows.chargerKW.indices where i != forming { flows.chargerKW[i] *= scale }
        followers = load
      }
      let formingCeiling = -clipped(forming, d.setpointsKW[safe: forming])
      let formingKW = min(max(0, formingCeiling), load - followers)
      flows.chargerKW[forming] = -formingKW
      let supplied = followers + formingKW
      if supplied + 1e-9 < load && !d.shedNonCriticalLoads {
        // Overloaded island: protection trips it and the building goes dark.
        for i in flows.chargerKW.indices { flows.chargerKW[i] = 0 }
        flows.servedKW = 0
      } else {
        flows.servedKW = supplied
      }
    } else {
      // Dead grid on the utility side, switch moving, or no island: nothing flows.
      if transferSwitch == .utility, d.setpointsKW.contains(where: { $0 < -1e-9 }) {
        violations.append("minute \(minute): discharge commanded into a dead grid")
      }
      flows.servedKW = 0
    }

    // Batteries and meter.
    for i in flows.chargerKW.indices {
      guard let index = activeSession[i] else { continue }
      let p = flows.chargerKW[i]
      let eta = site.chargers[i].efficiency
      let v = scenario.sessions[index].vehicle
      energyKWh[v] += p >= 0 ? p * h * eta : p * h / eta
      energyKWh[v] = min(max(energyKWh[v], 0), site.vehicles[v].batteryKWh)
    }
    flows.vehicleEnergyKWh = activeSession.map { $0.map { energyKWh[scenario.sessions[$0].vehicle] } ?? 0 }
    flows.evKW = flows.chargerKW.reduce(0, +) + (transferSwitch == .utility ? externalChargerKW : 0)
    lastChargerKW = flows.chargerKW
    flows.gridKW = (transferSwitch == .utility && utility) ? flows.servedKW + flows.evKW : 0
    let now = Double(minute) * 60
    let exportLimit =
      visibleEvents.contains { $0.isActive(at: now) } ? site.eventExportLimitKW : site.exportLimitKW
    if flows.gridKW < -exportLimit - 1e-6 {
      violations.append("minute \(minute): exported \(flows.gridKW * -1) kW, above the \(exportLimit) kW limit")
    }
    time += seconds
    let start = scenario.start
    demandMeter.record(kW: flows.gridKW, seconds: seconds, endingAt: time) { (start + $0).date }
    advanceCalendar()
    return flows
  }

  /// Brings sessions, events, load and the meter's month up to `time`.
  private mutating func advanceCalendar() {
    let m = minute
    while loadIndex + 1 < scenario.load.count && scenario.load[loadIndex + 1].minute <= m { loadIndex += 1 }
    for i in activeSession.indices {
      if let index = activeSession[i], scenario.sessions[index].departMinute <= m {
        departures.append((index, energyKWh[scenario.sessions[index].vehicle]))
        activeSession[i] = nil
      }
    }
    while nextSession < scenario.sessions.count && scenario.sessions[nextSession].arriveMinute <= m {
      let s = scenario.sessions[nextSession]
      if s.departMinute > m {
        activeSession[s.charger] = nextSession
        energyKWh[s.vehicle] = s.arriveKWh
      }
      nextSession += 1
    }
    while nextEvent < scenario.events.count && scenario.events[nextEvent].notifyTime <= time {
      visibleEvents.append(scenario.events[nextEvent])
      nextEvent += 1
    }
    if !visibleEvents.isEmpty { visibleEvents.removeAll { $0.endTime <= time } }
  }
}

extension Array where Element == Double {
  subscript(safe index: Int) -> Double { index < count ? self[index] : 0 }
}
