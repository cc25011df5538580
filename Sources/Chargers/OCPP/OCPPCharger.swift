import Foundation
import Logging
import OCPP
import Synchronization

/// The OCPP driver: one charge point, its session, and whichever WebSocket it is on now.
/// Frames come in from the endpoint (`receive`), setpoints from the control loop
/// (`command`); what is to be sent goes out through the connection's queue, never waiting.
public final class OCPPCharger: PlatformSteered, SiteSuppliedNeeds {
  public let id: String
  public let configuration: ChargePointSession.Configuration
  private let logger: Logger
  private let state: Mutex<State>

  struct State {
    var session: ChargePointSession?
    var connection: Connection?
    var connectionNumber = 0
    /// Fault reasons already logged, so each is logged once when it appears.
    var reportedFault: String?
    /// Upstream calls relayed to the charge point: our message id → the upstream's.
    var relayed: [String: (upstreamID: String, action: String)] = [:]
    var relayNumber = 0
    /// What an upstream CSMS asked this charger to do (Local Controller mode), kW, until when.
    var upstreamSetpoint: (kW: Double, until: Date)?
  }

  /// A connection's outgoing queue and the edition it speaks.
  struct Connection {
    var number: Int
    var version: OCPPVersion
    var outgoing: AsyncStream<String>.Continuation
    var schemas: OCPPSchemas?
  }

  /// Set in Local Controller mode: where a copy of the charger's calls goes.
  public let upstream: Mutex<(any UpstreamPeer)?> = Mutex(nil)

  /// When the driver was made: a charger that has not connected for `connectGraceSeconds`
  /// since then raises its alarm (before that, chargers are still booting with the site).
  private let createdAt: Date
  public static let connectGraceSeconds = 120.0

  public init(id: String, configuration: ChargePointSession.Configuration, logger: Logger, now: Date = Date()) {
    self.id = id
    self.configuration = configuration
    self.logger = logger
    self.createdAt = now
    state = Mutex(State())
  }

  // MARK: Connections

