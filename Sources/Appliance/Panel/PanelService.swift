import Chargers
import Control
import Foundation
import Logging
import MQTT
import ServiceLifecycle
import SiteModel
import Synchronization

/// The appliance on the building's MQTT broker (docs/mqtt-api.md): panel state out,
/// commands in and replies out, Home Assistant discovery; and the connection that the
/// other parts reading the broker (`BrokerInput`: the meters, MQTT chargers) are fed from.
///
/// Messages are handled on the MQTT network thread as they come: an input's message goes
/// to the part that reads its topic (a meter reading is parsed and stored there, and wakes
/// the control loop), a command is checked and answered. The state is published from this
/// service's own task.
public final class PanelService: Service, StepObserver {
  public let section: MQTTSection
  public let site: SiteDescription
  private let status: SiteStatus
  private let meters: MeterInputs?
  private let logger: Logger
  private let client: MQTTClient
  /// Who reads which input topic.
  private let inputs: [String: any BrokerInput]
  private let prefix: String
  private let commandFilter: TopicFilter
  private let birthTopic: String
  private let discovery: HomeAssistantDiscovery
  /// Per-entity configs an older appliance left retained (see `migrateLegacyConfig`).
  private let legacyDiscovery: TopicFilter
  private let publishState: StepTrigger
  private let shared = Mutex(Shared())
  private let version: String
  /// Lines about refused input, bounded per topic (an SD card is not a flood sink).
  private let refusals: RateLimitedLog

  private struct Shared {
    var lastSetpoints: [Double]?
    var lastSetpointsSequence = 0
    var lastStateBody: String?
    var lastStatePublished: ContinuousClock.Instant?
    var stateWanted = true
    var inputErrors = 0
    /// When to publish the discovery config next, if at all.
    var discoveryDue: ContinuousClock.Instant?
  }

  /// How long discovery waits after a connect: the broker sends the retained per-entity
  /// configs of an older appliance right after the subscription, and Home Assistant must
  /// see those migrated before the device config, or it refuses the device's entities as
  /// conflicting (until the next publish).
  static let discoveryDelay = Duration.seconds(1)

  public var mqttClient: MQTTClient { client }

  public init(
    section: MQTTSection, site: SiteDescription, status: SiteStatus, meters: MeterInputs?, version: String,
    chargers: [MQTTCharger] = [], logger: Logger
  ) throws(MQTTError) {
    let parts: [any BrokerInput] = (meters.map { [$0] } ?? []) + [MQTTChargerInputs(chargers)]
    var inputs: [String: any BrokerInput] = [:]
    for part in parts { for topic in part.inputTopics { inputs[topic] = part } }
    self.inputs = inputs
    self.section = section
    self.site = site
    self.status = status
    self.meters = meters
    self.logger = logger
    self.version = version
    refusals = RateLimitedLog(logger: logger)
    prefix = section.topicPrefix ?? "microgrid-edge/\(MQTTSection.slug(site.name))"
    commandFilter = TopicFilter("\(prefix)/command/+")!
    birthTopic = "\(section.discovery.prefix)/status"
    discovery = HomeAssistantDiscovery(
      prefix: prefix, discoveryPrefix: section.discovery.prefix, commandUser: section.discovery.commandUser,
      site: site, version: version)
    legacyDiscovery = TopicFilter(discovery.legacyFilter)!
    let publishState = StepTrigger()
    self.publishState = publishState
    // The handlers need `self`, which is not complete yet: route through a box.
    let router = Router()
    client = try MQTTClient(
      configuration: section.clientConfiguration(),
      handlers: .init(
        message: { router.target?.received($0) },
        connected: { router.target?.connected() }),
      logger: logger)
    var filters = [commandFilter.text] + inputs.keys.sorted()
    if section.discovery.enabled { filters += [birthTopic, legacyDiscovery.text] }
    try client.subscribe(filters, qos: 1)
    router.target = self
    // The chargers' setpoints go out on this client.
    let client = self.client
    for charger in chargers {
      charger.attach { message in _ = client.publish(message.topic, message.payload, qos: message.qos) }
    }
  }

