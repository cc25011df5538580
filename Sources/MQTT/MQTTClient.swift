import CMosquitto
import Foundation
import Logging
import Synchronization

/// A connection to an MQTT broker through libmosquitto: the one type that owns the C
/// handle. Everything that touches `mosquitto *` is in this file, so it can be audited in
/// one read:
///
/// - The handle is created in `init`, destroyed in `deinit`, and used by one network thread
///   (connect, reconnect, `mosquitto_loop`) plus `publish`/`subscribe` from any thread;
///   `mosquitto_threaded_set(true)` tells libmosquitto to lock for that.
/// - Callbacks arrive on the network thread with a pointer back to this object, which
///   outlives the thread (`stop()` joins it before `deinit` can run).
/// - libmosquitto does not retry a first connect that fails, and its own loop thread stops
///   retrying on some errors; this type runs its own loop that retries forever with a
///   capped, jittered backoff, from the first attempt on.
/// - A QoS 1 publish made while the connection is down returns MOSQ_ERR_NO_CONN but is
///   already queued inside libmosquitto and is sent after the reconnect. `publish` reports
///   that as `.queued`, so no caller publishes it a second time.
public final class MQTTClient: @unchecked Sendable {
  // @unchecked: the handle is only touched as described above; all Swift state is in
  // `state`, a Mutex.

  public enum ProtocolVersion: String, Sendable, Codable, CaseIterable {
    case v5 = "5"
    case v311 = "3.1.1"
  }

  public struct TLS: Sendable, Hashable {
    /// CA certificate file the broker's certificate must chain to.
    public var caFile: String
    /// Client certificate and key, for brokers that want them.
    public var certFile: String?
    public var keyFile: String?
    /// Skip the host-name check (test benches only).
    public var insecure: Bool
    public init(caFile: String, certFile: String? = nil, keyFile: String? = nil, insecure: Bool = false) {
      self.caFile = caFile
      self.certFile = certFile
      self.keyFile = keyFile
      self.insecure = insecure
    }
  }

  /// A retained "online" on connect, and the same topic's "offline" as the last will (the
  /// broker publishes it if the connection dies) and on a clean stop.
  public struct Availability: Sendable, Hashable {
    public var topic: String
    public var online: String = "online"
    public var offline: String = "offline"
    public init(topic: String) { self.topic = topic }
  }

  public struct Configuration: Sendable {
    public var host = "127.0.0.1"
    public var port = 1883
    public var clientID = "microgrid-edge"
    public var username: String?
    public var password: String?
    /// Reads the password before every connection attempt (it replaces `password`), so a
    /// password file put in place or changed later is used without a restart. A failure
    /// counts as a failed attempt, named in the log, and is retried with the same backoff.
    public var readPassword: (@Sendable () -> Result<String, any Error>)?
    public var protocolVersion = ProtocolVersion.v5
    public var keepAliveSeconds = 30
    public var tls: TLS?
    public var availability: Availability?
    /// First wait after a failed connect; doubles up to `maximumReconnectDelay`.
    public var initialReconnectDelay = 0.5
    public var maximumReconnectDelay = 30.0
    public init() {}
  }

  public struct Message: Sendable, Hashable {
    public var topic: String
    public var payload: [UInt8]
    public var retain: Bool
    public var qos: Int
    public init(topic: String, payload: [UInt8], retain: Bool = false, qos: Int = 0) {
      self.topic = topic
      self.payload = payload
      self.retain = retain
      self.qos = qos
    }
  }

  public enum PublishOutcome: Sendable, Hashable {
    /// Handed to the socket.
    case sent
    /// QoS 1 while disconnected: libmosquitto holds it and sends it after the reconnect.
    case queued
    /// Not sent and not held (QoS 0 while disconnected, or an error).
    case dropped(String)
  }

  public struct Statistics: Sendable, Hashable {
    public var connects = 0
    public var connectFailures = 0
    public var connectionLosses = 0
    public var messagesReceived = 0
    public var published = 0
    public var queuedWhileDown = 0
    public var dropped = 0
  }

