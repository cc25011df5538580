import Foundation
import Logging
import NIOHTTP1
import NIOSSL
import OCPP
import ServiceLifecycle
import SiteFiles

/// Where a charger's Basic-auth password is: in the configuration, or in a file (its first
/// line, mode 640) that is read at every connection attempt. So a new password needs no
/// restart, and a file that is not there yet refuses that charger (401, with the reason in
/// the log), never the appliance.
public enum ChargerPassword: Sendable, Hashable {
  case inline(String)
  case file(String)

  /// Why a password cannot be had.
  public struct Unreadable: Error, Sendable, CustomStringConvertible {
    public let description: String
  }

  /// The password now, or why it cannot be had.
  public func read() -> Result<String, Unreadable> {
    switch self {
    case .inline(let password): return .success(password)
    case .file(let path):
      return SecretFile.firstLine(of: path).mapError { Unreadable(description: "its password file \($0)") }
    }
  }
}

/// The CSMS side of OCPP-J for the site's chargers: a WebSocket endpoint at
/// `ws(s)://host:port/<path>/<charger id>` that speaks ocpp2.1 and ocpp2.0.1, with HTTP
/// Basic auth per charger (security profile 1 over ws://, 2 over wss://), on SwiftNIO
/// (`WebSocketServer`).
public struct OCPPEndpoint: Service {
  public struct Configuration: Sendable {
    public var host = "0.0.0.0"
    /// 0: any free port (tests; the bound port is reported through `onListening`).
    public var port = 8887
    /// Charge points connect to `<path>/<their id>`.
    public var path = "/ocpp"
    /// Charger id → its Basic-auth password. A charger not listed is refused.
    public var passwords: [String: ChargerPassword] = [:]
    /// Certificate chain and key (PEM files): wss:// (security profile 2).
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    /// WebSocket pings, so a dead TCP connection is noticed without waiting for heartbeats.
    public var pingSeconds = 20

    public init() {}
  }

  let configuration: Configuration
  let chargers: [String: OCPPCharger]
  let logger: Logger
  let onListening: @Sendable (Int) async -> Void
  /// Set in Local Controller mode: opens the charger's link to the upstream CSMS.
  let upstream: UpstreamLinks?

