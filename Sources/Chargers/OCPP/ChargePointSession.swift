import Foundation
import OCPP

/// One charge point's OCPP conversation as data: what it said, what its vehicle needs, what
/// it was asked to do and whether it can still be trusted. No sockets and no clock: the
/// endpoint feeds it frames and the time, and sends what it returns, so every rule here is
/// tested without a network.
public struct ChargePointSession: Sendable {
  public struct Configuration: Sendable, Hashable {
    /// The charger as installed (the site configuration's ratings), kW.
    public var ratedChargeKW: Double
    public var ratedDischargeKW: Double
    /// Heartbeat interval given in the BootNotification answer.
    public var heartbeatSeconds: Int = 30
    /// Nothing heard for this long: offline (also when the socket closes, at once).
    public var offlineAfterSeconds: Double = 75
    /// A setpoint is sent again when it moved at least this much...
    public var setpointDeadbandKW: Double = 0.5
    /// ...or when the last one is this old (the charger's copy expires after
    /// `profileDurationSeconds`, so a silent appliance does not leave it discharging).
    public var setpointRefreshSeconds: Double = 60
    public var profileDurationSeconds: Int = 300
    /// An unanswered call is given up after this long.
    public var callTimeoutSeconds: Double = 10
    /// Profiles rejected in a row before the charger is no longer relied on.
    public var maxRejections: Int = 2
    /// How long a fault (nonsense, rejections, not following) keeps the charger out of
    /// control after its last occurrence.
    public var faultHoldSeconds: Double = 120
    /// Measured power further than this from the accepted setpoint for `followGraceSeconds`:
    /// the charger is not following.
    public var followToleranceKW: Double = 3
    public var followGraceSeconds: Double = 15
    /// Used when the vehicle does not report its battery or departure.
    public var defaultBatteryKWh: Double = 60
    public var defaultDepartureHours: Double = 8
    /// For chargers that report current rather than power.
    public var nominalVoltage: Double = 400

    public init(ratedChargeKW: Double, ratedDischargeKW: Double) {
      self.ratedChargeKW = ratedChargeKW
      self.ratedDischargeKW = ratedDischargeKW
    }
  }

  /// What NotifyEVChargingNeeds said, in absolute battery energy.
  public struct Needs: Sendable, Hashable {
    public var batteryKWh: Double
    /// Energy in the battery when the needs were reported.
    public var energyAtNoticeKWh: Double
    public var departureNeedKWh: Double
    public var reserveKWh: Double
    public var departure: Date
    public var maxChargeKW: Double
    public var maxDischargeKW: Double
    /// Whether the battery's state is known (SoC and capacity reported); if not, the
    /// vehicle is never discharged.
    public var energyKnown: Bool
  }

  /// A call this side sent and waits an answer for.
  public struct PendingCall: Sendable, Hashable {
    public var action: String
    public var sentAt: Date
    /// For SetChargingProfile: the setpoint it carried, kW.
    public var setpointKW: Double?
  }

  /// What to answer a call with.
  public enum Reply: Sendable, Hashable {
    case result(JSONValue)
    case error(OCPPErrorCode, String)
  }

  public let chargerID: String
  public let version: OCPPVersion
  public let configuration: Configuration

  public private(set) var connected = false
  /// The charge point has spoken on this connection (a BootNotification or any call).
  public private(set) var booted = false
  public private(set) var lastHeard: Date?
  public private(set) var connectorStatus: String?
  public private(set) var transactionID: String?
  /// When this side first saw the running transaction.
  private var transactionSince: Date?
  public private(set) var vehicleID: String?
  public private(set) var evseID = 1
  public private(set) var measuredKW = 0.0
  public private(set) var socPercent: Double?
  public private(set) var needs: Needs?
  /// The site's assumption for a vehicle that sent no needs (a timetable, a default).
  public var assumedNeeds: AssumedNeeds?
  /// The setpoint the controller wants and the last one the charger accepted, kW.
  public private(set) var desiredKW = 0.0
  public private(set) var acceptedKW: Double?
  private var lastSent: (kW: Double, at: Date)?
  public private(set) var pending: [String: PendingCall] = [:]
  private var nextMessageNumber = 1
  private var rejectionsInARow = 0
  /// The reasons the charger is not relied on now, with when each last happened.
  public private(set) var faults: [String: Date] = [:]
  private var offFromSetpointSince: Date?