  /// What the client tells its owner, on the network thread. Keep handlers short: the
  /// network thread delivers the next message only when they return.
  public struct Handlers: Sendable {
    public var message: @Sendable (Message) -> Void
    public var connected: @Sendable () -> Void
    public var disconnected: @Sendable (String) -> Void
    public init(
      message: @escaping @Sendable (Message) -> Void, connected: @escaping @Sendable () -> Void = {},
      disconnected: @escaping @Sendable (String) -> Void = { _ in }
    ) {
      self.message = message
      self.connected = connected
      self.disconnected = disconnected
    }
  }

  private struct State {
    var connected = false
    var subscriptions: [(filter: String, qos: Int32)] = []
    var statistics = Statistics()
    var stopRequested = false
    var running = false
    var lastError: String?
    /// Set when the broker accepts a connection; the network thread reads and clears it
    /// when that connection ends, to tell a lost connection from a failed attempt.
    var sessionEstablished = false
  }

  public let configuration: Configuration
  private let handle: OpaquePointer
  private let handlers: Handlers
  private let logger: Logger
  private let state = Mutex(State())
  /// Signalled by `stop()` to cut a backoff wait short; signalled by the thread on exit.
  private let wake = DispatchSemaphore(value: 0)
  private let exited = DispatchSemaphore(value: 0)

