import Foundation
import HTTPTypes
import HummingbirdWSClient
import Logging
import OCPP
import Synchronization

/// Local Controller mode (OCPP 2.x): the program's own charging platform (an upstream
/// CSMS) keeps managing the chargers through this appliance. Each connected charger gets
/// its own link upstream, under its own id and edition:
///
/// - the charger's calls are answered here at once (the site must not wait on the cloud)
///   and a copy goes upstream, queued while the link is down;
/// - the platform's calls are relayed to the charger and its answers back, except charging
///   profiles: those become the platform's *request* for that charger, which the
///   controller follows only within the site's limits (the safety filter has the last
///   word: service limit, departure needs, no export into a dead grid);
/// - while the upstream is unreachable its requests lapse and the site runs on its own.
public final class UpstreamLinks: Sendable {
  public struct Configuration: Sendable {
    /// `ws(s)://host/path`: chargers appear at `<url>/<charger id>`.
    public var url: String
    /// Charger id → the password the platform expects for it (Basic auth); absent: none sent.
    public var passwords: [String: String] = [:]
    public var reconnectSeconds: Double = 5
    /// Calls kept for the platform while its link is down (oldest dropped first).
    public var queueLimit = 1000

    public init(url: String) { self.url = url }
  }

  let configuration: Configuration
  let logger: Logger

  public init(configuration: Configuration, logger: Logger) {
    self.configuration = configuration
    self.logger = logger
  }

  /// Opens (and keeps reopening) the charger's link upstream; closed with the charger's connection.
  func open(for charger: OCPPCharger, version: OCPPVersion) -> UpstreamLink {
    let link = UpstreamLink(charger: charger, version: version, configuration: configuration, logger: logger)
    charger.upstream.withLock { $0 = link }
    link.start()
    return link
  }
}

/// One charger's link to the upstream CSMS.
final class UpstreamLink: UpstreamPeer {
  let charger: OCPPCharger
  let version: OCPPVersion
  let configuration: UpstreamLinks.Configuration
  let logger: Logger
  private let state = Mutex(LinkState())
  private let task = Mutex<Task<Void, Never>?>(nil)

  struct LinkState {
    var outgoing: AsyncStream<String>.Continuation?
    /// Calls waiting for the link to come (back) up.
    var queue: [String] = []
    var number = 0
  }

  init(charger: OCPPCharger, version: OCPPVersion, configuration: UpstreamLinks.Configuration, logger: Logger) {
    self.charger = charger
    self.version = version
    self.configuration = configuration
    self.logger = logger
  }

  func start() {
    task.withLock { $0 = Task { await self.keepConnected() } }
  }

  func close() {
    task.withLock { $0?.cancel() }
    charger.upstream.withLock { if ($0 as? UpstreamLink) === self { $0 = nil } }
    charger.clearUpstreamRequest()
  }

  func forward(action: String, payload: JSONValue) {
    state.withLock { s in
      s.number += 1
      let text = OCPPFrame.call(id: "lc-\(s.number)", action: action, payload: payload).text
      if let outgoing = s.outgoing {
        outgoing.yield(text)
      } else {
        s.queue.append(text)
        if s.queue.count > configuration.queueLimit { s.queue.removeFirst(s.queue.count - configuration.queueLimit) }
      }
    }
  }

  func answer(upstreamID: String, with frame: OCPPFrame) {
    state.withLock { _ = $0.outgoing?.yield(frame.text) }
  }

  private func keepConnected() async {
    let url = configuration.url.hasSuffix("/") ? configuration.url + charger.id : configuration.url + "/" + charger.id
    var headers: HTTPFields = [.secWebSocketProtocol: version.rawValue]
    if let password = configuration.passwords[charger.id] {
      headers[.authorization] = "Basic " + Data("\(charger.id):\(password)".utf8).base64EncodedString()
    }
    let clientConfiguration = WebSocketClientConfiguration(
      maxFrameSize: 1 << 20, additionalHeaders: headers, autoPing: .enabled(timePeriod: .seconds(20)))
    while !Task.isCancelled {
      do {
        try await WebSocketClient.connect(url: url, configuration: clientConfiguration, logger: logger) {
          inbound, outbound, _ in
          try await self.serve(inbound: inbound, outbound: outbound)
        }
        logger.warning("upstream CSMS closed the link", metadata: ["charger": "\(charger.id)"])
      } catch {
        if Task.isCancelled { break }
        logger.warning(
          "upstream CSMS unreachable; the site runs on its own",
          metadata: ["charger": "\(charger.id)", "url": "\(url)", "error": "\(error)"])
      }
      state.withLock { $0.outgoing = nil }
      charger.clearUpstreamRequest()
      try? await Task.sleep(for: .seconds(configuration.reconnectSeconds))
    }
  }

  private func serve(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter) async throws {
    let (stream, continuation) = AsyncStream.makeStream(of: String.self)
    let queued = state.withLock { s -> [String] in
      s.outgoing = continuation
      defer { s.queue = [] }
      return s.queue
    }
    logger.info(
      "upstream CSMS link up", metadata: ["charger": "\(charger.id)", "relayed_from_queue": "\(queued.count)"])
    for text in queued { continuation.yield(text) }
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask {
        for await text in stream { try await outbound.write(.text(text)) }
      }
      group.addTask {
        for try await message in inbound.messages(maxSize: 1 << 20) {
          guard case .text(let text) = message else { continue }
          self.received(text)
        }
      }
      try await group.next()
      group.cancelAll()
    }
  }

  /// A frame from the platform: its calls go to the charger; answers to our copies are
  /// only logged when they refuse something.
  private func received(_ text: String) {
    guard let frame = try? OCPPFrame.parse(text) else {
      logger.warning("unreadable frame from the upstream CSMS", metadata: ["charger": "\(charger.id)"])
      return
    }
    switch frame {
    case .call(let id, let action, let payload):
      if let reply = charger.upstreamCall(id: id, action: action, payload: payload, now: Date()) {
        answer(upstreamID: id, with: reply)
      }
    case .error(_, let code, let description, _):
      logger.warning(
        "upstream CSMS refused a relayed call",
        metadata: ["charger": "\(charger.id)", "code": "\(code.rawValue)", "description": "\(description)"])
    case .result(_, let payload):
      if let status = payload["status"]?.stringValue, status == "Rejected" {
        logger.warning("upstream CSMS rejected a relayed call", metadata: ["charger": "\(charger.id)"])
      }
    default:
      break
    }
  }
}