  public init(
    configuration: Configuration, chargers: [OCPPCharger], upstream: UpstreamLinks? = nil, logger: Logger,
    onListening: @escaping @Sendable (Int) async -> Void = { _ in }
  ) {
    self.configuration = configuration
    self.chargers = Dictionary(chargers.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
    self.upstream = upstream
    self.logger = logger
    self.onListening = onListening
  }

  /// Whether a WebSocket upgrade request is let in, and as which charger and edition.
  enum Admission: Equatable {
    case accept(charger: String, version: OCPPVersion)
    case refuse(HTTPResponseStatus, String)
  }

  func admit(_ head: HTTPRequestHead) -> Admission {
    let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
    let prefix = configuration.path.hasSuffix("/") ? configuration.path : configuration.path + "/"
    guard path.hasPrefix(prefix), let id = String(path.dropFirst(prefix.count)).removingPercentEncoding,
      !id.isEmpty, !id.contains("/")
    else { return .refuse(.notFound, "charge points connect to \(prefix)<charger id>") }
    guard chargers[id] != nil, let source = configuration.passwords[id] else {
      return .refuse(.notFound, "charger \(id) is not in this site's configuration")
    }
    let password: String
    switch source.read() {
    case .success(let p): password = p
    case .failure(let why): return .refuse(.unauthorized, "charger \(id): \(why); refused until it can be read")
    }
    // Basic auth: the username is the charger's id (OCPP 2.x security profiles 1 and 2).
    guard let header = head.headers["Authorization"].first, header.hasPrefix("Basic "),
      let decoded = Data(base64Encoded: String(header.dropFirst(6))).map({ String(decoding: $0, as: UTF8.self) }),
      let colon = decoded.firstIndex(of: ":")
    else { return .refuse(.unauthorized, "charger \(id): no Basic authorization") }
    guard decoded[..<colon] == id, Self.constantTimeEqual(String(decoded[decoded.index(after: colon)...]), password)
    else { return .refuse(.unauthorized, "charger \(id): wrong username or password") }
    let offered = head.headers["Sec-WebSocket-Protocol"].flatMap {
      $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    }
    // The newest edition both sides speak.
    guard let version = OCPPVersion.allCases.first(where: { offered.contains($0.rawValue) }) else {
      return .refuse(
        .badRequest,
        "charger \(id) offered subprotocols \(offered) but this controller speaks \(OCPPVersion.allCases.map(\.rawValue))"
      )
    }
    return .accept(charger: id, version: version)
  }

  /// Compares passwords without leaking where they differ through timing.
  static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8)
    let y = Array(b.utf8)
    var difference = UInt8(x.count == y.count ? 0 : 1)
    for i in 0..<max(x.count, y.count) { difference |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0) }
    return difference == 0
  }

  public func run() async throws {
    var tls: NIOSSLContext?
    if let certificatePath = configuration.tlsCertificatePath, let keyPath = configuration.tlsKeyPath {
      let chain = try NIOSSLCertificate.fromPEMFile(certificatePath)
      let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
      tls = try NIOSSLContext(
        configuration: .makeServerConfiguration(
          certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key)))
    }
    let server = WebSocketServer(
      configuration: .init(
        host: configuration.host, port: configuration.port, tls: tls, pingSeconds: configuration.pingSeconds),
      logger: logger,
      admit: { head in
        switch self.admit(head) {
        case .accept(_, let version): .accept(subprotocol: version.rawValue)
        case .refuse(let status, let why): .refuse(status, why)
        }
      },
      serve: { head, connection in
        guard case .accept(let id, let version) = self.admit(head), let charger = self.chargers[id] else { return }
        await self.serve(charger: charger, version: version, connection: connection)
      })
    let scheme = tls == nil ? "ws" : "wss"
    // A listener that fails (its port taken, an accept or a connection's set-up that
    // throws) must not take the appliance down with it: the chargers' safe state is held by
    // their drivers, and the endpoint listens again, backing off to 30 s.
    var failures = 0
    while !Task.isShuttingDownGracefully && !Task.isCancelled {
      let started = ContinuousClock.now
      do {
        try await server.run { port in
          logger.info(
            "OCPP endpoint listening",
            metadata: [
              "address": "\(scheme)://\(configuration.host):\(port)\(configuration.path)/<id>",
              "chargers": "\(chargers.keys.sorted())",
            ])
          await onListening(port)
        }
        return
      } catch {
        guard !Task.isShuttingDownGracefully && !Task.isCancelled else { return }
        // A listener that served for a while starts the backoff afresh.
        failures = ContinuousClock.now - started > .seconds(60) ? 1 : failures + 1
        let wait = Self.relistenDelay(failures: failures)
        logger.error(
          "OCPP endpoint failed; listening again in \(Int(wait)) s",
          metadata: ["error": "\(error)", "port": "\(configuration.port)", "failures": "\(failures)"])
        // A stop must not wait out the backoff (up to 30 s: systemd's and the tests'
        // patience is shorter).
        try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(wait)) }
      }
    }
  }

  /// 1, 2, 4 ... 30 s after consecutive failures.
  static func relistenDelay(failures: Int) -> Double { min(30, Double(1 << min(max(failures - 1, 0), 5))) }

  /// One charge point's connection: frames in to its driver, its queue out to the socket.
  func serve(charger: OCPPCharger, version: OCPPVersion, connection: WebSocketConnection) async {
    let (number, outgoing) = charger.attach(version: version, now: Date())
    logger.info("charger connected", metadata: ["charger": "\(charger.id)", "ocpp": "\(version.rawValue)"])
    let link = upstream?.open(for: charger, version: version)
    // On shutdown the appliance closes the socket itself, so it never waits for chargers
    // that would not hang up.
    await withGracefulShutdownHandler {
      await connection.run(outgoing: outgoing) { text in charger.receive(text, now: Date()) }
    } onGracefulShutdown: {
      charger.disconnect()
    }
    charger.detach(number: number)
    link?.close()
    logger.warning("charger disconnected", metadata: ["charger": "\(charger.id)"])
  }
}