  public init(chargerID: String, version: OCPPVersion, configuration: Configuration) {
    self.chargerID = chargerID
    self.version = version
    self.configuration = configuration
  }

  // MARK: Connection

  public mutating func connect(now: Date) {
    connected = true
    lastHeard = now
  }

  /// The socket closed: offline at once; what was pending is lost with it.
  public mutating func disconnect() {
    connected = false
    booted = false
    pending = [:]
    lastSent = nil
    acceptedKW = nil
  }

  // MARK: Calls from the charge point

  public mutating func handleCall(action: String, payload: JSONValue, now: Date) -> Reply {
    lastHeard = now
    // A charger that reconnects after a network loss (not a reboot) sends no new
    // BootNotification (OCPP 2.x B01): its first call of any kind shows it is operating.
    booted = true
    switch action {
    case "BootNotification":
      // A boot is a reboot when the socket stayed up: whatever was agreed is gone.
      booted = true
      transactionID = nil
      transactionSince = nil
      needs = nil
      assumedNeeds = nil
      socPercent = nil
      acceptedKW = nil
      lastSent = nil
      return .result([
        "currentTime": .string(OCPPTime.format(now)), "interval": .number(Double(configuration.heartbeatSeconds)),
        "status": "Accepted",
      ])
    case "Heartbeat":
      return .result(["currentTime": .string(OCPPTime.format(now))])
    case "StatusNotification":
      connectorStatus = payload["connectorStatus"]?.stringValue
      if let evse = payload["evseId"]?.intValue { evseID = evse }
      if connectorStatus == "Faulted" { faults["connector reports Faulted"] = now }
      return .result([:])
    case "TransactionEvent":
      transactionEvent(payload, now: now)
      if payload["idToken"] != nil { return .result(["idTokenInfo": ["status": "Accepted"]]) }
      return .result([:])
    case "MeterValues":
      for mv in payload["meterValue"]?.arrayValue ?? [] { meterValue(mv, now: now) }
      return .result([:])
    case "NotifyEVChargingNeeds":
      if let evse = payload["evseId"]?.intValue { evseID = evse }
      guard let chargingNeeds = payload["chargingNeeds"] else { return .error(.formatViolation, "no chargingNeeds") }
      needs = readNeeds(chargingNeeds, now: now)
      return .result(["status": "Accepted"])
    case "Authorize":
      return .result(["idTokenInfo": ["status": "Accepted"]])
    case "NotifyEvent", "SecurityEventNotification", "FirmwareStatusNotification", "LogStatusNotification",
      "NotifyReport", "NotifyMonitoringReport", "NotifyChargingLimit", "ClearedChargingLimit", "ReportChargingProfiles",
      "NotifyDisplayMessages", "NotifyCustomerInformation", "PublishFirmwareStatusNotification":
      return .result([:])
    case "NotifyEVChargingSchedule":
      return .result(["status": "Accepted"])
    case "DataTransfer":
      return .result(["status": "UnknownVendorId"])
    default:
      return .error(.notImplemented, "\(action) is not handled by this controller")
    }
  }

  /// Transaction start, updates and end: who is plugged in and their meter values.
  private mutating func transactionEvent(_ payload: JSONValue, now: Date) {
    let eventType = payload["eventType"]?.stringValue
    if let evse = payload["evse"]?["id"]?.intValue { evseID = evse }
    // A new transaction is a new vehicle: nothing of the one before carries over (its
    // state of charge least of all).
    if eventType == "Started" || eventType == "Updated",
      let id = payload["transactionInfo"]?["transactionId"]?.stringValue, id != transactionID
    {
      socPercent = nil
      needs = nil
      assumedNeeds = nil
    }
    for mv in payload["meterValue"]?.arrayValue ?? [] { meterValue(mv, now: now) }
    switch eventType {
    case "Started", "Updated":
      if let id = payload["transactionInfo"]?["transactionId"]?.stringValue {
        if transactionID != id {
          acceptedKW = nil
          transactionSince = now
        }
        transactionID = id
      }
      if let token = payload["idToken"]?["idToken"]?.stringValue, !token.isEmpty { vehicleID = token }
    case "Ended":
      transactionID = nil
      transactionSince = nil
      needs = nil
      assumedNeeds = nil
      socPercent = nil
      measuredKW = 0
      acceptedKW = nil
      lastSent = nil
      offFromSetpointSince = nil
    default:
      break
    }
  }