  /// Lets the client's handlers reach the service once it exists.
  private final class Router: @unchecked Sendable {
    // Set once, before the client starts; read only afterwards.
    nonisolated(unsafe) weak var target: PanelService?
  }

  // MARK: - Service

  public func run() async throws {
    client.start()
    logger.info(
      "panel API on MQTT",
      metadata: [
        "broker": "\(section.host):\(section.port)", "prefix": "\(prefix)",
        "meters": "\(meters?.meters.count ?? 0)", "discovery": "\(section.discovery.enabled)",
      ])
    let clock = ContinuousClock()
    // State within a second of any change, and at least every `state_every_seconds`.
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      await publishState.wait(until: clock.now.advanced(by: .milliseconds(250)))
      let now = clock.now
      let discoveryDue = shared.withLock { s -> Bool in
        guard let due = s.discoveryDue, due <= now else { return false }
        s.discoveryDue = nil
        return true
      }
      if discoveryDue { publishDiscovery() }
      publishStateIfDue(now: clock.now)
      refusals.flush()
    }
    client.stop()
    refusals.flush(everything: true)
    logger.info("panel API stopped; said offline")
  }

  private func publishStateIfDue(now: ContinuousClock.Instant) {
    guard client.isConnected else { return }
    let view = status.view
    guard view.last != nil else { return }
    let body = PanelJSON.state(view: view, site: site, meters: meters?.statuses(), inputErrors: inputErrors)
    let due = shared.withLock { s -> Bool in
      let age = s.lastStatePublished.map { MeterInputs.seconds(now - $0) } ?? .infinity
      let changed = body.comparable != s.lastStateBody
      if s.stateWanted || age >= section.stateEverySeconds || (changed && age >= 1) {
        s.stateWanted = false
        s.lastStateBody = body.comparable
        s.lastStatePublished = now
        return true
      }
      return false
    }
    guard due else { return }
    client.publish("\(prefix)/state", body.json, qos: 1, retain: true)
    if let last = view.last { publishSetpoints(last, force: true) }
  }

  public var inputErrors: Int { shared.withLock { $0.inputErrors } }

  // MARK: - Control loop side

  public func observe(_ step: StepRecord) {
    publishSetpoints(step, force: false)
  }

  /// Setpoints go out in step order: the state task's periodic copy of an older step never
  /// follows a newer step's (a charger adapter would act on whatever came last).
  private func publishSetpoints(_ step: StepRecord, force: Bool) {
    let setpoints = step.decisions.setpointsKW.map { ($0 * 100).rounded() / 100 }
    shared.withLock { s in
      guard step.sequence >= s.lastSetpointsSequence else { return }
      guard s.lastSetpoints != setpoints || force, client.isConnected else { return }
      s.lastSetpoints = setpoints
      s.lastSetpointsSequence = step.sequence
      // Under the lock, so two publishers cannot swap their order on the way out; a
      // publish only queues the message for the network thread.
      client.publish("\(prefix)/setpoints", PanelJSON.setpoints(step, site: site, rounded: setpoints), qos: 0)
    }
  }

  /// Something changed that panels show: publish the state soon.
  public func stateChanged() {
    shared.withLock { $0.stateWanted = true }
    publishState.signal()
  }

  // MARK: - Network thread

  private func connected() {
    shared.withLock {
      $0.stateWanted = true
      if section.discovery.enabled { $0.discoveryDue = ContinuousClock.now + Self.discoveryDelay }
    }
    publishState.signal()
  }

  private func received(_ message: MQTTClient.Message) {
    if let input = inputs[message.topic] {
      let problems = input.receive(topic: message.topic, payload: message.payload)
      if !problems.isEmpty {
        shared.withLock { $0.inputErrors += problems.count }
        for p in problems { refusals.refused(on: message.topic, "\(p)") }
      }
    } else if let user = commandFilter.capture(message.topic) {
      handleCommand(message, user: user)
    } else if section.discovery.enabled && message.topic == birthTopic {
      switch message.payload {
      case Array("online".utf8):
        shared.withLock { $0.discoveryDue = ContinuousClock.now }
        publishState.signal()
      case Array("offline".utf8): break
      default:
        shared.withLock { $0.inputErrors += 1 }
        refusals.refused(
          on: message.topic,
          "\(birthTopic): expected online or offline; ignored (payload: \(preview(message.payload)))")
      }
    } else if section.discovery.enabled && legacyDiscovery.matches(message.topic) {
      migrateLegacyConfig(message)
    } else {
      shared.withLock { $0.inputErrors += 1 }
      refusals.refused(on: message.topic, "message on \(message.topic), which the appliance does not use; ignored")
    }
  }

  private func handleCommand(_ message: MQTTClient.Message, user: String) {
    let replyTopic = "\(prefix)/reply/\(user)"
    let parsed = PanelJSON.command(message.payload, site: site)
    var reply = PanelJSON.Reply(requestID: parsed.requestID, command: parsed.name, user: user)
    switch parsed.result {
    case .failure(let problem):
      shared.withLock { $0.inputErrors += 1 }
      reply.outcome = "invalid"
      reply.reason = problem.text
      refusals.refused(
        on: message.topic, "command from \(user) rejected: \(problem.text)",
        metadata: ["topic": "\(message.topic)", "payload": "\(preview(message.payload))"])
    case .success(let command):
      if !section.commandUsers.isEmpty && !section.commandUsers.contains(user) {
        reply.outcome = "refused"
        reply.reason = "\(user) is not one of the users allowed to command (mqtt.command_users)"
      } else {
        switch status.execute(command, by: user) {
        case .applied(let text):
          reply.outcome = "applied"
          reply.reason = text
        case .refused(let text):
          reply.outcome = "refused"
          reply.reason = text
        }
      }
      let metadata: Logger.Metadata = [
        "user": "\(user)", "command": "\(command.name)", "request_id": "\(parsed.requestID ?? "-")",
        "outcome": "\(reply.outcome)", "reason": "\(reply.reason)",
      ]
      // Every instruction staff gave is logged; refusals are bounded like other bad input.
      if reply.outcome == "applied" {
        logger.notice("command \(command.name) from \(user): applied", metadata: metadata)
      } else {
        refusals.refused(
          on: message.topic, "command \(command.name) from \(user): \(reply.outcome)", level: .notice,
          metadata: metadata)
      }
      stateChanged()
    }
    status.recorder?.command(
      user: user, name: parsed.name, requestID: parsed.requestID, outcome: reply.outcome, reason: reply.reason)
    client.publish(replyTopic, reply.json(), qos: 1)
  }

  // MARK: - Home Assistant

  private func publishDiscovery() {
    guard section.discovery.enabled else { return }
    client.publish(discovery.deviceTopic, discovery.deviceConfig(), qos: 1, retain: true)
    logger.info(
      "Home Assistant discovery published",
      metadata: ["topic": "\(discovery.deviceTopic)", "entities": "\(discovery.components().count)"])
  }

  /// A per-entity config that an appliance before device-based discovery left retained.
  /// Left there, Home Assistant would keep that entity beside (or instead of) the
  /// device's. Home Assistant's migration: `migrate_discovery` unloads the entity but
  /// keeps it in the registry, the empty retained payload removes the old config from
  /// the broker, and the device config (published again just after) takes the entity
  /// over by its unique id, with its entity id and history. An object that no longer
  /// exists (a charger removed since) is only cleared: Home Assistant then removes it.
  /// Each topic is handled once: once cleared, the broker has nothing to send again.
  private func migrateLegacyConfig(_ message: MQTTClient.Message) {
    let body = message.payload
    // Our own two messages come back through the subscription.
    guard !body.isEmpty, body != Array(HomeAssistantDiscovery.migrateDiscovery.utf8) else { return }
    let current = discovery.components().contains { discovery.legacyTopic($0) == message.topic }
    if current { client.publish(message.topic, HomeAssistantDiscovery.migrateDiscovery, qos: 1) }
    client.publish(message.topic, [], qos: 1, retain: true)
    shared.withLock { $0.discoveryDue = ContinuousClock.now + .milliseconds(300) }
    publishState.signal()
    logger.notice(
      "Home Assistant: a per-entity discovery config from an older version \(current ? "migrated to" : "removed for") the device config",
      metadata: ["topic": "\(message.topic)"])
  }
}