  /// Sets the connection up; nothing is sent before `start()`.
  public init(configuration: Configuration, handlers: Handlers, logger: Logger) throws(MQTTError) {
    Self.initializeLibrary
    guard let mosq = mosquitto_new(configuration.clientID, true, nil) else {
      throw MQTTError(operation: "create client", detail: "mosquitto_new failed (out of memory or bad client id)")
    }
    // Configured before `self` is complete: a throw here must destroy the handle itself,
    // since `deinit` (which also destroys it) does not run for an incomplete object.
    do {
      try Self.check(mosquitto_threaded_set(mosq, true), "mark as threaded")
      let version = configuration.protocolVersion == .v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311
      try Self.check(mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, version), "set protocol version")
      // Without it a small publish (setpoints) that follows a large one (the state) waits
      // for the broker's delayed ACK under Nagle's algorithm: 40 ms on Linux.
      try Self.check(mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1), "set TCP_NODELAY")
      if let username = configuration.username {
        try Self.check(mosquitto_username_pw_set(mosq, username, configuration.password), "set username/password")
      }
      if let tls = configuration.tls {
        try Self.check(mosquitto_tls_set(mosq, tls.caFile, nil, tls.certFile, tls.keyFile, nil), "set up TLS")
        try Self.check(mosquitto_tls_insecure_set(mosq, tls.insecure), "set TLS host-name check")
      }
      if let availability = configuration.availability {
        let payload = Array(availability.offline.utf8)
        try Self.check(
          mosquitto_will_set(mosq, availability.topic, Int32(payload.count), payload, 1, true), "set last will")
      }
    } catch {
      mosquitto_destroy(mosq)
      throw error
    }
    self.configuration = configuration
    self.handlers = handlers
    self.logger = logger
    handle = mosq
    // Nothing can throw from here on; the callbacks find this object through the user data.
    mosquitto_user_data_set(mosq, Unmanaged.passUnretained(self).toOpaque())
    mosquitto_connect_v5_callback_set(mosq) { _, object, reasonCode, _, _ in
      MQTTClient.from(object)?.didConnect(reasonCode: reasonCode)
    }
    mosquitto_disconnect_v5_callback_set(mosq) { _, object, reasonCode, _ in
      MQTTClient.from(object)?.didDisconnect(reasonCode: reasonCode)
    }
    mosquitto_message_v5_callback_set(mosq) { _, object, message, _ in
      guard let client = MQTTClient.from(object), let message else { return }
      client.didReceive(message.pointee)
    }
  }

  deinit {
    stop()
    mosquitto_destroy(handle)
  }

  private static let initializeLibrary: Void = { _ = mosquitto_lib_init() }()

  private static func from(_ object: UnsafeMutableRawPointer?) -> MQTTClient? {
    object.map { Unmanaged<MQTTClient>.fromOpaque($0).takeUnretainedValue() }
  }

  private static func check(_ rc: Int32, _ operation: String) throws(MQTTError) {
    guard rc == MOSQ_ERR_SUCCESS.rawValue else {
      throw MQTTError(operation: operation, detail: Self.describe(rc))
    }
  }

  static func describe(_ rc: Int32) -> String {
    if rc == MOSQ_ERR_ERRNO.rawValue { return String(cString: strerror(errno)) }
    return String(cString: mosquitto_strerror(rc))
  }

  // MARK: - Public interface

  public var isConnected: Bool { state.withLock { $0.connected } }
  public var statistics: Statistics { state.withLock { $0.statistics } }

  /// Topic filters to hold; subscribed now if connected and again after every reconnect
  /// (sessions are clean: the broker forgets them with the connection).
  public func subscribe(_ filters: [String], qos: Int = 1) throws(MQTTError) {
    for filter in filters where mosquitto_sub_topic_check(filter) != MOSQ_ERR_SUCCESS.rawValue {
      throw MQTTError(operation: "subscribe", detail: "'\(filter)' is not a valid MQTT topic filter")
    }
    let connected = state.withLock { s in
      s.subscriptions += filters.map { ($0, Int32(qos)) }
      return s.connected
    }
    if connected {
      for filter in filters { _ = mosquitto_subscribe(handle, nil, filter, Int32(qos)) }
    }
  }

  @discardableResult
  public func publish(_ topic: String, _ payload: [UInt8], qos: Int = 0, retain: Bool = false) -> PublishOutcome {
    let rc = payload.withUnsafeBytes { bytes in
      mosquitto_publish(handle, nil, topic, Int32(bytes.count), bytes.baseAddress, Int32(qos), retain)
    }
    let outcome: PublishOutcome
    switch rc {
    case MOSQ_ERR_SUCCESS.rawValue: outcome = .sent
    case MOSQ_ERR_NO_CONN.rawValue where qos > 0: outcome = .queued
    default: outcome = .dropped(Self.describe(rc))
    }
    state.withLock { s in
      switch outcome {
      case .sent: s.statistics.published += 1
      case .queued: s.statistics.queuedWhileDown += 1
      case .dropped: s.statistics.dropped += 1
      }
    }
    return outcome
  }

  @discardableResult
  public func publish(_ topic: String, _ text: String, qos: Int = 0, retain: Bool = false) -> PublishOutcome {
    publish(topic, Array(text.utf8), qos: qos, retain: retain)
  }

  /// Starts the network thread: connect (retrying until the broker answers), then serve.
  public func start() {
    let first = state.withLock { s in
      defer { s.running = true }
      return !s.running
    }
    guard first else { return }
    let thread = Thread { [self] in networkLoop() }
    thread.name = "mqtt \(configuration.host):\(configuration.port)"
    thread.start()
  }

  /// Says "offline" (when connected), disconnects and joins the network thread. Idempotent.
  public func stop() {
    guard state.withLock({ $0.running && !$0.stopRequested }) else { return }
    if isConnected, let availability = configuration.availability {
      publish(availability.topic, availability.offline, qos: 1, retain: true)
    }
    state.withLock { s in
      s.stopRequested = true
      s.running = false
    }
    wake.signal()
    // Give the thread a few loop turns to flush "offline", then it disconnects itself.
    if exited.wait(timeout: .now() + 5) == .timedOut {
      logger.warning("MQTT network thread did not stop within 5 s", metadata: ["broker": "\(brokerName)"])
    }
  }

  var brokerName: String { "\(configuration.host):\(configuration.port)" }

  // MARK: - The network thread

  private func networkLoop() {
    var failures = 0
    var socketOpen = false
    // mosquitto_connect gives libmosquitto the broker's address; every later attempt is a
    // mosquitto_reconnect to it.
    var addressGiven = false
    while !state.withLock({ $0.stopRequested }) {
      if !socketOpen {
        if let problem = refreshPassword() {
          failures += 1
          noteFailure("connect to \(brokerName) not tried: \(problem)", attempt: failures)
          backoff(failures)
          continue
        }
        let rc =
          addressGiven
          ? mosquitto_reconnect(handle)
          : mosquitto_connect(
            handle, configuration.host, Int32(configuration.port), Int32(configuration.keepAliveSeconds))
        addressGiven = true
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
          failures += 1
          noteFailure("connect to \(brokerName) failed: \(Self.describe(rc))", attempt: failures)
          backoff(failures)
          continue
        }
        socketOpen = true
      }
      let rc = mosquitto_loop(handle, 100, 1)
      if rc != MOSQ_ERR_SUCCESS.rawValue {
        socketOpen = false
        let wasConnected = state.withLock { s in
          defer {
            s.connected = false
            s.sessionEstablished = false
          }
          return s.sessionEstablished
        }
        if wasConnected {
          failures = 0
          state.withLock { $0.statistics.connectionLosses += 1 }
          logger.warning(
            "MQTT connection lost; reconnecting",
            metadata: ["broker": "\(brokerName)", "error": "\(Self.describe(rc))"])
          handlers.disconnected(Self.describe(rc))
        } else {
          failures += 1
          let reason = state.withLock { $0.lastError } ?? Self.describe(rc)
          noteFailure("connect to \(brokerName) failed: \(reason)", attempt: failures)
        }
        backoff(max(1, failures))
      } else if state.withLock({ $0.connected }) {
        failures = 0
      }
    }
    // Clean stop: let "offline" out, then disconnect (no last will on a clean disconnect).
    if socketOpen {
      for _ in 0..<5 { _ = mosquitto_loop(handle, 20, 1) }
      _ = mosquitto_disconnect(handle)
      _ = mosquitto_loop(handle, 20, 1)
    }
    state.withLock { $0.connected = false }
    exited.signal()
  }

  /// Sets the password `readPassword` gives, before a connection attempt; the reason none
  /// could be had, if so.
  private func refreshPassword() -> String? {
    guard let readPassword = configuration.readPassword, let username = configuration.username else { return nil }
    switch readPassword() {
    case .failure(let error): return "the password \(error)"
    case .success(let password):
      let rc = mosquitto_username_pw_set(handle, username, password)
      return rc == MOSQ_ERR_SUCCESS.rawValue ? nil : "setting the password failed: \(Self.describe(rc))"
    }
  }

  private func noteFailure(_ text: String, attempt: Int) {
    state.withLock { $0.statistics.connectFailures += 1 }
    // The first failure, then every tenth: a broker down for hours must not flood the log.
    if attempt == 1 || attempt % 10 == 0 {
      logger.error("\(text); retrying", metadata: ["attempt": "\(attempt)"])
    }
  }

  /// Waits before the next attempt: doubling from the initial delay up to the maximum, with
  /// ±20 % jitter so that many appliances do not reconnect in step.
  private func backoff(_ attempt: Int) {
    let base = min(
      configuration.maximumReconnectDelay,
      configuration.initialReconnectDelay * pow(2, Double(min(attempt - 1, 20))))
    let delay = base * Double.random(in: 0.8...1.2)
    _ = wake.wait(timeout: .now() + delay)
  }

  // MARK: - Callbacks (network thread)

  private func didConnect(reasonCode: Int32) {
    guard reasonCode == 0 else {
      let reason =
        configuration.protocolVersion == .v5
        ? String(cString: mosquitto_reason_string(reasonCode)) : String(cString: mosquitto_connack_string(reasonCode))
      state.withLock { $0.lastError = "the broker refused the connection: \(reason)" }
      _ = mosquitto_disconnect(handle)
      return
    }
    let subscriptions = state.withLock { s in
      s.connected = true
      s.sessionEstablished = true
      s.lastError = nil
      s.statistics.connects += 1
      return s.subscriptions
    }
    logger.notice(
      "MQTT connected",
      metadata: [
        "broker": "\(brokerName)", "protocol": "\(configuration.protocolVersion.rawValue)",
        "tls": "\(configuration.tls != nil)",
      ])
    for (filter, qos) in subscriptions { _ = mosquitto_subscribe(handle, nil, filter, qos) }
    if let availability = configuration.availability {
      publish(availability.topic, availability.online, qos: 1, retain: true)
    }
    handlers.connected()
  }

  private func didDisconnect(reasonCode: Int32) {
    state.withLock { $0.connected = false }
  }

  private func didReceive(_ m: mosquitto_message) {
    let topic = m.topic.map { String(cString: $0) } ?? ""
    let payload: [UInt8] =
      m.payloadlen > 0 && m.payload != nil
      ? Array(UnsafeRawBufferPointer(start: m.payload, count: Int(m.payloadlen))) : []
    state.withLock { $0.statistics.messagesReceived += 1 }
    handlers.message(Message(topic: topic, payload: payload, retain: m.retain, qos: Int(m.qos)))
  }
}

/// An MQTT operation that failed, with libmosquitto's reason.
public struct MQTTError: Error, CustomStringConvertible, Sendable {
  public var operation: String
  public var detail: String
  public var description: String { "MQTT: cannot \(operation): \(detail)" }
}