  /// A meter value: power (signed, or import and export apart), SoC; checked for sense.
  private mutating func meterValue(_ mv: JSONValue, now: Date) {
    var importW: Double?
    var exportW: Double?
    for sv in mv["sampledValue"]?.arrayValue ?? [] {
      guard let value = sv["value"]?.doubleValue else { continue }
      let multiplier = sv["unitOfMeasure"]?["multiplier"]?.doubleValue ?? 0
      let unit = sv["unitOfMeasure"]?["unit"]?.stringValue
      var scaled = value * pow(10, multiplier)
      if unit == "kW" { scaled *= 1000 }
      // Per-phase values would be counted twice: only totals (no phase) are used.
      guard sv["phase"] == nil else { continue }
      switch sv["measurand"]?.stringValue {
      case "Power.Active.Import": importW = scaled
      case "Power.Active.Export": exportW = scaled
      case "SoC":
        if scaled < 0 || scaled > 100 {
          faults["reports a state of charge of \(Int(scaled)) %"] = now
        } else {
          socPercent = scaled
        }
      default: break
      }
    }
    guard importW != nil || exportW != nil else { return }
    let kW = ((importW ?? 0) - (exportW ?? 0)) / 1000
    let rated = max(configuration.ratedChargeKW, configuration.ratedDischargeKW)
    if abs(kW) > rated * 1.5 + 1 {
      faults["reports \(formatKW(kW)) on a charger rated \(formatKW(rated))"] = now
      return
    }
    measuredKW = kW
    checkFollowing(now: now)
  }

  /// A charger that accepted a setpoint but keeps doing something else is not relied on.
  private mutating func checkFollowing(now: Date) {
    guard let accepted = acceptedKW, let sent = lastSent, now.timeIntervalSince(sent.at) > 2 else {
      offFromSetpointSince = nil
      return
    }
    // Charging below a setpoint is normal (a full battery, a vehicle's own limit); doing
    // more than asked, or the opposite, is not.
    let excess = accepted >= 0 ? measuredKW - accepted : accepted - measuredKW
    let wrongWay = accepted >= 0 ? -measuredKW : measuredKW
    if max(excess, wrongWay) > configuration.followToleranceKW {
      let since = offFromSetpointSince ?? now
      offFromSetpointSince = since
      if now.timeIntervalSince(since) >= configuration.followGraceSeconds {
        faults["does not follow its setpoint (asked \(formatKW(accepted)), measures \(formatKW(measuredKW)))"] = now
      }
    } else {
      offFromSetpointSince = nil
    }
  }

  /// A state of charge as reported, as the range the true value lies in: a whole number is
  /// taken as rounded to the percent (the truth anywhere within ±0.5 %; `stateOfCharge` in
  /// NotifyEVChargingNeeds is an integer in both editions), anything finer as it is.
  static func socRange(_ percent: Double) -> ClosedRange<Double> {
    percent == percent.rounded() ? max(0, percent - 0.5)...min(100, percent + 0.5) : percent...percent
  }