  /// A charge point connected with this edition: returns the connection's number and the
  /// frames to write to it. A second connection replaces the first (a charger that
  /// reconnected before its old socket timed out).
  func attach(version: OCPPVersion, now: Date) -> (number: Int, outgoing: AsyncStream<String>) {
    let (stream, continuation) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(256))
    let schemas = try? OCPPSchemas.shared(version)
    let number = state.withLock { s in
      s.connection?.outgoing.finish()
      s.connectionNumber += 1
      if s.session?.version != version {
        s.session = ChargePointSession(chargerID: id, version: version, configuration: configuration)
      }
      s.session?.connect(now: now)
      s.connection = Connection(
        number: s.connectionNumber, version: version, outgoing: continuation, schemas: schemas)
      s.relayed = [:]
      return s.connectionNumber
    }
    return (number, stream)
  }

  /// Whether the charge point is connected now (its WebSocket is open).
  public var isConnected: Bool { state.withLock { $0.connection != nil } }

  /// The connection closed (or was replaced). Offline at once.
  func detach(number: Int) {
    state.withLock { s in
      guard s.connection?.number == number else { return }
      s.connection?.outgoing.finish()
      s.connection = nil
      s.session?.disconnect()
    }
  }

  /// Closes the current connection from this side (shutdown, a replaced password).
  func disconnect() {
    state.withLock { s in
      s.connection?.outgoing.finish()
    }
  }

  // MARK: Frames from the charge point

  /// One text frame from the charge point: answered (a result, or a CALLERROR naming what
  /// was wrong), and any calls now due are sent after it.
  func receive(_ text: String, now: Date) {
    let frame: OCPPFrame
    do {
      frame = try OCPPFrame.parse(text)
    } catch {
      logger.warning(
        "unreadable OCPP frame", metadata: ["charger": "\(id)", "error": "\(error.description)"])
      // Without a message id there is nothing to answer (OCPP-J 4.2.3); with one, a CALLERROR.
      if let messageID = error.messageID {
        send(OCPPFrame.error(id: messageID, code: error.code, description: error.description, details: [:]).text)
      }
      return
    }
    switch frame {
    case .call(let messageID, let action, let payload):
      let reply = answer(action: action, payload: payload, now: now)
      switch reply {
      case .result(let result): send(OCPPFrame.result(id: messageID, payload: result).text)
      case .error(let code, let description):
        logger.warning(
          "OCPP call refused",
          metadata: ["charger": "\(id)", "action": "\(action)", "code": "\(code.rawValue)", "why": "\(description)"])
        send(OCPPFrame.error(id: messageID, code: code, description: description, details: [:]).text)
      }
      if case .result = reply, let upstream = upstream.withLock({ $0 }) {
        upstream.forward(action: action, payload: payload)
      }
    case .send(_, let action, let payload):
      _ = answer(action: action, payload: payload, now: now)
    case .result(let messageID, let payload):
      if let relay = takeRelayed(messageID) {
        upstream.withLock { $0 }?.answer(
          upstreamID: relay.upstreamID, with: .result(id: relay.upstreamID, payload: payload))
        return
      }
      let action = state.withLock { $0.session?.pending[messageID]?.action }
      if let action, let violations = validate(action: action, kind: .response, payload: payload), !violations.isEmpty {
        logger.warning(
          "OCPP answer does not match its schema",
          metadata: ["charger": "\(id)", "action": "\(action)", "violations": "\(violations.prefix(3))"])
        state.withLock {
          $0.session?.handleError(
            messageID: messageID, code: .formatViolation, description: "\(violations[0])", now: now)
        }
      } else {
        state.withLock { $0.session?.handleResult(messageID: messageID, payload: payload, now: now) }
      }
    case .error(let messageID, let code, let description, let details):
      if let relay = takeRelayed(messageID) {
        upstream.withLock { $0 }?.answer(
          upstreamID: relay.upstreamID,
          with: .error(id: relay.upstreamID, code: code, description: description, details: details))
        return
      }
      logger.warning(
        "charger answered with an error",
        metadata: ["charger": "\(id)", "code": "\(code.rawValue)", "description": "\(description)"])
      state.withLock { $0.session?.handleError(messageID: messageID, code: code, description: description, now: now) }
    case .resultError:
      break
    }
    flush(now: now, refresh: false)
    reportFaultChange(now: now)
  }

  /// A call from the charge point, checked against its schema first.
  private func answer(action: String, payload: JSONValue, now: Date) -> ChargePointSession.Reply {
    let schemas = state.withLock { $0.connection?.schemas }
    guard schemas?.knows(action: action) ?? true else {
      return .error(.notImplemented, "\(action) is not an action of this OCPP edition")
    }
    if let violations = schemas?.validate(action: action, kind: .request, payload: payload),
      let first = violations.first
    {
      return .error(Self.errorCode(for: first), violations.prefix(5).map(\.description).joined(separator: "; "))
    }
    return state.withLock { s in
      s.session?.handleCall(action: action, payload: payload, now: now)
        ?? .error(.internalError, "no session for this connection")
    }
  }

  private func validate(action: String, kind: OCPPMessageKind, payload: JSONValue) -> [SchemaViolation]? {
    guard let schemas = state.withLock({ $0.connection?.schemas }) else { return nil }
    return schemas.validate(action: action, kind: kind, payload: payload)
  }

  /// OCPP-J's error codes by what was wrong (part 4, 4.3).
  static func errorCode(for violation: SchemaViolation) -> OCPPErrorCode {
    if violation.message.hasPrefix("required") { return .occurrenceConstraintViolation }
    if violation.message.hasPrefix("expected") { return .typeConstraintViolation }
    return .propertyConstraintViolation
  }

  // MARK: Commands

  public func command(setpointKW: Double, now: Date) {
    state.withLock { $0.session?.command(setpointKW: setpointKW) }
    flush(now: now, refresh: true)
    reportFaultChange(now: now)
  }

  /// Sends the calls the session has due: a new setpoint, or (on the control loop's cadence
  /// only, `refresh`) a refreshed one.
  private func flush(now: Date, refresh: Bool) {
    state.withLock { s in
      guard let connection = s.connection, var session = s.session else { return }
      let calls = session.callsDue(now: now, refresh: refresh)
      s.session = session
      for call in calls {
        connection.outgoing.yield(OCPPFrame.call(id: call.messageID, action: call.action, payload: call.payload).text)
      }
    }
  }

  private func send(_ text: String) {
    state.withLock { _ = $0.connection?.outgoing.yield(text) }
  }

  private func reportFaultChange(now: Date) {
    let fault = state.withLock { s -> String?? in
      let fault = s.session?.trust(now: now).fault
      guard fault != s.reportedFault else { return nil }
      s.reportedFault = fault
      return .some(fault)
    }
    if let fault {
      if let fault {
        logger.warning("charger not relied on", metadata: ["charger": "\(id)", "why": "\(fault)"])
      } else {
        logger.info("charger relied on again", metadata: ["charger": "\(id)"])
      }
    }
  }

  // MARK: What the controller sees

  public func state(now: Date) -> ChargerState {
    state.withLock { s in
      if let session = s.session { return session.state(now: now) }
      let waited = now.timeIntervalSince(createdAt)
      return .offline(
        fault: waited > Self.connectGraceSeconds
          ? "has not connected in the \(Int(waited)) s since the appliance started" : nil)
    }
  }

  /// The session as it stands (for tests and the panel).
  public var session: ChargePointSession? { state.withLock { $0.session } }

  // MARK: Local Controller: calls from the upstream CSMS

  /// A call from the upstream CSMS for this charger. Setpoints are taken as the platform's
  /// request (the controller follows it within the site's limits); anything else is
  /// relayed to the charge point and its answer goes back up.
  public func upstreamCall(id upstreamID: String, action: String, payload: JSONValue, now: Date) -> OCPPFrame? {
    switch action {
    case "SetChargingProfile":
      guard let kW = Self.requestedKW(payload) else {
        return .result(
          id: upstreamID, payload: ["status": "Rejected", "statusInfo": ["reasonCode": "UnsupportedRequest"]])
      }
      let seconds = payload["chargingProfile"]?["chargingSchedule"]?[0]?["duration"]?.doubleValue ?? 3600
      state.withLock { $0.upstreamSetpoint = (kW, now.addingTimeInterval(seconds)) }
      logger.info("upstream setpoint", metadata: ["charger": "\(id)", "requested_kw": "\(kW)"])
      return .result(id: upstreamID, payload: ["status": "Accepted"])
    case "ClearChargingProfile":
      state.withLock { $0.upstreamSetpoint = nil }
      return .result(id: upstreamID, payload: ["status": "Accepted"])
    default:
      let relayedID: String? = state.withLock { s in
        guard let connection = s.connection else { return nil }
        s.relayNumber += 1
        let id = "up-\(s.relayNumber)"
        s.relayed[id] = (upstreamID, action)
        connection.outgoing.yield(OCPPFrame.call(id: id, action: action, payload: payload).text)
        return id
      }
      guard relayedID != nil else {
        return .error(
          id: upstreamID, code: .genericError, description: "charge point \(id) is not connected", details: [:])
      }
      return nil  // answered when the charge point answers
    }
  }

  public func assumeNeeds(_ needs: AssumedNeeds?) {
    let changed = state.withLock { s -> Bool in
      guard s.session?.assumedNeeds != needs else { return false }
      s.session?.assumedNeeds = needs
      return true
    }
    if changed, let needs {
      logger.notice(
        "charger \(id): its vehicle sent no needs; managed as \(needs.vehicleID) from the site's \(needs.source)",
        metadata: ["departure": "\(OCPPTime.format(needs.departure))", "need_kwh": "\(needs.departureNeedKWh)"])
    }
  }

  /// The platform's setpoint for this charger, while it holds.
  public func upstreamSetpointKW(now: Date) -> Double? {
    state.withLock { s in
      guard let request = s.upstreamSetpoint, request.until > now else { return nil }
      return request.kW
    }
  }

  /// The upstream link dropped: its requests no longer hold; the site's own control resumes.
  public func clearUpstreamRequest() { state.withLock { $0.upstreamSetpoint = nil } }

  private func takeRelayed(_ messageID: String) -> (upstreamID: String, action: String)? {
    state.withLock { $0.relayed.removeValue(forKey: messageID) }
  }

  /// The power a platform's profile asks for now: the first period's setpoint (2.1), else
  /// its limit as a charge rate; watts or amps (3 phases at the nominal voltage).
  static func requestedKW(_ payload: JSONValue, nominalVoltage: Double = 400) -> Double? {
    guard let schedule = payload["chargingProfile"]?["chargingSchedule"]?[0],
      let period = schedule["chargingSchedulePeriod"]?[0]
    else { return nil }
    guard let value = period["setpoint"]?.doubleValue ?? period["limit"]?.doubleValue else { return nil }
    let phases = period["numberPhases"]?.doubleValue ?? 3
    let watts =
      schedule["chargingRateUnit"]?.stringValue == "A" ? value * nominalVoltage * phases / 3.0.squareRoot() : value
    return watts / 1000
  }
}

/// Where a Local Controller sends a charger's traffic: the upstream CSMS link.
public protocol UpstreamPeer: Sendable {
  /// A copy of a call the charge point made (answered locally already).
  func forward(action: String, payload: JSONValue)
  /// The charge point's answer to a call the upstream made.
  func answer(upstreamID: String, with frame: OCPPFrame)
}