  /// NotifyEVChargingNeeds → the vehicle's battery, its need by departure, its V2X range.
  ///
  /// The energy in the battery comes from the energy fields (Wh) where the charger sends
  /// them: the capacity less the energy still to reach the maximum state of charge (2.1's
  /// `evMaxEnergyRequest`), if that agrees with the reported state of charge. Otherwise from
  /// the state of charge, which is a rounded percent, so every figure is planned at the
  /// conservative end of its rounding: the energy at the low end (what there is to give is
  /// never overstated), the departure need and the reserve, which the vehicle states
  /// relative to the energy it holds, from the high end (what it needs is never understated).
  private func readNeeds(_ n: JSONValue, now: Date) -> Needs {
    let dc = n["dcChargingParameters"]
    let ac = n["acChargingParameters"]
    let v2x = n["v2xChargingParameters"]
    let capacityWh = dc?["evEnergyCapacity"]?.doubleValue.flatMap { $0 > 0 ? $0 : nil }
    let soc = dc?["stateOfCharge"]?.doubleValue.flatMap { (0...100).contains($0) ? $0 : nil } ?? socPercent
    let batteryKWh = capacityWh.map { $0 / 1000 } ?? configuration.defaultBatteryKWh
    let socKWh = soc.map { Self.socRange($0) }.map {
      batteryKWh * $0.lowerBound / 100...batteryKWh * $0.upperBound / 100
    }
    // The energy fields: exact to the Wh they are given in (1 Wh of slack for that rounding).
    var fieldsKWh: Double?
    if let capacityWh, let toFullWh = v2x?["evMaxEnergyRequest"]?.doubleValue, (0...capacityWh).contains(toFullWh) {
      let kWh = (capacityWh - toFullWh) / 1000
      if socKWh.map({ ($0.lowerBound - 0.001...$0.upperBound + 0.001).contains(kWh) }) ?? true { fieldsKWh = kWh }
    }
    let energyKnown = capacityWh != nil && (fieldsKWh != nil || soc != nil)
    let range = fieldsKWh.map { $0...$0 } ?? socKWh ?? (batteryKWh * 0.5...batteryKWh * 0.5)
    let energy = range.lowerBound
    let targetAddWh =
      v2x?["evTargetEnergyRequest"]?.doubleValue ?? dc?["energyAmount"]?.doubleValue ?? ac?["energyAmount"]?.doubleValue
      ?? 0
    // What the vehicle allows to be taken for V2X (negative: it can give that much).
    let minAddWh = v2x?["evMinV2XEnergyRequest"]?.doubleValue ?? v2x?["evMinEnergyRequest"]?.doubleValue ?? 0
    var maxChargeKW =
      (v2x?["maxChargePower"]?.doubleValue ?? dc?["evMaxPower"]?.doubleValue).map { $0 / 1000 }
      ?? configuration.ratedChargeKW
    if v2x?["maxChargePower"] == nil, dc?["evMaxPower"] == nil, let amps = ac?["evMaxCurrent"]?.doubleValue {
      maxChargeKW = amps * configuration.nominalVoltage * 3.0.squareRoot() / 1000
    }
    let bidirectional = n["requestedEnergyTransfer"]?.stringValue?.contains("BPT") ?? false
    let maxDischargeKW =
      version.supportsDischarge && bidirectional && energyKnown
      ? (v2x?["maxDischargePower"]?.doubleValue ?? 0) / 1000 : 0
    let departure =
      n["departureTime"]?.stringValue.flatMap(OCPPTime.parse)
      ?? now.addingTimeInterval(configuration.defaultDepartureHours * 3600)
    return Needs(
      batteryKWh: batteryKWh, energyAtNoticeKWh: energy,
      departureNeedKWh: min(batteryKWh, max(0, range.upperBound + targetAddWh / 1000)),
      reserveKWh: min(energy, max(0, range.upperBound + min(0, minAddWh) / 1000)), departure: departure,
      maxChargeKW: max(0, min(maxChargeKW, configuration.ratedChargeKW)),
      maxDischargeKW: max(0, min(maxDischargeKW, configuration.ratedDischargeKW)), energyKnown: energyKnown)
  }

  // MARK: Answers to this side's calls

  /// The charge point answered a call of ours.
  public mutating func handleResult(messageID: String, payload: JSONValue, now: Date) {
    lastHeard = now
    guard let call = pending.removeValue(forKey: messageID) else { return }
    switch call.action {
    case "SetChargingProfile":
      if payload["status"]?.stringValue == "Accepted" {
        acceptedKW = call.setpointKW
        rejectionsInARow = 0
      } else {
        rejected(call, reason: payload["status"]?.stringValue ?? "no status", now: now)
      }
    default:
      break
    }
  }

  public mutating func handleError(messageID: String, code: OCPPErrorCode, description: String, now: Date) {
    lastHeard = now
    guard let call = pending.removeValue(forKey: messageID) else { return }
    if call.action == "SetChargingProfile" {
      rejected(call, reason: "\(code.rawValue) \(description)", now: now)
    }
  }

  private mutating func rejected(_ call: PendingCall, reason: String, now: Date) {
    rejectionsInARow += 1
    acceptedKW = nil
    if rejectionsInARow >= configuration.maxRejections {
      faults["rejected \(rejectionsInARow) charging profiles in a row (last: \(reason))"] = now
    }
  }

  // MARK: This side's calls

  /// The controller's setpoint for this charger, kW (+ charging).
  public mutating func command(setpointKW: Double) { desiredKW = setpointKW }

  /// What to send now: a SetChargingProfile when the setpoint moved beyond the deadband, or
  /// (on the control loop's cadence, `refresh`) when it is due for a refresh; nothing while
  /// one is still waiting for its answer. Also gives up on calls that were never answered.
  public mutating func callsDue(now: Date, refresh: Bool = true) -> [(
    messageID: String, action: String, payload: JSONValue
  )] {
    for (id, call) in pending where now.timeIntervalSince(call.sentAt) > configuration.callTimeoutSeconds {
      pending[id] = nil
      if call.action == "SetChargingProfile" { rejected(call, reason: "no answer", now: now) }
    }
    // Only a vehicle whose needs are known is managed: one that plugged in before this
    // appliance (re)started is left to the charger's own settings rather than stopped.
    guard connected, booted, let transactionID, needs != nil || assumedNeeds != nil,
      pending.values.allSatisfy({ $0.action != "SetChargingProfile" })
    else { return [] }
    // A 2.0.1 charger gets charge limits only: a discharge becomes a limit of 0.
    let kW = version.supportsDischarge ? desiredKW : max(0, desiredKW)
    if let last = lastSent, abs(last.kW - kW) <= configuration.setpointDeadbandKW,
      // (A quarter second of slack: a refresh due every control step must not slip to
      // every other one for a few milliseconds of jitter.)
      (last.kW < 0) == (kW < 0),
      !refresh || now.timeIntervalSince(last.at) < configuration.setpointRefreshSeconds - 0.25
    {
      return []
    }
    let id = nextMessageID()
    pending[id] = PendingCall(action: "SetChargingProfile", sentAt: now, setpointKW: kW)
    lastSent = (kW, now)
    return [(id, "SetChargingProfile", chargingProfile(kW: kW, transactionID: transactionID, now: now))]
  }

  /// The profile that carries a setpoint. 2.1: CentralSetpoint (negative discharges),
  /// bounded by limit and dischargeLimit, void if the charger loses this controller for a
  /// minute. 2.0.1: a charge limit, never negative.
  public func chargingProfile(kW: Double, transactionID: String, now: Date) -> JSONValue {
    let watts = (kW * 1000).rounded()
    var period: [String: JSONValue] = ["startPeriod": 0]
    var profile: [String: JSONValue] = [
      "id": .number(Double(Self.profileID)), "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
      "chargingProfileKind": "Absolute", "transactionId": .string(transactionID),
    ]
    if version.supportsDischarge {
      period["operationMode"] = "CentralSetpoint"
      period["setpoint"] = .number(watts)
      period["limit"] = .number(max(0, watts))
      period["dischargeLimit"] = .number(min(0, watts))
      profile["maxOfflineDuration"] = 60
      profile["invalidAfterOfflineDuration"] = true
    } else {
      period["limit"] = .number(max(0, watts))
    }
    profile["chargingSchedule"] = [
      [
        "id": .number(Double(Self.profileID)), "chargingRateUnit": "W",
        "startSchedule": .string(OCPPTime.format(now)),
        "duration": .number(Double(configuration.profileDurationSeconds)), "chargingSchedulePeriod": [.object(period)],
      ]
    ]
    return ["evseId": .number(Double(evseID)), "chargingProfile": .object(profile)]
  }

  /// How long after a transaction starts its NotifyEVChargingNeeds may take.
  static let needsGraceSeconds = 10.0

  /// One profile id per charger: each new setpoint replaces the last.
  static let profileID = 7001

  private mutating func nextMessageID() -> String {
    defer { nextMessageNumber += 1 }
    return "mge-\(nextMessageNumber)"
  }

  // MARK: What the controller sees

  /// Whether the controller may rely on the charger now, and if not, why.
  public func trust(now: Date) -> (relied: Bool, fault: String?) {
    let activeFaults = faults.filter { now.timeIntervalSince($0.value) < configuration.faultHoldSeconds }
    if let worst = activeFaults.max(by: { $0.value < $1.value }) { return (false, worst.key) }
    guard connected else { return (false, "not connected") }
    guard booted else {
      // Between the socket opening and its first message a charger is simply starting up.
      let waited = lastHeard.map { now.timeIntervalSince($0) } ?? 0
      return (
        false, waited < configuration.offlineAfterSeconds ? nil : "connected \(Int(waited)) s ago, has said nothing"
      )
    }
    if let heard = lastHeard, now.timeIntervalSince(heard) > configuration.offlineAfterSeconds {
      return (false, "silent for \(Int(now.timeIntervalSince(heard))) s")
    }
    // A transaction whose vehicle never said what it needs (it plugged in before the
    // appliance started, or the vehicle does not speak ISO 15118): the charger runs it on
    // its own settings and its draw counts as building load. NotifyEVChargingNeeds normally
    // follows the transaction's start within a second or two.
    if transactionID != nil, needs == nil, assumedNeeds == nil, let since = transactionSince,
      now.timeIntervalSince(since) > Self.needsGraceSeconds
    {
      return (false, "its vehicle's needs are unknown (no NotifyEVChargingNeeds): left to the charger's own settings")
    }
    return (true, nil)
  }

  public func state(now: Date) -> ChargerState {
    let (relied, fault) = trust(now: now)
    guard relied else {
      // Not relied on: whatever it draws is left in the building's load (measured at the
      // grid meter), so the site's limits still hold. A vehicle that sent no needs is
      // flagged, so the site may supply them (a timetable) and manage it after all.
      var state = ChargerState.offline(fault: fault)
      state.needsUnknown = connected && booted && transactionID != nil && needs == nil && assumedNeeds == nil
      return state
    }
    if needs == nil, transactionID != nil, let assumed = assumedNeeds {
      // Managed on the site's assumption: charge only. The energy is the reported state of
      // charge at the low end of its rounding, or, unknown, the reserve (so it charges).
      let energy = socPercent.map { assumed.batteryKWh * Self.socRange($0).lowerBound / 100 } ?? assumed.reserveKWh
      let vehicle = VehicleNeeds(
        vehicleID: assumed.vehicleID, batteryKWh: assumed.batteryKWh, energyKWh: energy,
        reserveKWh: assumed.reserveKWh, arrivalEnergyKWh: energy,
        departureNeedKWh: min(assumed.departureNeedKWh, assumed.batteryKWh), departure: assumed.departure)
      return ChargerState(
        online: true, maxChargeKW: configuration.ratedChargeKW, maxDischargeKW: 0, measuredKW: measuredKW,
        vehicle: vehicle)
    }
    guard let needs, transactionID != nil else {
      var state = ChargerState(online: true, maxChargeKW: 0, maxDischargeKW: 0, measuredKW: measuredKW)
      state.needsUnknown = transactionID != nil
      return state
    }
    // A later SoC meter value moves the energy, at the low end of its rounding if it is a
    // whole percent.
    let energy =
      needs.energyKnown
      ? socPercent.map { needs.batteryKWh * Self.socRange($0).lowerBound / 100 } ?? needs.energyAtNoticeKWh
      : needs.energyAtNoticeKWh
    let vehicle = VehicleNeeds(
      vehicleID: vehicleID ?? "\(chargerID)-vehicle", batteryKWh: needs.batteryKWh, energyKWh: energy,
      reserveKWh: needs.reserveKWh, arrivalEnergyKWh: needs.energyAtNoticeKWh, departureNeedKWh: needs.departureNeedKWh,
      departure: needs.departure)
    return ChargerState(
      online: true, maxChargeKW: needs.maxChargeKW, maxDischargeKW: needs.maxDischargeKW, measuredKW: measuredKW,
      vehicle: vehicle)
  }
}

func formatKW(_ kW: Double) -> String { String(format: "%.1f kW", kW) }
